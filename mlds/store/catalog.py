"""``catalog.json``: one summary per dataset, for ``mlds search`` and ``mlds ls``.

The catalog is a cache: it is updated after every ref write (read-modify-write
under the lock object ``locks/catalog.lock``, so pushes of different datasets
do not lose each other's entries) and can always be rebuilt from refs and
manifests (:func:`rebuild`).  Read-only mirrors (HTTP) rely on it for listing
because they cannot list directories; refs themselves stay authoritative.
"""

from __future__ import annotations

import contextlib
from typing import Any

from mlds.store import manifest as mf
from mlds.store.store import Store


def entry_for(store: Store, dataset: str, refs: dict[str, str] | None = None,
              manifests: dict[str, dict[str, Any]] | None = None) -> dict[str, Any] | None:
    refs = store.list_refs(dataset) if refs is None else refs
    if not refs:
        return None
    latest = refs.get("latest")
    if latest is None:  # no latest: take the highest version tag
        vs = sorted((int(t[1:]), h) for t, h in refs.items() if t[:1] == "v" and t[1:].isdigit())
        latest = vs[-1][1] if vs else sorted(refs.values())[0]
    try:
        m = (manifests or {}).get(latest) or mf.load(store, latest)
    except Exception:  # noqa: BLE001 - a broken version is reported by fsck, not here
        return {"refs": dict(sorted(refs.items())), "broken": True}
    s = m["summary"]
    versions = sorted(int(t[1:]) for t in refs if t[:1] == "v" and t[1:].isdigit())
    return {
        "kind": mf.kind(m),
        "refs": dict(sorted(refs.items())),
        "latest": latest,
        "version": m["version"],
        "versions": versions,
        "updated": m["created"],
        "author": m["author"],
        "description": str(m["metadata"].get("description") or "")[:300],
        "license": m["metadata"].get("license"),
        "elements": list(s.get("elements", [])),
        "nelements": int(s.get("nelements", len(s.get("elements", [])))),
        "formulas": list(s.get("formulas", []))[:200],
        "nframes": int(s.get("n_frames", 0)),
        "natoms": int(s.get("n_atoms", 0)),
        "codes": list(s.get("codes", [])),
        "functionals": list(s.get("functionals", [])),
        "energy_per_atom_min": s.get("energy_per_atom_min"),
        "energy_per_atom_max": s.get("energy_per_atom_max"),
        "size": mf.total_size(m),
    }


def conditional(store: Store) -> bool:
    """Can this store's catalog be updated by a conditional write (S3 that honours ``If-Match``)?"""
    from mlds.store import locks

    return (getattr(store.fs, "mlds_put_if", None) is not None and getattr(store.fs, "mlds_cat_etag", None) is not None
            and locks.exclusive_create_works(store))


def prefetch(store: Store, dataset: str, list_tags: bool) -> dict[str, Any]:
    """What :func:`update_entry` would read first -- the catalog and its ETag, and (``list_tags``, for a
    dataset that has no entry yet) the dataset's tag names -- read ahead, e.g. in the same round of
    requests as the refs a commit re-reads under its locks.  Only worth it where :func:`conditional`:
    the write is refused if the catalog changed since, and redone on a fresh read."""
    out: dict[str, Any] = {}
    try:
        out["catalog"] = store.fs.mlds_cat_etag(store.path("catalog.json"))
    except FileNotFoundError:
        out["catalog"] = (None, None)
    except Exception:  # noqa: BLE001 - read again by update_entry
        pass
    if list_tags:
        with contextlib.suppress(Exception):
            out["tags"] = store.list_ref_names(dataset)
    return out


def update_entry(store: Store, dataset: str, moved: dict[str, str] | None = None,
                 manifests: dict[str, dict[str, Any]] | None = None, prefetched: dict[str, Any] | None = None) -> None:
    """Refresh one dataset's entry after its refs moved (read-modify-write under ``locks/catalog.lock``).

    ``moved`` ({tag: manifest}) are the refs just written: they are applied to the
    entry's known refs, so a commit costs no listing of refs; a dataset without an
    entry yet is listed in full (tag names from ``prefetched``, when given: only the
    refs that did not move are read).  One catalog write per commit.
    """
    prefetched = prefetched or {}

    def apply(cat: dict[str, Any]) -> dict[str, Any]:
        old = cat["datasets"].get(dataset)
        if moved is not None and isinstance(old, dict) and isinstance(old.get("refs"), dict) and not old.get("broken"):
            entry = entry_for(store, dataset, {**old["refs"], **moved}, manifests)
        elif moved is not None and "tags" in prefetched:
            others = [t for t in prefetched["tags"] if t not in moved]
            refs = dict(zip(others, store.map(lambda t: store.read_ref(dataset, t), others)))
            entry = entry_for(store, dataset, {**{t: h for t, h in refs.items() if h}, **moved}, manifests)
        else:
            entry = entry_for(store, dataset, None, manifests)
        if entry is None:
            cat["datasets"].pop(dataset, None)
        else:
            cat["datasets"][dataset] = entry
        cat["mlds_catalog"] = 1
        return cat

    if _update_conditionally(store, apply, prefetched.get("catalog")):
        return
    with store.lock_key("locks/catalog.lock", "catalog.json", fresh=("catalog.json",)):
        store.write_catalog(apply(store.read_catalog()))


def _update_conditionally(store: Store, apply, first: tuple[bytes | None, str | None] | None = None) -> bool:
    """On a backend with conditional writes (S3 that honours them): read the catalog with its ETag, write
    it back only if unchanged (``If-Match``), retry on a race -- two requests instead of a lock's four.
    ``first``: (bytes, ETag) read ahead (None, None: there was no catalog), used for the first try."""
    import json

    if not conditional(store):
        return False
    path = store.path("catalog.json")
    put_if, cat_etag = store.fs.mlds_put_if, store.fs.mlds_cat_etag
    for _ in range(20):
        if first is not None:
            raw, etag = first
            first = None
        else:
            try:
                raw, etag = cat_etag(path)
            except FileNotFoundError:
                raw, etag = None, None
        cat = store.parse_catalog(raw) if raw is not None else {"mlds_catalog": 1, "datasets": {}}
        data = json.dumps(apply(cat), indent=1, sort_keys=True).encode() + b"\n"
        try:
            put_if(path, data, etag)
            return True
        except FileExistsError:
            continue  # someone else's update landed first: apply ours to theirs
    return False


def rebuild(store: Store) -> dict[str, Any]:
    cat: dict[str, Any] = {"mlds_catalog": 1, "datasets": {}}
    for ds in store.list_datasets():
        entry = entry_for(store, ds)
        if entry is not None:
            cat["datasets"][ds] = entry
    with store.lock_key("locks/catalog.lock", "catalog.json", fresh=("catalog.json",)):
        store.write_catalog(cat)
    return cat


def load(store: Store) -> dict[str, Any]:
    return store.read_catalog()
