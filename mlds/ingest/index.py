"""The seen-runs index: what ingest remembers between runs, in ``<store>/ingest/``.

It is a cache, never the truth about what was ingested.  "This source is in
dataset D" is always derived from D's committed manifest (its
``sources[].sha256``); the index only remembers what is expensive to find out
again and cannot be wrong about versions:

``files``
    location -> size, mtime, format, finished, sha256 — a stat cache like git's
    index: an unchanged (size, mtime) means the recorded format and content hash
    still hold, so an unchanged tree is walked without reading a byte.
``runs``
    run folder -> which file was read and which were left out (same run in
    another form), valid while the folder's candidate files keep their stat.
``failed``
    location -> sha256 (or size/mtime when unreadable) and the reason: a broken
    file is listed once and retried only when it changes.
``facts``
    sha256 -> elements and formula of the file's frames (pure functions of its
    content), so routing rules can name the target dataset without re-reading.
``ingested``
    dataset -> {head, sha256s}: the derived set, cached under the manifest
    hash it was derived from (immutable, so the cache cannot go stale).
``lineage``
    dataset -> the manifest hashes on the first-parent chain of its latest
    version, extended incrementally (a source whose frames were all already in
    version H stays "absorbed" while H is an ancestor of the current version).
``pending_push``
    remote -> datasets whose push failed; the next ingest pushes them again.

Writes are atomic (temporary file + rename) and merged under a store lock, so
two ingests at once never lose each other's entries; a killed ingest leaves at
worst an older index, which only costs re-reading some files.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from mlds.store.store import Store

INDEX_DIR = "ingest"
INDEX_FILE = "index.json"
FORMAT_VERSION = 1
_SECTIONS = ("files", "runs", "failed", "facts", "ingested", "lineage", "pending_push")


@dataclass
class IngestIndex:
    store: Store
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    failed: dict[str, dict[str, Any]] = field(default_factory=dict)
    facts: dict[str, dict[str, Any]] = field(default_factory=dict)
    ingested: dict[str, dict[str, Any]] = field(default_factory=dict)
    lineage: dict[str, dict[str, Any]] = field(default_factory=dict)
    pending_push: dict[str, list[str]] = field(default_factory=dict)
    _dirty: dict[str, set[str]] = field(default_factory=lambda: {s: set() for s in _SECTIONS})
    _removed: dict[str, set[str]] = field(default_factory=lambda: {s: set() for s in _SECTIONS})

    # ------------------------------------------------------------------ io
    @classmethod
    def load(cls, store: Store) -> "IngestIndex":
        idx = cls(store)
        data = _read(store)
        for s in _SECTIONS:
            value = data.get(s)
            if isinstance(value, dict):
                setattr(idx, s, value)
        return idx

    def set(self, section: str, key: str, value: Any) -> None:
        getattr(self, section)[key] = value
        self._dirty[section].add(key)
        self._removed[section].discard(key)

    def drop(self, section: str, key: str) -> None:
        if getattr(self, section).pop(key, None) is not None:
            self._removed[section].add(key)
        self._dirty[section].discard(key)

    def save(self) -> None:
        """Merge this process's changes into the stored index and write it atomically."""
        if not any(self._dirty[s] or self._removed[s] for s in _SECTIONS):
            return
        key = f"locks/{INDEX_DIR}/index.lock"
        with self.store.lock_key(key, "the ingest index", ttl=120.0, wait=120.0):
            current = _read(self.store)
            for s in _SECTIONS:
                table = current.get(s)
                if not isinstance(table, dict):
                    table = current[s] = {}
                mine = getattr(self, s)
                for k in self._removed[s]:
                    table.pop(k, None)
                for k in self._dirty[s]:
                    if k in mine:
                        table[k] = mine[k]
            current["mlds_ingest_index"] = FORMAT_VERSION
            _write(self.store, current)
            for s in _SECTIONS:
                setattr(self, s, current[s])
                self._dirty[s].clear()
                self._removed[s].clear()


def index_path(store: Store) -> str:
    if not store.is_local:
        from mlds.errors import StoreError

        raise StoreError(f"{store.name}: ingest writes into a local store (then --push to a remote)")
    return os.path.join(store.root, INDEX_DIR, INDEX_FILE)


def _read(store: Store) -> dict[str, Any]:
    try:
        with open(index_path(store), "rb") as fh:
            data = json.loads(fh.read())
    except FileNotFoundError:
        return {}
    except ValueError:
        return {}  # a damaged cache is rebuilt, never trusted
    if not isinstance(data, dict) or data.get("mlds_ingest_index") != FORMAT_VERSION:
        return {}
    return data


def _write(store: Store, data: dict[str, Any]) -> None:
    path = index_path(store)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.part"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(data, separators=(",", ":"), sort_keys=True))  # dumps: the C encoder (dump is pure Python)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _at_head(store: Store, idx: IngestIndex, section: str, dataset: str, values: str
             ) -> tuple[str | None, dict[str, Any], set[str] | None]:
    """(latest manifest hash, cached entry, cached values if they were derived from that very manifest)."""
    h = store.read_ref(dataset, "latest")
    cached = getattr(idx, section).get(dataset)
    cached = cached if isinstance(cached, dict) else {}
    hit = set(cached.get(values) or []) if h is not None and cached.get("head") == h else None
    return h, cached, (set() if h is None else hit)


def ingested_sha256s(store: Store, idx: IngestIndex, dataset: str) -> set[str]:
    """sha256 of every source file in ``dataset``'s latest version (derived, cached by manifest hash)."""
    h, _, hit = _at_head(store, idx, "ingested", dataset, "sha256s")
    if hit is not None:
        return hit
    from mlds.store import manifest as mf

    m = mf.load(store, h)
    shas = sorted({s["sha256"] for s in m.get("metadata", {}).get("sources", []) if isinstance(s, dict) and s.get("sha256")})
    idx.set("ingested", dataset, {"head": h, "sha256s": shas})
    return set(shas)


def lineage(store: Store, idx: IngestIndex, dataset: str, limit: int = 100_000) -> set[str]:
    """Manifest hashes of ``dataset@latest`` and its first-parent ancestors (cached, extended incrementally)."""
    h, cached, hit = _at_head(store, idx, "lineage", dataset, "hashes")
    if hit is not None:
        return hit
    from mlds.store import manifest as mf

    known = list(cached.get("hashes") or [])
    known_set = set(known)
    new: list[str] = []
    cur: str | None = h
    while cur is not None and cur not in known_set and len(new) < limit:
        new.append(cur)
        if not store.has_object(cur):
            cur = None  # a pulled version's ancestors may be absent: the chain ends here
            break
        parents = mf.load(store, cur).get("parents") or []
        cur = parents[0] if parents else None
    hashes = new + (known[known.index(cur):] if cur is not None and cur in known_set else [])
    idx.set("lineage", dataset, {"head": h, "hashes": hashes})
    return set(hashes)
