"""Versioned, content-addressed store and sync engine (design §3).

Library API (the CLI in ``mlds/cli/store_cmds.py`` only wraps these)::

    mlds.store.init(path=None, personal=False, tier="personal")
    mlds.store.add(source, dataset, message="", append=False, dedupe=True)
                                                      -> {"manifest", "version", "new_shards", "duplicates_skipped", ...}
    mlds.store.add_files(name, {"input.nn": path, ...}, kind="potential", metadata={...}, summary={...})
    mlds.store.checkout_files("NAME@TAG", outdir)
    mlds.store.api.manifest("NAME@TAG")  (mlds.store.manifest is the manifest module)
    mlds.store.log("NAME[@TAG]"), mlds.store.tag("NAME@v2", "paper")
    mlds.store.checkout("NAME@TAG", "out.h5"), mlds.store.open_ref("NAME@TAG")
    mlds.store.fsck(remote=None), mlds.store.gc(remote=None, grace_seconds=None)
    mlds.store.ls(remote=None), mlds.store.search('elements HAS ALL "Si","O"', remotes=None)
    mlds.store.push("NAME[@TAG]", remote), mlds.store.pull("NAME[@TAG]", remote), mlds.store.clone(remote)
    mlds.store.promote("NAME@TAG", remote), mlds.store.check_promotion("NAME@TAG", remote)

``remote`` is a configured remote name, a URL or path, or a :class:`Store`.
"""

from __future__ import annotations

from mlds.store.api import (add, add_files, check_promotion, checkout, checkout_files, clone, fsck, gc, init, log, ls,
                            open_ref, open_store, promote, pull, push, rebuild_catalog, search, tag)
from mlds.store.store import Store

__all__ = ["Store", "add", "add_files", "check_promotion", "checkout", "checkout_files", "clone", "fsck", "gc", "init",
           "log", "ls", "open_ref", "open_store", "promote", "pull", "push", "rebuild_catalog", "search",
           "tag"]
