"""Version manifests: canonical JSON, schema validation, and safety checks.

A manifest describes one version of a named object of some kind
(:mod:`mlds.store.kinds`): a dataset lists its ``shards``, a potential its
``files``.  :func:`objects` is the one place that says which objects a manifest
references; push, pull, fsck, gc and the catalog all go through it.

A manifest's identity is the sha256 of its canonical bytes (sorted keys, compact
separators, UTF-8, trailing newline), so the same version always has the same key.
Everything read from a store is checked before use: the bytes must hash to the
key, the JSON must satisfy ``schema/manifest-v1.schema.json``, and every key it
names (shards, parents) must be a bare sha256 digest, so a hostile manifest
cannot make us read or write outside ``objects/``.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from mlds.errors import IntegrityError, StoreError
from mlds.store.store import HEX64, Store, check_hash, sha256_bytes

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schema"
MAX_MANIFEST_BYTES = 256 * 1024 * 1024
# identical shards can repeat (the same frames stored twice with --keep-duplicates), but a version listing one
# shard thousands of times is an attack on every reader (info would read it thousands of times)
MAX_SHARD_REPEATS = 64  # far above any real manifest; a bigger "manifest" is refused unread


@functools.lru_cache(maxsize=None)
def _validator(name: str):
    import jsonschema

    schema = json.loads((SCHEMA_DIR / name).read_text())
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema)


def validate_store_config(cfg: Any, where: str = "") -> None:
    errors = sorted(_validator("store-v1.schema.json").iter_errors(cfg), key=lambda e: list(e.path))
    if errors:
        e = errors[0]
        loc = "/".join(str(p) for p in e.path) or "(top)"
        raise StoreError(f"{where}: mlds-store.json is invalid at {loc}: {e.message}")


def encode(manifest: dict[str, Any]) -> bytes:
    return json.dumps(manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8") + b"\n"


def validate(manifest: Any, key: str = "?") -> dict[str, Any]:
    """Schema + key-safety checks; returns the manifest or raises IntegrityError."""
    if not isinstance(manifest, dict):
        raise IntegrityError(f"manifest {key} is not a JSON object")
    # explicit key checks first, for a precise message
    for i, shard in enumerate(manifest.get("shards") if isinstance(manifest.get("shards"), list) else []):
        if isinstance(shard, dict):
            h = shard.get("sha256")
            if not isinstance(h, str) or not HEX64.match(h):
                raise IntegrityError(f"manifest {key}: shard {i} key {h!r} is not a sha256 digest (it could escape the store)")
    counts: dict[str, int] = {}
    for o in (manifest.get("shards") if isinstance(manifest.get("shards"), list) else []):
        if isinstance(o, dict) and isinstance(o.get("sha256"), str):
            counts[o["sha256"]] = counts.get(o["sha256"], 0) + 1
    worst = max(counts.items(), key=lambda kv: kv[1], default=(None, 0))
    if worst[1] > MAX_SHARD_REPEATS:
        raise IntegrityError(f"manifest {key}: shard {worst[0]} is listed {worst[1]} times "
                             f"(at most {MAX_SHARD_REPEATS}); refusing it")
    for p in manifest.get("parents") or []:
        if not isinstance(p, str) or not HEX64.match(p):
            raise IntegrityError(f"manifest {key}: parent {p!r} is not a sha256 digest (it could escape the store)")
    files = manifest.get("files")
    if isinstance(files, list):
        seen: set[str] = set()
        for i, f in enumerate(files):
            if not isinstance(f, dict):
                continue
            h = f.get("sha256")
            if not isinstance(h, str) or not HEX64.match(h):
                raise IntegrityError(f"manifest {key}: file {i} key {h!r} is not a sha256 digest (it could escape the store)")
            path = f.get("path")
            why = unsafe_path(path)
            if why:
                raise IntegrityError(f"manifest {key}: file {i} path {path!r} {why}")
            if path in seen:
                raise IntegrityError(f"manifest {key}: file path {path!r} is listed twice")
            seen.add(path)
    errors = sorted(_validator("manifest-v1.schema.json").iter_errors(manifest), key=lambda e: list(e.path))
    if errors:
        e = errors[0]
        loc = "/".join(str(p) for p in e.path) or "(top)"
        raise IntegrityError(f"manifest {key} fails the manifest schema at {loc}: {e.message}")
    return manifest


def parse(data: bytes, key: str) -> dict[str, Any]:
    """Verify ``data`` hashes to ``key`` and is a valid manifest."""
    check_hash(key, "manifest")
    if sha256_bytes(data) != key:
        raise IntegrityError(f"manifest {key}: content does not match its sha256")
    try:
        obj = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise IntegrityError(f"manifest {key} is not valid JSON") from None
    return validate(obj, key)


def load(store: Store, key: str) -> dict[str, Any]:
    """Read, verify and validate manifest ``key`` from ``store``."""
    check_hash(key, "manifest")
    data = store.read_object(key, verify=False, limit=MAX_MANIFEST_BYTES)
    if sha256_bytes(data) != key:
        raise IntegrityError(f"{store.name}: manifest {key} is corrupt (sha256 mismatch)")
    return parse(data, key)


def put(store: Store, manifest: dict[str, Any]) -> str:
    validate(manifest, "(new)")
    return store.put_bytes(encode(manifest))


def unsafe_path(path: Any) -> str | None:
    """Why ``path`` cannot name a file of a potential (None when it is a safe relative path)."""
    if not isinstance(path, str) or not path:
        return "is not a non-empty string"
    if path.startswith("/") or "\\" in path or "\0" in path or (len(path) > 1 and path[1] == ":"):
        return "is not a relative '/'-separated path (it could escape the output folder)"
    if any(p in ("", ".", "..") for p in path.split("/")):
        return "has an empty, '.' or '..' part (it could escape the output folder)"
    return None


def kind(manifest: dict[str, Any]) -> str:
    """``dataset`` or ``potential`` (absent means dataset)."""
    return manifest.get("kind") or "dataset"


def objects(manifest: dict[str, Any]) -> list[tuple[str, int]]:
    """(sha256, size) of every object the manifest references (shards or files), in order.

    The one answer to "what does this version consist of" -- push, pull,
    fsck, gc and the catalog use it for every kind.
    """
    return [(o["sha256"], int(o["size"])) for o in manifest.get("shards") or manifest.get("files") or []]


def shard_hashes(manifest: dict[str, Any]) -> list[str]:
    return [h for h, _ in objects(manifest)]


def total_size(manifest: dict[str, Any]) -> int:
    return sum(size for _, size in objects(manifest))
