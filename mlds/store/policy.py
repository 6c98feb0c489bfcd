"""Tier policies: what a store of each tier accepts.

personal
    Anything that is a valid dataset (drafts welcome); tags may move.
group
    Metadata must be complete at level "group" (every calculation has complete
    DFT settings); version and named tags are immutable once written (only
    ``latest`` moves).
public
    Group requirements plus license, authors and description (level
    "public"); local paths are stripped from provenance (file name only) in a
    derived manifest; only versions already tagged in a group-tier remote are
    accepted; the store is meant to be served read-only without credentials
    (e.g. over the HTTP mirror).

Per kind (:mod:`mlds.store.kinds`): the rules above are for datasets.  A
potential's metadata must satisfy its kind's schema from the group tier on
(any object is a personal draft); the public tier adds the same license,
authors and description a public dataset needs.
"""

from __future__ import annotations

import copy
import ntpath
import posixpath
from typing import Any

from mlds.errors import PolicyError
from mlds.store.store import TIERS

RANK = {t: i for i, t in enumerate(TIERS)}


def stricter(a: str | None, b: str | None) -> str:
    a = a or "personal"
    b = b or "personal"
    return a if RANK.get(a, 0) >= RANK.get(b, 0) else b


def missing_fields(metadata: dict[str, Any], tier: str, kind: str = "dataset") -> list[str]:
    """Every problem keeping ``metadata`` of a ``kind`` object from ``tier``, one line each (empty = fine)."""
    if tier == "personal":
        return []
    if kind == "dataset":
        from mlds.format.schema import missing_for_level

        return list(missing_for_level(metadata, tier))
    from mlds.store import kinds

    out = kinds.missing_for_level(kind, metadata, tier)
    if tier == "public" and isinstance(metadata, dict):
        out += _public_fields(metadata)
    return out


def _public_fields(metadata: dict[str, Any]) -> list[str]:
    out = []
    lic = metadata.get("license")
    if not isinstance(lic, str) or not lic.strip() or lic.strip().upper() in ("NONE", "NOASSERTION"):
        out.append("metadata.license: required (an SPDX license identifier, e.g. \"CC-BY-4.0\")")
    authors = metadata.get("authors")
    if not isinstance(authors, list) or not authors:
        out.append("metadata.authors: required (at least one author)")
    desc = metadata.get("description")
    if not isinstance(desc, str) or not desc.strip():
        out.append("metadata.description: required (some text)")
    return out


def check_metadata(metadata: dict[str, Any], tier: str, what: str, remote: str, kind: str = "dataset") -> None:
    missing = missing_fields(metadata, tier, kind)
    if missing:
        from mlds.meta import with_hints  # each line names the command that fixes it

        lines = "\n  ".join(with_hints(missing, what.split("@")[0]))
        raise PolicyError(f"{what} cannot go to {tier}-tier remote {remote}; missing or invalid:\n  {lines}")


def strip_paths(metadata: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``metadata`` with local paths (provenance, pseudopotential files) reduced to file names."""
    out = copy.deepcopy(metadata)
    for src in out.get("sources") or []:
        if isinstance(src, dict) and isinstance(src.get("path"), str):
            src["path"] = _basename(src["path"])
    for calc in out.get("calculations") or []:
        for pp in (calc.get("pseudopotentials") or []) if isinstance(calc, dict) else []:
            if isinstance(pp, dict) and isinstance(pp.get("file"), str):
                pp["file"] = _basename(pp["file"])
    return out


def _basename(path: str) -> str:
    return posixpath.basename(ntpath.basename(path))


def effective_tier(store) -> str:
    """The stricter of a store's own tier (``mlds-store.json``) and the tier its remote is configured with."""
    from mlds.errors import StoreError

    try:
        own = store.tier
    except StoreError:
        own = None
    return stricter(own, getattr(store, "configured_tier", None))


def check_admission(store, manifest: dict[str, Any], what: str, tier: str | None = None) -> None:
    """The one gate of every route that writes a version into a store (add, add_files, tag, push,
    pull, clone -- :func:`mlds.store.versions.commit_refs` calls it; push and pull also call it
    before moving any byte): may ``store`` hold ``manifest`` as a tagged version?

    group: the kind's metadata requirements for the group tier.  public: those of
    the public tier, local paths already stripped, and the version must be one
    derived by ``mlds promote`` (``promoted_from``), i.e. vouched for by a
    group-tier remote; a clone, pull or add cannot put a draft there.
    """
    tier = tier or effective_tier(store)
    if tier == "personal":
        return
    kind = manifest.get("kind") or "dataset"
    check_metadata(manifest["metadata"], tier, what, store.name, kind)
    if tier != "public":
        return
    if "promoted_from" not in manifest:
        raise PolicyError(f"{what} cannot go to public-tier store {store.name}: a public store accepts only "
                          f"versions promoted from a group-tier remote ('mlds promote {what} --to {store.name}')")
    if kind == "dataset":
        from mlds.errors import ValidationError
        from mlds.format.schema import validate_metadata

        try:
            validate_metadata(manifest["metadata"], level="public")
        except ValidationError as err:
            raise PolicyError(f"{what} cannot go to public-tier store {store.name}: {err.message}") from None


def check_tag_move(store, dataset: str, tag: str, old: str | None, new: str) -> None:
    """Group and public stores never move a tag except ``latest``."""
    if old is None or old == new or tag == "latest":
        return
    try:
        tier = store.tier
    except Exception:  # noqa: BLE001 - no config: personal
        tier = "personal"
    if RANK.get(tier, 0) >= RANK["group"]:
        raise PolicyError(
            f"tag {dataset}@{tag} on {tier}-tier remote {store.name} is immutable "
            f"(points to {old[:12]}); choose a new tag")
