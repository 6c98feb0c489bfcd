"""Duplicate frames in ``add``: which frames of a source are new (spec §16 frame hashes).

A frame is a duplicate when its ``mlds-frame-v1`` hash already occurs earlier in
the source, or (when appending) anywhere in the previous version.  Hashing a
large previous version on every append would cost more than the append itself
(``mlds ingest`` appends often), so each shard's frame hashes are cached in the
local store under ``cache/frame-hashes/<shard sha256>`` (32 raw bytes per frame).
The cache is derived data: never pushed, never needed, rebuilt when missing or
of the wrong length; fsck and gc ignore the folder.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from mlds.store.store import Store

CACHE_DIR = "cache/frame-hashes"
DIGEST = 32


@dataclass
class Selection:
    """Frames of a source to store, and what was skipped."""

    keep: np.ndarray                                 # source frame indices to store, ascending
    digests: list[bytes]                             # frame hashes of the kept frames (empty if not deduplicating)
    skipped: int = 0                                 # duplicates not stored
    skipped_by_source: dict[int, int] = field(default_factory=dict)  # provenance index -> duplicates

    @property
    def everything(self) -> bool:
        return self.skipped == 0


def select(ds: Any, *, dedupe: bool, known: set[bytes] | None = None) -> Selection:
    """Frames of ``ds`` that are neither in ``known`` nor repeats of an earlier frame of ``ds``."""
    n = len(ds)
    if not dedupe:
        return Selection(np.arange(n, dtype=np.int64), [])
    from mlds.format.framehash import iter_dataset_hashes

    seen = set(known or ())
    keep: list[int] = []
    digests: list[bytes] = []
    dup: list[int] = []
    for i, h in enumerate(iter_dataset_hashes(ds)):
        d = bytes.fromhex(h)
        if d in seen:
            dup.append(i)
            continue
        seen.add(d)
        keep.append(i)
        digests.append(d)
    by_source: dict[int, int] = {}
    if dup and ds.has("source"):
        src = ds.array("source")
        for i in dup:
            s = int(src[i])
            if s >= 0:
                by_source[s] = by_source.get(s, 0) + 1
    return Selection(np.asarray(keep, dtype=np.int64), digests, len(dup), by_source)


def note_in_provenance(metadata: dict[str, Any], sel: Selection) -> None:
    """Count the skipped duplicates in the provenance of the source files they came from (in place)."""
    sources = metadata.get("sources")
    if not isinstance(sources, list):
        return
    for s, k in sel.skipped_by_source.items():
        if 0 <= s < len(sources) and isinstance(sources[s], dict):
            entry = dict(sources[s])
            kept = entry.get("frames_kept")
            if isinstance(kept, int):
                entry["frames_kept"] = max(0, kept - k)
            dropped = dict(entry.get("frames_dropped") or {})
            dropped["duplicate"] = int(dropped.get("duplicate", 0)) + k
            entry["frames_dropped"] = dropped
            sources[s] = entry


# ----------------------------------------------------------------- per-shard hash cache
def _cache_path(store: Store, shard: str) -> str | None:
    return store.path(f"{CACHE_DIR}/{shard[:2]}/{shard[2:]}") if store.is_local else None


def remember(store: Store, shard: str, digests: Iterable[bytes]) -> None:
    """Cache the frame hashes of a shard just written (local stores only; best effort)."""
    path = _cache_path(store, shard)
    if path is None:
        return
    with contextlib.suppress(OSError):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".part-")
        with os.fdopen(fd, "wb") as fh:
            fh.write(b"".join(digests))
        os.replace(tmp, path)


def shard_digests(store: Store, shard: str, n_frames: int) -> list[bytes]:
    """Frame hashes of one shard of ``store``: from the cache, else computed (and cached)."""
    path = _cache_path(store, shard)
    if path is not None:
        with contextlib.suppress(OSError):
            with open(path, "rb") as fh:
                raw = fh.read()
            if len(raw) == DIGEST * n_frames:
                return [raw[i:i + DIGEST] for i in range(0, len(raw), DIGEST)]
    from mlds.format.dataset import Dataset
    from mlds.format.framehash import iter_dataset_hashes

    with _local_copy(store, shard) as local_path, Dataset(local_path) as ds:
        digests = [bytes.fromhex(h) for h in iter_dataset_hashes(ds)]
    remember(store, shard, digests)
    return digests


@contextlib.contextmanager
def _local_copy(store: Store, h: str):
    p = store.local_object_path(h)
    if p is not None:
        yield p
        return
    fd, tmp = tempfile.mkstemp(prefix=f"{h[:12]}-", suffix=".h5")
    try:
        with os.fdopen(fd, "wb") as out, store.open_object(h) as src:
            for block in iter(lambda: src.read(1 << 20), b""):
                out.write(block)
        yield tmp
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def version_digests(store: Store, manifest: dict[str, Any]) -> set[bytes]:
    """Every frame hash of a dataset version."""
    out: set[bytes] = set()
    for s in manifest["shards"]:
        out.update(shard_digests(store, s["sha256"], int(s["n_frames"])))
    return out
