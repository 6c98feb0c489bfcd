"""Object kinds a store versions: ``dataset`` (frames in shards) and ``potential`` (files).

A manifest says which kind it is (``"kind"``, default ``dataset``); everything
else in the store -- refs, tags, push/pull, fsck, gc, catalog -- works the same
for every kind, through :func:`mlds.store.manifest.objects`.  What differs per
kind lives here: where a kind's payload is listed in the manifest and which JSON
Schema its ``metadata`` must satisfy.  The schema is looked up by kind, so a new
kind is one entry in :data:`KINDS` plus its schema file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mlds.errors import StoreError, ValidationError

DEFAULT_KIND = "dataset"


@dataclass(frozen=True)
class Kind:
    name: str
    payload: str          # manifest key listing the objects: "shards" or "files"
    metadata_schema: str  # file in schema/ validating the manifest's metadata


KINDS: dict[str, Kind] = {
    "dataset": Kind("dataset", "shards", "metadata-v1.schema.json"),
    "potential": Kind("potential", "files", "potential-v1.schema.json"),
}


def get(name: str | None) -> Kind:
    k = KINDS.get(name or DEFAULT_KIND)
    if k is None:
        raise StoreError(f"unknown object kind {name!r}: use one of {', '.join(KINDS)}")
    return k


def kind_of(manifest: dict[str, Any]) -> str:
    return manifest.get("kind") or DEFAULT_KIND


def _schema_available(file_name: str) -> bool:
    from mlds.format.schema import _schema_dir

    return (_schema_dir() / file_name).is_file()


def validate_metadata(kind: str, metadata: Any, where: str = "metadata") -> None:
    """Raise :class:`ValidationError` unless ``metadata`` satisfies ``kind``'s schema.

    A kind whose schema file is not installed yet accepts any JSON object (the
    look-up stays in place, so the schema applies as soon as it ships).
    """
    k = get(kind)
    if not isinstance(metadata, dict):
        raise ValidationError(None, f"{where}: must be a JSON object, not {type(metadata).__name__}")
    if k.name == "dataset":
        from mlds.format.schema import validate_metadata as validate_dataset_metadata

        validate_dataset_metadata(metadata)
        return
    if not _schema_available(k.metadata_schema):
        return
    from jsonschema import exceptions as js_exc

    from mlds.format.schema import _describe, _validator

    errors = list(_validator(k.metadata_schema).iter_errors(metadata))
    if errors:
        raise ValidationError(None, f"{k.name} {_describe(js_exc.best_match(errors))}")


def missing_for_level(kind: str, metadata: dict[str, Any], level: str) -> list[str]:
    """Every schema problem of ``metadata`` for a non-dataset kind (tier rules add the rest)."""
    k = get(kind)
    if not _schema_available(k.metadata_schema):
        return [] if isinstance(metadata, dict) else ["metadata: must be a JSON object"]
    from mlds.format.schema import _describe, _validator

    return sorted({_describe(e) for e in _validator(k.metadata_schema).iter_errors(metadata)})
