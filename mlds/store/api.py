"""Library API of the store, what ``mlds`` CLI commands call.

A *remote* argument may be a configured remote name (``mlds remote add``), a
URL / local path, or a :class:`Store`.  ``store=None`` means the local store
(:func:`mlds.store.local.local_store`).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Mapping

from mlds.errors import StoreError
from mlds.store import catalog as _catalog
from mlds.store import manifest as mf
from mlds.store import query as _query
from mlds.store import sync as _sync
from mlds.store import versions as _v
from mlds.store.local import init_store, local_store
from mlds.store.policy import check_metadata, effective_tier, missing_fields
from mlds.store.store import Store


# ----------------------------------------------------------------- resolving stores
def _looks_like_location(x: str) -> bool:
    return "://" in x or x.startswith(("/", ".", "~")) or os.sep in x or os.path.isdir(x)


def open_store(remote: "str | Store | None" = None, *, create: bool = False) -> Store:
    """A :class:`Store` for a remote name, URL/path, or the local store (None)."""
    if remote is None:
        return local_store(create=create)
    if isinstance(remote, Store):
        return remote
    if _looks_like_location(remote):
        return Store.from_url(remote, name=remote)
    from mlds.remotes.config import get_remote
    from mlds.remotes.filesystems import open_remote_fs

    r = get_remote(remote)
    fs, root = open_remote_fs(r)
    st = Store(fs, root, name=r.name, options=dict(r.options), url=r.url)
    st.configured_tier = r.tier  # type: ignore[attr-defined]
    return st


def _tier_of(store: Store) -> str | None:
    return getattr(store, "configured_tier", None)


_errors = _sync.translated_errors


def _group_stores(public: Store) -> list:
    """The group-tier remotes that may vouch for a public version: each a :class:`Store`, or a
    ``(name, error)`` pair for one that cannot even be opened (reported by its own name, never the
    public remote's, and never blocking when another group remote vouches)."""
    names: list[str] = []
    try:
        names = list(public.policy("group_remotes") or [])
    except StoreError:
        pass
    if not names:
        with contextlib.suppress(Exception):
            from mlds.remotes.config import list_remotes

            names = [r.name for r in list_remotes() if r.tier == "group"]
    out: list = []
    for n in names:
        try:
            st = open_store(n)
        except Exception as err:  # noqa: BLE001 - unreachable: said so by name, later
            out.append((n, err))
            continue
        out.append(st)
    return out


# ----------------------------------------------------------------- local versions
def init(path: "str | os.PathLike | None" = None, *, personal: bool = False, tier: str = "personal") -> Store:
    """Create a store (project ``./.mlds/store`` by default; a URL/path or remote name with ``path``)."""
    if path is not None and isinstance(path, str) and not _looks_like_location(path):
        st = open_store(path)  # a configured remote
        with _errors(st):
            return st.init(tier)
    if path is not None and isinstance(path, str) and "://" in path:
        st = Store.from_url(path)
        with _errors(st):
            return st.init(tier)
    return init_store(path, personal=personal, tier=tier)


def add(source: "str | os.PathLike", dataset: str, message: str = "", *, store: Store | None = None,
        append: bool = False, dedupe: bool = True, metadata: dict[str, Any] | None = None,
        author: str | None = None, **kw: Any) -> dict[str, Any]:
    """New version of ``dataset`` from ``source`` (see :func:`mlds.store.versions.add`).

    ``append=True`` keeps every frame of ``latest`` and adds the source's;
    ``dedupe=True`` skips frames already stored (counted in ``duplicates_skipped``).
    """
    return _v.add(source, dataset, message=message, store=store or local_store(), append=append, dedupe=dedupe,
                  metadata=metadata, author=author, **kw)


def add_files(name: str, files: "Mapping[str, str | os.PathLike]", *, kind: str, metadata: dict[str, Any],
              summary: dict[str, Any], message: str = "", store: Store | None = None,
              author: str | None = None) -> dict[str, Any]:
    """New version of a file-set object (e.g. ``kind="potential"``): ``files`` maps paths in the object to local files."""
    from mlds.store import files as _files

    return _files.add_files(name, files, kind=kind, metadata=metadata, summary=summary, message=message,
                            store=store or local_store(), author=author)


def checkout_files(ref: str, outdir: "str | os.PathLike", *, store: Store | None = None,
                   force: bool = False) -> list[Path]:
    """Write the files of a file-set version into ``outdir`` (verified); returns their paths."""
    from mlds.store import files as _files

    return _files.checkout_files(ref, outdir, store=store or local_store(create=False), force=force)


def manifest(ref: str, store: Store | None = None) -> dict[str, Any]:
    """The (verified) manifest of ``NAME[@TAG]``, with ``kind`` filled in."""
    st = store or local_store(create=False)
    _, _, h, m = _version(st, ref)
    return {"kind": mf.kind(m), **m}


def log(ref: str, store: Store | None = None) -> list[dict[str, Any]]:
    name, tag = _v.parse_ref(ref)
    return _v.log(store or local_store(create=False), name, tag)


def tag(ref: str, new_tag: str, *, force: bool = False, store: Store | None = None) -> str:
    return _v.tag(store or local_store(), ref, new_tag, force=force)


def checkout(ref: str, output: "str | os.PathLike", store: Store | None = None) -> Path:
    return _v.checkout(ref, output, store or local_store(create=False))


def open_ref(ref: str, store: Store | None = None, **options: Any):
    """``mlds.open("NAME@TAG")``: the version's shards read in place (no copy)."""
    return _v.open_ref(ref, store=store, **options)


def fsck(remote: "str | Store | None" = None) -> dict[str, Any]:
    st = open_store(remote)
    with _errors(st):
        return _v.fsck(st)


def gc(remote: "str | Store | None" = None, grace_seconds: float | None = None, dry_run: bool = False) -> dict[str, Any]:
    st = open_store(remote)
    with _errors(st):
        return _v.gc(st, grace_seconds=grace_seconds, dry_run=dry_run)


def ls(remote: "str | Store | None" = None) -> list[dict[str, Any]]:
    """Datasets with their tags (and summary from the catalog when present)."""
    st = open_store(remote)
    with _errors(st):
        cat = st.read_catalog().get("datasets", {})
        out = []
        for name in st.list_datasets():
            refs = st.list_refs(name)
            entry = cat.get(name) or {}
            if entry.get("refs") != refs:
                entry = _catalog.entry_for(st, name, refs) or {}
            out.append({"dataset": name, "kind": "dataset", "refs": refs,
                        **{k: v for k, v in entry.items() if k != "refs"}})
        return out


def search(query: str, remotes: "list[str | Store] | None" = None) -> list[dict[str, Any]]:
    """Datasets matching an OPTIMADE-like filter, over the local store or the given remotes."""
    flt = _query.parse(query)
    targets = remotes if remotes else [None]
    hits = []
    for r in targets:
        st = open_store(r)
        with _errors(st):
            cat = st.read_catalog()
        for name, entry in sorted(cat.get("datasets", {}).items()):
            if entry.get("broken"):
                continue
            if _query.matches(flt, {"name": name, "kind": "dataset", **entry}):
                hits.append({"remote": st.name, "dataset": name, "kind": "dataset", **entry})
    return hits


def rebuild_catalog(remote: "str | Store | None" = None) -> dict[str, Any]:
    st = open_store(remote)
    with _errors(st):
        return _catalog.rebuild(st)


# ----------------------------------------------------------------- sync
def push(dataset: str, remote: "str | Store", tag: str | None = None, *, store: Store | None = None,
         workers: int | None = None, progress: bool = False, group_remotes: "list[str | Store] | None" = None) -> dict[str, Any]:
    """Send ``dataset`` (``NAME`` or ``NAME@TAG``; default latest) to ``remote``."""
    local = store or local_store()
    dst = open_store(remote)
    if "@" in dataset and tag is None:
        dataset, tag = dataset.split("@", 1)
    if group_remotes:
        groups: Any = [_open_or_error(g) for g in group_remotes]
    else:  # looked up only if the remote turns out to be public (its tier is read in push's first round)
        def groups() -> list:
            return _group_stores(dst)
    with _errors(dst):
        return _sync.push(local, dst, dataset, tag, tier=_tier_of(dst), group_stores=groups,
                          workers=workers, progress=progress)


def _open_or_error(remote: "str | Store"):
    try:
        return open_store(remote)
    except Exception as err:  # noqa: BLE001 - reported by name where it matters
        return (remote if isinstance(remote, str) else remote.name, err)


def _effective_tier(st: Store) -> str:
    return effective_tier(st)


def pull(dataset: str, remote: "str | Store", tag: str | None = None, *, store: Store | None = None,
         force: bool = False, workers: int | None = None, progress: bool = False) -> dict[str, Any]:
    local = store or local_store()
    src = open_store(remote)
    if "@" in dataset and tag is None:
        dataset, tag = dataset.split("@", 1)
    with _errors(src):
        return _sync.pull(src, local, dataset, tag, force=force, workers=workers, progress=progress)


def clone(remote: "str | Store", dest: "str | os.PathLike | Store | None" = None, datasets: list[str] | None = None,
          *, workers: int | None = None, progress: bool = False) -> dict[str, Any]:
    """Copy every dataset of ``remote`` into ``dest`` (a store path/URL; default the local store)."""
    src = open_store(remote)
    if dest is None:
        dst = local_store()
    elif isinstance(dest, Store):
        dst = dest
    else:
        dst = Store.from_url(os.fspath(dest))
    with _errors(src):
        return _sync.clone(src, dst, datasets, workers=workers, progress=progress)


def _version(local: Store, ref: str) -> tuple[str, str, str, dict[str, Any]]:
    """(name, tag, manifest hash, manifest) of ``ref`` in ``local``."""
    name, tg = _v.parse_ref(ref)
    h = _v.resolve(local, name, tg)
    return name, tg, h, mf.load(local, h)


def check_promotion(ref: str, remote: "str | Store", store: Store | None = None) -> list[str]:
    """Every reason ``ref`` cannot go to ``remote`` (empty when it can), one line each."""
    local = store or local_store()
    dst = open_store(remote)
    name, _, h, m = _version(local, ref)
    with _errors(dst):
        tier = _effective_tier(dst)
        problems = missing_fields(m["metadata"], tier, mf.kind(m))
    if tier == "public":
        problems += _sync.group_vouch_problems(name, h, _group_stores(dst))
    return problems


def promote(ref: str, remote: "str | Store", *, store: Store | None = None, workers: int | None = None,
            progress: bool = False, group_remotes: "list[str | Store] | None" = None) -> dict[str, Any]:
    """Check ``remote``'s tier policy for ``ref`` (listing everything missing), then copy it there."""
    local = store or local_store()
    dst = open_store(remote)
    name, tg, _, m = _version(local, ref)
    with _errors(dst):
        tier = _effective_tier(dst)
        check_metadata(m["metadata"], tier, ref, dst.name, mf.kind(m))
        return push(name, dst, tg, store=local, workers=workers, progress=progress, group_remotes=group_remotes)
