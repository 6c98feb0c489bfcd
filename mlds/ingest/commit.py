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
    """One mlds file holding every source's frames, in the order of ``results``, tables concatenated.

    Several sources share a staging file (one per worker chunk); only the
    frames of the given sources are copied, so a source that failed half-way or
    was placed in another dataset leaves nothing behind here.
    """
    from mlds.format.dataset import Dataset
    from mlds.format.writer import create

    files: dict[str, list[SourceResult]] = {}
    for r in results:
        files.setdefault(r.staging_file, []).append(r)
    with create(path, {"name": dataset}) as w:
        for staging, rs in files.items():
            with Dataset(staging) as ds:
                meta = ds.metadata
                calcs = meta.get("calculations", [])
                sources = meta.get("sources", [])
                calc_map: dict[int, int] = {}
                src_map: dict[int, int] = {}
                for r in sorted(rs, key=lambda r: r.staging_source):
                    s = dict(sources[r.staging_source])
                    c = s.get("calculation")
                    if isinstance(c, int) and 0 <= c < len(calcs):
                        if c not in calc_map:
                            calc_map[c] = w.add_calculation(calcs[c])
                        s["calculation"] = calc_map[c]
                    src_map[r.staging_source] = w.add_source(s)
                src = ds.array("source") if ds.has("source") else None
                if src is None:
                    continue
                wanted = sorted(src_map)
                # the frames of one source are contiguous: copy each wanted source's block
                for s_idx in wanted:
                    rows = (src == s_idx).nonzero()[0]
                    if rows.size == 0:
                        continue
                    for frame in ds.iter_frames(int(rows[0]), int(rows[-1]) + 1):
                        if frame.source != s_idx:
                            continue
                        frame.source = src_map[s_idx]
                        c = frame.calculation
                        if c >= 0:
                            if c not in calc_map:
                                calc_map[c] = w.add_calculation(calcs[c])
                            frame.calculation = calc_map[c]
                        w.append_frame(frame)
    return path


def append_version(store: Store, dataset: str, batch: Path, message: str) -> dict[str, Any]:
    """Append ``batch`` to ``dataset`` as one new version (store contract §2: shards reused, duplicates skipped)."""
    from mlds.store import api

    return api.add(batch, dataset, message, store=store, append=True, dedupe=True)


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
