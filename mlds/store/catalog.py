"""``catalog.json``: one summary per dataset, for ``mlds search`` and ``mlds ls``.

The catalog is a cache: it is updated after every ref write (read-modify-write
under the lock object ``locks/catalog.lock``, so pushes of different datasets
do not lose each other's entries) and can always be rebuilt from refs and
manifests (:func:`rebuild`).  Read-only mirrors (HTTP) rely on it for listing
because they cannot list directories; refs themselves stay authoritative.
"""

from __future__ import annotations

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


def update_entry(store: Store, dataset: str, moved: dict[str, str] | None = None,
                 manifests: dict[str, dict[str, Any]] | None = None) -> None:
    """Refresh one dataset's entry after its refs moved (read-modify-write under ``locks/catalog.lock``).

    ``moved`` ({tag: manifest}) are the refs just written: they are applied to the
    entry's known refs, so a commit costs no listing of refs; a dataset without an
    entry yet is listed in full.  One catalog write per commit.
    """
    with store.lock_key("locks/catalog.lock", "catalog.json", fresh=("catalog.json",)):
        cat = store.read_catalog()
        old = cat["datasets"].get(dataset)
        if moved is not None and isinstance(old, dict) and isinstance(old.get("refs"), dict) and not old.get("broken"):
            entry = entry_for(store, dataset, {**old["refs"], **moved}, manifests)
        else:
            entry = entry_for(store, dataset)
        if entry is None:
            cat["datasets"].pop(dataset, None)
        else:
            cat["datasets"][dataset] = entry
        cat["mlds_catalog"] = 1
        store.write_catalog(cat)


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
