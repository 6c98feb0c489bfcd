"""External training codes: find their programs, build them from release tarballs.

>>> from mlds import codes
>>> codes.locate("n2p2").programs["nnp-train"]       # MLDS_N2P2_BIN, config prefix, PATH, cache
>>> codes.build("n2p2", "n2p2-2.3.0.tar.gz")         # cached by the tarball's sha256
"""

from mlds.codes.registry import (
    BuildResult,
    CodeError,
    CodeSpec,
    Located,
    build,
    cache_dir,
    cached_builds,
    codes,
    configured_prefix,
    get,
    locate,
    register,
)

__all__ = ["BuildResult", "CodeError", "CodeSpec", "Located", "build", "cache_dir", "cached_builds", "codes",
           "configured_prefix", "get", "locate", "register"]
