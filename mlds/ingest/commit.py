"""From converted sources to ONE new version per dataset, appended, under a lock.

Per target dataset name (the "base" a rule gave), inside the store lock
``locks/ingest/<base>.lock``:

1. re-read what the base dataset and its settings siblings already hold (a
   concurrent ingest may have committed the same sources meanwhile; those are
   dropped here, so nothing is doubled);
2. place each source by its settings compatibility key
   (:mod:`mlds.format.settings_key`): into the base dataset when compatible with
   everything in it, else into a sibling ``<base>.<key>`` holding compatible
   frames, else a new sibling — frames of different DFT settings never mix;
3. write one batch file per dataset (every source's frames, its calculation and
   provenance tables concatenated) and append it as one new version with
   ``mlds.store.api.add(..., append=True, dedupe=True)`` (CONTRACTS §2):
   previous shards are reused byte for byte, frames already present are not
   stored twice.

The version is the commit point: a process killed before it leaves the
previous version as it was (the batch is a temporary file), after it the
version is complete.  There is never a version with half of a batch.
"""

from __future__ import annotations

import inspect
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from mlds.errors import ConflictError
from mlds.format.settings_key import compatible, settings_key
from mlds.ingest.worker import SourceResult
from mlds.store.store import Store

LOCK_TTL = 3600.0
LOCK_WAIT = 3600.0   # a second ingest of the same tree waits for the first one's commit


@dataclass
class Placed:
    dataset: str
    results: list[SourceResult] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)  # loc -> why it went to a sibling


def sibling_pattern(base: str) -> re.Pattern[str]:
    return re.compile(re.escape(base) + r"\.sk-[0-9a-f]{8}")


def sibling_name(base: str, settings: dict[str, Any] | None) -> str:
    return f"{base}.sk-{settings_key(settings)[len('sk1-'):][:8]}"


def family(store: Store, base: str, names: Iterable[str] | None = None) -> list[str]:
    """``base`` then its settings siblings that exist in ``store``."""
    pat = sibling_pattern(base)
    return [base] + sorted(n for n in (names if names is not None else store.list_datasets()) if pat.fullmatch(n))


def calculations_of(store: Store, dataset: str) -> list[dict[str, Any]]:
    h = store.read_ref(dataset, "latest")
    if h is None:
        return []
    from mlds.store import manifest as mf

    return list(mf.load(store, h).get("metadata", {}).get("calculations", []))


def place(base: str, results: list[SourceResult], existing: dict[str, list[dict[str, Any]]]) -> list[Placed]:
    """Assign each source to the base dataset or a settings sibling (deterministic: sources sorted by path)."""
    profiles = {name: list(calcs) for name, calcs in existing.items()}
    order = [n for n in profiles if profiles[n] or n == base]
    out: dict[str, Placed] = {}
    for r in sorted(results, key=lambda r: r.loc):
        settings = r.settings or {}
        target = None
        why = ""
        for name in order:
            calcs = profiles.get(name) or []
            if not calcs:
                if name == base:
                    target = name
                    break
                continue
            verdict = [compatible(c, settings) for c in calcs]
            if all(ok for ok, _ in verdict):
                target = name
                break
            if name == base:
                why = next(reason for ok, reason in verdict if not ok)
        if target is None:
            target = sibling_name(base, settings)
            if target not in profiles:
                profiles[target] = []
                order.append(target)
        profiles.setdefault(target, []).append(settings)
        p = out.setdefault(target, Placed(target))
        p.results.append(r)
        if target != base:
            p.notes[r.loc] = f"settings differ from {base} ({why}); kept apart in {target}" if why else \
                f"settings differ from {base}; kept apart in {target}"
    return list(out.values())


def build_batch(dataset: str, results: list[SourceResult], path: Path) -> Path:
    """One mlds file holding every source's frames, with their tables concatenated."""
    from mlds.format.dataset import Dataset
    from mlds.format.writer import create

    with create(path, {"name": dataset}) as w:
        for r in results:
            with Dataset(r.staging_file) as ds:
                meta = ds.metadata
                calc_map = [w.add_calculation(c) for c in meta.get("calculations", [])]
                src_map = []
                for s in meta.get("sources", []):
                    s = dict(s)
                    if isinstance(s.get("calculation"), int) and 0 <= s["calculation"] < len(calc_map):
                        s["calculation"] = calc_map[s["calculation"]]
                    src_map.append(w.add_source(s))
                for frame in ds.iter_frames():
                    if 0 <= frame.source < len(src_map):
                        frame.source = src_map[frame.source]
                    if 0 <= frame.calculation < len(calc_map):
                        frame.calculation = calc_map[frame.calculation]
                    w.append_frame(frame)
    return path


