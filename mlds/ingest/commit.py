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
   ``mlds.store.api.add(..., append=True, dedupe=True)``:
   previous shards are reused byte for byte, frames already present are not
   stored twice.

The version is the commit point: a process killed before it leaves the
previous version as it was (the batch is a temporary file), after it the
version is complete.  There is never a version with half of a batch.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable


from mlds.errors import ConflictError
from mlds.format.settings_key import settings_key
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
    """Assign each source to the base dataset or a settings sibling (deterministic: sources sorted by path).

    A dataset accepts a source when its settings are compatible with every
    distinct settings key the dataset holds.
    """
    import json

    from mlds.format.settings_key import fields_compatible, settings_fields

    def canon(settings: dict[str, Any] | None) -> tuple[str, dict[str, Any]]:
        f = settings_fields(settings)
        return json.dumps(f, sort_keys=True), f

    profiles: dict[str, dict[str, dict[str, Any]]] = {}   # dataset -> {canonical fields: fields}
    for name, calcs in existing.items():
        profiles[name] = dict(canon(c) for c in calcs)
    order = [n for n in profiles if profiles[n] or n == base]
    verdicts: dict[tuple[str, str], tuple[bool, str]] = {}
    out: dict[str, Placed] = {}
    for r in sorted(results, key=lambda r: r.loc):
        key, fields = canon(r.settings)
        target = None
        why = ""
        for name in order:
            prof = profiles.get(name) or {}
            if not prof:
                if name == base:
                    target = name
                    break
                continue
            bad = ""
            for pk, pf in prof.items():
                v = verdicts.get((pk, key))
                if v is None:
                    v = verdicts[(pk, key)] = fields_compatible(pf, fields)
                if not v[0]:
                    bad = v[1]
                    break
            if not bad:
                target = name
                break
            if name == base:
                why = bad
        if target is None:
            target = sibling_name(base, r.settings)
            if target not in profiles:
                profiles[target] = {}
                order.append(target)
        profiles.setdefault(target, {})[key] = fields
        p = out.setdefault(target, Placed(target))
        p.results.append(r)
        if target != base:
            p.notes[r.loc] = f"settings differ from {base} ({why}); kept apart in {target}" if why else \
                f"settings differ from {base}; kept apart in {target}"
    return list(out.values())


def build_batches(placements: list[Placed], folder: Path) -> dict[str, Path]:
    """One mlds file per placement with its sources' frames (in path order), tables concatenated.

    Sources share staging files (one per worker chunk) and one chunk may feed
    several datasets, so each staging file is read once and its frames routed
    to the batch of their source's dataset.  Frames of sources that are not
    placed (failed half-way, already committed) are not copied.
    """
    from mlds.format.dataset import Dataset
    from mlds.format.writer import create

    route: dict[str, dict[int, tuple[str, SourceResult]]] = {}   # staging file -> source index -> (dataset, result)
    first: dict[str, str] = {}                                   # staging file -> smallest path it holds
    for p in placements:
        for r in p.results:
            route.setdefault(r.staging_file, {})[r.staging_source] = (p.dataset, r)
            first[r.staging_file] = min(first.get(r.staging_file, r.loc), r.loc)
    paths = {p.dataset: folder / f"{p.dataset}.h5" for p in placements}
    with contextlib.ExitStack() as stack:
        writers = {name: stack.enter_context(create(path, {"name": name})) for name, path in paths.items()}
        for staging in sorted(route, key=lambda f: first[f]):
            with Dataset(staging) as ds:
                meta = ds.metadata
                calcs, sources = meta.get("calculations", []), meta.get("sources", [])
                calc_maps: dict[str, dict[int, int]] = {name: {} for name in writers}
                src_map: dict[int, tuple[Any, int, dict[int, int]]] = {}
                for s_idx in sorted(route[staging]):
                    name, _ = route[staging][s_idx]
                    w, cmap = writers[name], calc_maps[name]
                    entry = dict(sources[s_idx])
                    c = entry.get("calculation")
                    if isinstance(c, int) and 0 <= c < len(calcs):
                        if c not in cmap:
                            cmap[c] = w.add_calculation(calcs[c])
                        entry["calculation"] = cmap[c]
                    src_map[s_idx] = (w, w.add_source(entry), cmap)
                if not src_map or not ds.has("source"):
                    continue
                for frame in ds.iter_frames():
                    target = src_map.get(frame.source)
                    if target is None:
                        continue
                    w, frame.source, cmap = target
                    c = frame.calculation
                    if c >= 0:
                        if c not in cmap:
                            cmap[c] = w.add_calculation(calcs[c])
                        frame.calculation = cmap[c]
                    w.append_frame(frame)
    return paths


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
            folder = Path(tempfile.mkdtemp(prefix="batch-", dir=staging))
            batches = build_batches(placements, folder)
            try:
                for p in placements:
                    reports[p.dataset] = append_version(store, p.dataset, batches[p.dataset], message)
                    os.unlink(batches[p.dataset])
            except ConflictError:
                if attempt == retries - 1:
                    raise
                continue  # someone else's version landed between our read and our commit: place again
            return placements, reports, already
    raise AssertionError("unreachable")
