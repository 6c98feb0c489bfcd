"""Versions of file-set objects (kind ``potential``): add_files and checkout_files.

A potential is a handful of files (``input.nn``, ``scaling.data``, weights...)
that belong together.  Each file is an object named by its sha256, like a
dataset's shards, so push/pull/fsck/gc/promote treat both kinds alike; the
manifest lists ``files: [{"path", "sha256", "size"}]`` with relative paths.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping

from mlds.errors import IntegrityError, StoreError, ValidationError
from mlds.store import kinds
from mlds.store import manifest as mf
from mlds.store.store import CHUNK, Store, check_name
from mlds.store.versions import _commit_new_version, parse_ref, resolve


def _check_summary(summary: Any) -> dict[str, Any]:
    if not isinstance(summary, dict):
        raise ValidationError(None, "summary: must be a JSON object with at least elements and nelements")
    out = dict(summary)
    els = out.get("elements")
    if not isinstance(els, list) or not all(isinstance(e, str) for e in els):
        raise ValidationError(None, "summary.elements: required, a list of chemical symbols")
    out["elements"] = sorted(set(els))
    out.setdefault("nelements", len(out["elements"]))
    return out


def add_files(name: str, files: Mapping[str, "str | os.PathLike"], *, kind: str, metadata: dict[str, Any],
              summary: dict[str, Any], message: str = "", store: Store, author: str | None = None) -> dict[str, Any]:
    """Store ``files`` ({relative path in the object: local file}) as a new version of ``name``.

    Returns ``{"manifest", "version", "new_objects", "new_bytes", "unchanged"}``;
    identical files, metadata and summary make no new version (``unchanged``).
    """
    check_name(name)
    k = kinds.get(kind)
    if k.payload != "files":
        raise StoreError(f"add_files stores file-set kinds ({', '.join(n for n, x in kinds.KINDS.items() if x.payload == 'files')}); "
                         f"use add for a {k.name}")
    if not files:
        raise StoreError(f"{name}: no files given")
    kinds.validate_metadata(k.name, metadata)
    summary = _check_summary(summary)
    entries = []
    new_objects = new_bytes = 0
    for rel, local in sorted(files.items()):
        why = mf.unsafe_path(rel)
        if why:
            raise StoreError(f"{name}: file path {rel!r} {why}")
        local = Path(local)
        if not local.is_file():
            raise StoreError(f"{name}: {local} is not a file")
        size = local.stat().st_size
        h = _sha256(local)
        if not store.has_object(h, size):
            new_objects += 1
            new_bytes += size
        store.put_file(local, h)
        entries.append({"path": rel, "sha256": h, "size": size})
    prev_hash = store.read_ref(name, "latest")
    prev = mf.load(store, prev_hash) if prev_hash else None
    if prev is not None and mf.kind(prev) != k.name:
        raise StoreError(f"{store.name}: {name} is a {mf.kind(prev)}, not a {k.name}; choose another name")
    body = {"metadata": metadata, "files": entries, "summary": summary}
    if prev is not None and all(prev.get(key) == v for key, v in body.items()):
        return {"manifest": prev_hash, "version": prev["version"], "new_objects": 0, "new_bytes": 0, "unchanged": True}
    h, version = _commit_new_version(store, name, prev_hash, prev, body, author=author, message=message, kind=k.name)
    return {"manifest": h, "version": version, "new_objects": new_objects, "new_bytes": new_bytes, "unchanged": False}


def _sha256(path: Path) -> str:
    from mlds.util import sha256_file

    return sha256_file(path)


def checkout_files(ref: str, outdir: "str | os.PathLike", *, store: Store, force: bool = False) -> list[Path]:
    """Write the files of version ``ref`` into ``outdir``; returns their paths.

    Every byte is verified against the manifest while it is copied (size and
    sha256, in the same pass), each file lands under a temporary name and is
    renamed into place.  An existing file with other content is refused unless
    ``force``; one with the same content is left alone.
    """
    name, tag = parse_ref(ref)
    m = mf.load(store, resolve(store, name, tag))
    if "files" not in m:
        raise StoreError(f"{store.name}: {ref} is a {mf.kind(m)}, not a set of files; use checkout")
    out = Path(outdir)
    targets = [(f, out / f["path"]) for f in m["files"]]
    if not force:
        clash = [str(p) for f, p in targets if p.exists() and not _same(p, f)]
        if clash:
            raise StoreError(f"{clash[0]} exists with other content ({len(clash)} file(s) in the way); "
                             f"use --force to overwrite")
    written = []
    for f, path in targets:
        if path.is_file() and _same(path, f):
            written.append(path)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as dst:
                _copy_verified(store, f, dst)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        written.append(path)
    return written


def _same(path: Path, f: dict[str, Any]) -> bool:
    return path.is_file() and path.stat().st_size == int(f["size"]) and _sha256(path) == f["sha256"]


def _copy_verified(store: Store, f: dict[str, Any], dst) -> None:
    h, size = f["sha256"], int(f["size"])
    hasher = hashlib.sha256()
    n = 0
    try:
        with store.open_object(h) as src:
            while n <= size:
                block = src.read(min(CHUNK, size + 1 - n))
                if not block:
                    break
                hasher.update(block)
                dst.write(block)
                n += len(block)
    except FileNotFoundError:
        raise StoreError(f"{store.name}: object {h} ({f['path']}) is missing; pull it first") from None
    if n != size or hasher.hexdigest() != h:
        raise IntegrityError(f"{store.name}: object {h} ({f['path']}) is corrupt "
                             f"({'size' if n != size else 'sha256'} mismatch); nothing was written; run 'mlds fsck'")