def append_version(store: Store, dataset: str, batch: Path, message: str) -> dict[str, Any]:
    """Append ``batch`` to ``dataset`` as one new version (store contract §2)."""
    from mlds.store import api, versions

    if "append" in inspect.signature(versions.add).parameters:
        return api.add(batch, dataset, message, store=store, append=True, dedupe=True)
    return _append_by_rewrite(store, dataset, batch, message)


def _append_by_rewrite(store: Store, dataset: str, batch: Path, message: str) -> dict[str, Any]:
    """Until the store's ``append=True`` lands: previous frames + new ones, deduplicated, as one file.

    ``add`` then reuses the previous shards (they are a prefix of the new
    content) and writes only the new frames' shards, as the contract's append does.
    """
    from mlds.format.dataset import Dataset
    from mlds.format.framehash import frame_hash
    from mlds.format.writer import create
    from mlds.store import versions

    prev = versions.open_ref(f"{dataset}@latest", store=store) if store.read_ref(dataset, "latest") else None
    tmpdir = tempfile.mkdtemp(prefix="ingest-append-", dir=versions._staging_dir(store))  # noqa: SLF001
    try:
        seen: set[str] = set()
        meta: dict[str, Any] = {"name": dataset, "calculations": [], "sources": []}
        if prev is not None:
            meta = {k: v for k, v in prev.metadata.items() if k != "created_with"}
            meta["calculations"] = list(meta.get("calculations", []))
            meta["sources"] = list(meta.get("sources", []))
        full = Path(tmpdir) / "full.h5"
        added = dupes = 0
        with create(full, meta) as w:
            if prev is not None:
                for frame in prev.iter_frames():
                    seen.add(frame_hash(frame))
                    w.append_frame(frame)
            with Dataset(batch) as b:
                bm = b.metadata
                c0, s0 = len(w.metadata["calculations"]), len(w.metadata["sources"])
                w.metadata["calculations"].extend(bm.get("calculations", []))
                counts = [0] * len(bm.get("sources", []))
                dup_counts = [0] * len(counts)
                for frame in b.iter_frames():
                    h = frame_hash(frame)
                    if h in seen:
                        dupes += 1
                        if 0 <= frame.source < len(counts):
                            dup_counts[frame.source] += 1
                        continue
                    seen.add(h)
                    if 0 <= frame.source < len(counts):
                        counts[frame.source] += 1
                        frame.source += s0
                    if frame.calculation >= 0:
                        frame.calculation += c0
                    w.append_frame(frame)
                    added += 1
                for i, s in enumerate(bm.get("sources", [])):
                    s = dict(s)
                    if isinstance(s.get("calculation"), int):
                        s["calculation"] += c0
                    if dup_counts[i]:
                        s["frames_kept"] = counts[i]
                        s["duplicates_skipped"] = dup_counts[i]
                    w.metadata["sources"].append(s)
            if added == 0:
                w.abort()
        if prev is not None:
            prev.close()
            prev = None
        if added == 0:
            h = store.read_ref(dataset, "latest")
            return {"manifest": h, "version": None, "unchanged": True, "n_frames_added": 0, "duplicates_skipped": dupes}
        with Dataset(full) as ds:
            final_meta = ds.metadata
        rep = versions.add(full, dataset, message=message, store=store, metadata=final_meta)
        rep.update({"n_frames_added": added, "duplicates_skipped": dupes})
        return rep
    finally:
        if prev is not None:
            prev.close()
        import shutil

        shutil.rmtree(tmpdir, ignore_errors=True)


def commit_base(store: Store, base: str, results: list[SourceResult], *, message: str, staging: str,
                ingested_of: Any, retries: int = 3) -> tuple[list[Placed], dict[str, dict[str, Any]], list[SourceResult]]:
    """Place and append under the base dataset's ingest lock.

    Returns (placements, {dataset: add report}, sources dropped because a
    concurrent ingest committed them first).
    """
    key = f"locks/ingest/{base}.lock"
    with store.lock_key(key, f"ingest into {base}", ttl=LOCK_TTL, wait=LOCK_WAIT):
        for attempt in range(retries):
            names = family(store, base)
            done: set[str] = set()
            for n in names:
                done |= ingested_of(n)
            todo = [r for r in results if r.sha256 not in done]
            already = [r for r in results if r.sha256 in done]
            existing = {n: calculations_of(store, n) for n in names}
            placements = place(base, todo, existing)
            reports: dict[str, dict[str, Any]] = {}
            try:
                for p in placements:
                    batch = Path(tempfile.mkdtemp(prefix="batch-", dir=staging)) / f"{p.dataset}.h5"
                    build_batch(p.dataset, p.results, batch)
                    reports[p.dataset] = append_version(store, p.dataset, batch, message)
                    os.unlink(batch)
            except ConflictError:
                if attempt == retries - 1:
                    raise
                continue  # someone else's version landed between our read and our commit: place again
            return placements, reports, already
    raise AssertionError("unreachable")
