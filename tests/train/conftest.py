"""Fixtures for training tests: the real n2p2 2.3.0 built from ../shared/vendor, small real datasets.

The build is cached outside the checkout (``~/.cache/mlds/codes`` or ``$MLDS_CODES_CACHE``),
keyed by the tarball's sha256: the first session on a machine compiles for a few minutes,
later sessions reuse it at once.  The per-test isolation of XDG_DATA_HOME/config does not
touch that cache.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mlds import train

from tests.conftest import REPO, data_file

VENDOR = Path(os.environ.get("MLDS_VENDOR", REPO.parent / "shared" / "vendor"))
TARBALL = VENDOR / "n2p2-2.3.0.tar.gz"


def pytest_collection_finish(session) -> None:
    """Build n2p2 before the first test when one needs it and the cache lacks it.

    Done here, not in the fixture, so the minutes of a first build do not count against the
    per-test timeout; later sessions find the build in the cache at once.
    """
    if not TARBALL.is_file() or not any("n2p2_bin" in getattr(i, "fixturenames", ()) for i in session.items):
        return
    from mlds import codes
    from mlds.codes import n2p2

    if n2p2.missing_packages():
        return  # the fixture skips, saying which
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"n2p2: building {TARBALL.name} once, or reusing the cache in {codes.cache_dir()}")
    try:
        codes.build("n2p2", TARBALL)
    except codes.CodeError as err:  # reported by every test that needs n2p2, not as a session crash
        _BUILD_ERROR.append(str(err))


_BUILD_ERROR: list[str] = []


@pytest.fixture(scope="session")
def n2p2_bin() -> Path:
    """Folder of the real n2p2 programs (built once per machine from the vendored release)."""
    if not TARBALL.is_file():
        pytest.skip(f"n2p2 source {TARBALL} not found (set MLDS_VENDOR to the shared vendor folder)")
    from mlds import codes
    from mlds.codes import n2p2

    missing = n2p2.missing_packages()
    if missing:
        pytest.skip(f"cannot build n2p2 here: missing {', '.join(missing)} (.ci/run installs them)")
    if _BUILD_ERROR:
        pytest.fail(f"n2p2 build failed: {_BUILD_ERROR[0]}")
    return codes.build("n2p2", TARBALL).bin_dir


@pytest.fixture
def n2p2(n2p2_bin, monkeypatch) -> Path:
    monkeypatch.setenv("MLDS_N2P2_BIN", str(n2p2_bin))
    return n2p2_bin


def _convert(src: Path, out: Path, **options) -> Path:
    from mlds.convert import convert

    convert([src], out, reader_options=options or None, metadata={"name": out.name.split(".")[0]})
    return out


@pytest.fixture(scope="session")
def cu2s_file(tmp_path_factory) -> Path:
    """Cu2S, 20 periodic frames of 144 atoms (n2p2's own example data, Å/eV)."""
    src = data_file("n2p2/examples/nnp-train/Cu2S_PBE/input.data")
    return _convert(src, tmp_path_factory.mktemp("data") / "cu2s.h5", units="angstrom-ev")


@pytest.fixture(scope="session")
def si_file(tmp_path_factory) -> Path:
    """Si, 50 MD frames of 2 atoms (QE pw.x test suite)."""
    src = data_file("q-e/test-suite/pw_md/md.benchmark.out")
    return _convert(src, tmp_path_factory.mktemp("data") / "si.h5")


@pytest.fixture(scope="session")
def cu2s_store(tmp_path_factory, cu2s_file):
    from mlds.store.local import init_store
    from mlds.store.versions import add

    path = tmp_path_factory.mktemp("store") / "store"
    st = init_store(path)
    add(cu2s_file, "cu2s", store=st, message="Cu2S example data")
    return st


@pytest.fixture(scope="session")
def cu2s_run(tmp_path_factory, cu2s_store, n2p2_bin):
    """Cu2S@v1 trained for 3 epochs (quick preset) by job.sh on this machine."""
    run = train.prepare("cu2s@v1", store=cu2s_store, workdir=tmp_path_factory.mktemp("runs") / "cu2s",
                        settings={"preset": "quick"}, epochs=3, seed=7)
    lines: list[str] = []
    train.run_local(run, on_line=lines.append, bin_dir=n2p2_bin)
    run.lines = lines  # type: ignore[attr-defined]
    return run
