"""``mlds ingest``: finished calculations in run trees become new dataset versions.

One ingest pass:

1. walk every tree (stat only), recognise calculation outputs by content — a
   file whose (size, mtime) the index has seen is not opened again;
2. group files by run folder; a run whose sources are all in their target
   dataset's current version (derived from its manifest), or failed before with
   the same content, is up to date;
3. the others: a run still being written (no closing mark and modified
   recently, or changing over ``settle`` seconds) is left for next time; the rest
   become tasks converted in parallel (:mod:`mlds.ingest.worker`);
4. sources are routed to datasets (:mod:`mlds.ingest.rules`), kept apart by
   settings, and appended as ONE new version per dataset (:mod:`mlds.ingest.commit`);
5. the index (a cache) is updated and new versions are pushed on request.

A process killed at any point leaves every dataset at a complete version; the
next pass converts whatever is not in a version yet.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

from mlds.errors import MldsError
from mlds.ingest import worker as W
from mlds.ingest.detect import is_finished, run_folder, sniff
from mlds.ingest.index import IngestIndex, ingested_sha256s, lineage
from mlds.ingest.rules import Router, Rule, RunFacts, load_rules
from mlds.ingest.tree import FileEntry, Tree, WalkProblem, is_readable_local, open_tree, parse_spec
from mlds.store.store import Store

# outcome statuses (one row per source file in the summary)
ADDED = "added"                 # frames read and appended to a new version
NO_NEW_FRAMES = "no new frames"  # read, but every frame is already in the dataset
UP_TO_DATE = "up to date"       # already in its dataset's current version
FAILED = "failed"               # could not be read, or yielded no frame (listed once; retried when it changes)
FAILED_BEFORE = "failed before"  # unchanged since it failed
RUNNING = "running"             # still being written: left for next time
NOT_READ = "not read"           # the same calculation was read from another file
VANISHED = "vanished"           # removed during the ingest
UNROUTED = "no rule"            # no [ingest] rule matches the run
QUIET = (UP_TO_DATE, FAILED_BEFORE)  # counted, not listed, in the summary

ProgressFn = Callable[[str, int, "int | None"], None]
CHUNK_RUNS = 32  # run folders per worker task (and per staging file)
SMALL_TASKS, SMALL_BYTES = 16, 32 << 20  # below both, no worker pool (its start-up costs ~1 s)


@dataclass
class Outcome:
    path: str
    status: str
    format: str | None = None
    dataset: str | None = None
    frames: int = 0                 # frames read from the file (kept by the reader)
    dropped: dict[str, int] = field(default_factory=dict)
    reason: str = ""


@dataclass
class IngestResult:
    outcomes: list[Outcome] = field(default_factory=list)
    versions: dict[str, dict[str, Any]] = field(default_factory=dict)   # dataset -> add report (new versions only)
    pushed: dict[str, dict[str, Any]] = field(default_factory=dict)
    push_errors: dict[str, str] = field(default_factory=dict)
    problems: list[WalkProblem] = field(default_factory=list)
    n_candidates: int = 0
    elapsed: float = 0.0

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == FAILED]

    @property
    def frames_added(self) -> int:
        return sum(int(r.get("n_frames_added", 0) or 0) for r in self.versions.values())

    @property
    def ok(self) -> bool:
        """False when a source failed in this pass or a push did not go through."""
        return not self.failed and not self.push_errors


@dataclass
class _Candidate:
    tree: Tree
    root_index: int
    entry: FileEntry
    fmt: str
    finished: bool
    sha: str | None       # valid for this (size, mtime)
    prev_sha: str | None  # from an earlier (size, mtime)


def ingest(paths: Sequence[str | os.PathLike], dataset: str | None = None, *, store: Store | None = None,
           rules: Sequence[Rule] | None = None, options: dict[str, Any] | None = None,
           workers: int | None = None, dask: str | None = None, settle: float = 2.0,
           stale_after: float = 3600.0, push: str | None = None, message: str | None = None,
           reader_options: dict[str, Any] | None = None, progress: ProgressFn | None = None) -> IngestResult:
    """Turn the finished, not yet ingested calculations under ``paths`` into new dataset versions.

    ``dataset`` names the target (a template like ``"{formula}"`` is allowed);
    without it the ``[ingest] rules`` of the config decide.  ``options`` are
    remote options for ``sftp://`` trees (key_file, ...).  ``workers`` processes
    convert in parallel (default: one per core); ``dask`` runs the conversions on a
    Dask cluster instead (see :mod:`mlds.ingest.executors`).  An output without
    its closing mark is left for next time while it is younger than
    ``stale_after`` seconds or changes within ``settle`` seconds; older, it is
    read as an interrupted run (its complete steps).  ``push`` names a remote
    that receives every new version.
    """
    from mlds.store.local import local_store
    from mlds.store.store import local_temp_dir

    t0 = time.monotonic()
    if not paths:
        raise MldsError("ingest: give at least one folder or sftp:// URL to walk")
    store = store or local_store()
    router = Router(dataset, rules if rules is not None or dataset else load_rules())
    specs = [parse_spec(p, options) for p in paths]
    note = progress or (lambda phase, done, total: None)
    result = IngestResult()
    idx = IngestIndex.load(store)
    staging = tempfile.mkdtemp(prefix="ingest-", dir=local_temp_dir(store))
    trees: list[Tree] = []
    try:
        for spec in specs:
            trees.append(_open(spec))
        state = _Pass(store, idx, router, result, trees)
        cands = state.scan(note)
        tasks = state.plan(cands, settle=settle, stale_after=stale_after, staging=staging,
                           reader_options=reader_options or {})
        converted = state.convert(tasks, workers=workers, dask=dask, note=note)
        idx.save()  # cache only: what was read and what failed; claims nothing about versions
        state.commit(converted, message=message or _message(specs, converted), staging=staging, note=note)
        if push:
            state.push(push, note)
        idx.save()
    finally:
        for t in trees:
            t.close()
        shutil.rmtree(staging, ignore_errors=True)
    result.outcomes.sort(key=lambda o: (o.path, o.status))
    result.elapsed = time.monotonic() - t0
    return result


def watch(paths: Sequence[str | os.PathLike], dataset: str | None = None, *, interval: float = 60.0,
          rounds: int | None = None, on_round: Callable[[int, "IngestResult | BaseException"], None] | None = None,
          **kwargs: Any) -> None:
    """Ingest, wait ``interval`` seconds, repeat (``rounds`` times, or until interrupted).

    Polling, not inotify: inotify sees nothing of writes made on other nodes of
    Lustre or GPFS, where run trees live.  A pass that fails (remote down, ...)
    is reported and the next one tries again.
    """
    n = 0
    while rounds is None or n < rounds:
        n += 1
        try:
            res: IngestResult | BaseException = ingest(paths, dataset, **kwargs)
        except MldsError as err:
            res = err
        if on_round:
            on_round(n, res)
        if rounds is not None and n >= rounds:
            break
        time.sleep(interval)


def _open(spec: Any) -> Tree:
    if spec.is_local:
        return open_tree(spec)
    from mlds.remotes.filesystems import translate_errors

    with translate_errors(spec.url):
        return open_tree(spec)


@contextlib.contextmanager
def _remote_errors(tree: Tree) -> Iterator[None]:
    """A connection lost while walking a remote tree: one line naming it, not a traceback."""
    if tree.fs is None:
        yield
        return
    from mlds.remotes.config import redact_url
    from mlds.remotes.filesystems import translate_errors

    with translate_errors(redact_url(tree.spec.url), tree.spec.url):
        yield


def _message(specs: Sequence[Any], converted: list[W.SourceResult]) -> str:
    from mlds.remotes.config import redact_url

    where = ", ".join(redact_url(s.url) for s in specs)
    return f"ingest {len(converted)} source(s) from {where}"


class _Pass:
    """The state of one ingest pass (kept out of ``ingest`` to keep each step small)."""

    def __init__(self, store: Store, idx: IngestIndex, router: Router, result: IngestResult, trees: list[Tree]) -> None:
        self.store, self.idx, self.router, self.result, self.trees = store, idx, router, result, trees
        self._datasets: list[str] | None = None
        self._ingested: dict[str, set[str]] = {}
        self._settings: dict[str, dict[str, Any]] = {}
        self._family: dict[str, list[str]] = {}
        self._family_done: dict[str, set[str]] = {}
        self.tree_of_folder: dict[str, Tree] = {}
        self.prev_state: dict[str, str] = {}

    # ------------------------------------------------------------------ helpers
    def outcome(self, loc: str, status: str, **kw: Any) -> None:
        self.result.outcomes.append(Outcome(loc, status, **kw))

    def ingested(self, name: str) -> set[str]:
        if name not in self._ingested:
            self._ingested[name] = ingested_sha256s(self.store, self.idx, name)
        return self._ingested[name]

    def forget_ingested(self, name: str) -> None:
        self._ingested.pop(name, None)
        self._datasets = None
        self._family.clear()
        self._family_done.clear()

    def family(self, base: str) -> list[str]:
        from mlds.ingest.commit import family

        if base not in self._family:
            if self._datasets is None:
                self._datasets = self.store.list_datasets()
            self._family[base] = family(self.store, base, self._datasets)
        return self._family[base]

    def family_done(self, base: str) -> set[str]:
        """sha256 of every source in ``base`` and its settings siblings (computed once per pass)."""
        if base not in self._family_done:
            out: set[str] = set()
            for n in self.family(base):
                out |= self.ingested(n)
            self._family_done[base] = out
        return self._family_done[base]

    def base_of(self, tree: Tree, folder: str, sha: str | None) -> str | None:
        """The rule's dataset for a run, or None; raises LookupError when its content must be read first."""
        facts = self.idx.facts.get(sha) if sha else None
        rf = RunFacts(tree.rel(folder), tuple(facts["elements"]) if facts else None,
                      facts.get("formula") if facts else None)
        return self.router.target(rf)

    # ------------------------------------------------------------------ 1. walk
    def scan(self, note: ProgressFn) -> list[_Candidate]:
        cands: list[_Candidate] = []
        seen: set[str] = set()
        for ti, tree in enumerate(self.trees):
            walked: set[str] = set()
            with _remote_errors(tree):
                self._scan_tree(ti, tree, walked, seen, cands, note)
            self.result.problems.extend(tree.problems)
            self._forget_removed(tree, walked)
        note("scanning", len(seen), len(seen))
        self.result.n_candidates = len(cands)
        return cands

    def _scan_tree(self, ti: int, tree: Tree, walked: set[str], seen: set[str], cands: list[_Candidate],
                   note: ProgressFn) -> None:
        for e in tree.walk():
            walked.add(e.loc)
            if e.loc in seen:  # the same file through two of the given paths (nested or repeated)
                continue
            seen.add(e.loc)
            if len(seen) % 500 == 0:
                note("scanning", len(seen), None)
            c = self._classify(tree, ti, e)
            if c is not None:
                cands.append(c)

    def _forget_removed(self, tree: Tree, walked: set[str]) -> None:
        """Drop index entries of files under this tree that no longer exist (the index stays the tree's size).

        Entries below a folder the walk could not list are kept: absent from the
        walk is not the same as removed.
        """
        if tree.root_dir != tree.loc(tree.root):
            return  # a single file was given: its folder was not walked
        root = tree.root_dir.rstrip("/") + "/"
        unlisted = [p.loc.rstrip("/") + "/" for p in tree.problems]
        for section in ("files", "failed"):
            for loc in [k for k in getattr(self.idx, section) if k.startswith(root) and k not in walked]:
                if not any(loc.startswith(u) or loc == u[:-1] for u in unlisted):
                    self.idx.drop(section, loc)
        for folder in [k for k in self.idx.runs if (k + "/").startswith(root)]:
            files = (self.idx.runs.get(folder) or {}).get("files") or {}
            if files and not any(f in walked for f in files) and not any((folder + "/").startswith(u) for u in unlisted):
                self.idx.drop("runs", folder)

    def _classify(self, tree: Tree, ti: int, e: FileEntry) -> _Candidate | None:
        cached = self.idx.files.get(e.loc)
        same = isinstance(cached, dict) and cached.get("size") == e.size and cached.get("mtime") == e.mtime
        if same and cached.get("unreadable"):
            if tree.fs is None and is_readable_local(e.path):
                same = False  # permissions fixed since: look again
            else:
                self.outcome(e.loc, FAILED_BEFORE, reason=cached.get("unreadable"))
                return None
        if same:
            fmt, finished, sha = cached.get("fmt"), bool(cached.get("finished")), cached.get("sha256")
            prev = sha or cached.get("prev_sha256")
        else:
            prev = cached.get("sha256") if isinstance(cached, dict) else None
            try:
                fmt, tail = tree.recognise(e.path, e.size, sniff)
            except FileNotFoundError:
                return None  # removed since the listing: nothing to ingest
            except PermissionError:
                self.idx.set("files", e.loc, {"size": e.size, "mtime": e.mtime, "unreadable": "unreadable: permission denied"})
                self.outcome(e.loc, FAILED, reason="unreadable: permission denied")
                return None
            except OSError as err:
                self.outcome(e.loc, VANISHED, reason=f"could not read ({err.strerror or err}); tried again next time")
                return None
            finished = bool(fmt) and is_finished(fmt, tail)
            sha = None
            self.idx.set("files", e.loc, {"size": e.size, "mtime": e.mtime, "fmt": fmt, "finished": finished,
                                          **({"prev_sha256": prev} if prev else {})})
        if not fmt:
            return None
        return _Candidate(tree, ti, e, fmt, finished, sha, prev)

    # ------------------------------------------------------------------ 2-3. what needs work
    def plan(self, cands: list[_Candidate], *, settle: float, stale_after: float, staging: str,
             reader_options: dict[str, Any]) -> list[W.RunTask]:
        runs: dict[tuple[int, str], list[_Candidate]] = {}
        for c in cands:
            runs.setdefault((c.root_index, run_folder(c.entry.loc, c.fmt)), []).append(c)
        needs: list[tuple[str, list[_Candidate]]] = []
        for (_, folder), files in sorted(runs.items(), key=lambda kv: kv[0][1]):
            files.sort(key=lambda c: c.entry.loc)
            self.tree_of_folder[folder] = files[0].tree
            if self._run_needs_work(folder, files):
                needs.append((folder, files))
        running = self._still_running([c for _, fs in needs for c in fs if not c.finished], settle, stale_after)
        tasks = []
        for folder, files in needs:
            busy = [c for c in files if c.entry.loc in running]
            if busy:
                for c in busy:
                    self.outcome(c.entry.loc, RUNNING, format=c.fmt, reason=running[c.entry.loc])
                continue
            tree = files[0].tree
            cfs = []
            for c in files:
                prev = c.sha or c.prev_sha
                state = self._state(tree, folder, c.entry.loc, prev)
                if state is not None:
                    self.prev_state[c.entry.loc] = state
                cfs.append(W.CandidateFile(c.entry.loc, c.entry.path, c.fmt, c.entry.size, c.entry.mtime,
                                           prev_sha=prev, prev_done=state is not None))
            tasks.append(W.RunTask(tree.spec, folder, cfs, staging, reader_options))
        return tasks

    def _state(self, tree: Tree, folder: str, loc: str, sha: str | None) -> str | None:
        """What content ``sha`` of ``loc`` needs: None (reading), or why not (up to date, failed before, no rule)."""
        if not sha:
            return None
        failed = self.idx.failed.get(loc)
        if isinstance(failed, dict) and failed.get("sha256") == sha:
            return FAILED_BEFORE
        try:
            base = self.base_of(tree, folder, sha)
        except LookupError:
            return None
        if base is None:
            return UNROUTED
        if sha in self.family_done(base):
            return UP_TO_DATE
        absorbed = (self.idx.facts.get(sha) or {}).get("absorbed") or {}
        for name, h in absorbed.items():
            if name in self.family(base) and h in lineage(self.store, self.idx, name):
                return UP_TO_DATE
        return None

    def _run_needs_work(self, folder: str, files: list[_Candidate]) -> bool:
        decision = self.idx.runs.get(folder)
        stats = {c.entry.loc: [c.entry.size, c.entry.mtime] for c in files}
        if not isinstance(decision, dict) or decision.get("files") != stats or any(c.sha is None for c in files):
            return True
        tree = files[0].tree
        by_loc = {c.entry.loc: c for c in files}
        states = {}
        for loc in decision.get("chosen", []):
            c = by_loc.get(loc)
            states[loc] = None if c is None else self._state(tree, folder, loc, c.sha)
            if states[loc] is None:
                return True
        for loc, state in states.items():
            reason = (self.idx.failed.get(loc) or {}).get("reason", "") if state == FAILED_BEFORE else ""
            self.outcome(loc, state, format=by_loc[loc].fmt, reason=reason)
        return False

    def _still_running(self, unfinished: list[_Candidate], settle: float, stale_after: float) -> dict[str, str]:
        now = time.time()
        running: dict[str, str] = {}
        to_watch = []
        for c in unfinished:
            age = now - c.entry.mtime
            if age < stale_after:
                running[c.entry.loc] = f"no closing mark yet, modified {_ago(age)} ago; left for next time"
            else:
                to_watch.append(c)
        if to_watch and settle > 0:
            time.sleep(settle)
            for c in to_watch:
                st = c.tree.stat(c.entry.path)
                if st is not None and st != (c.entry.size, c.entry.mtime):
                    running[c.entry.loc] = f"still being written (changed within {settle:g} s); left for next time"
        return running

    # ------------------------------------------------------------------ 3. convert
    def convert(self, tasks: list[W.RunTask], *, workers: int | None, dask: str | None,
                note: ProgressFn) -> list[W.SourceResult]:
        from mlds.ingest.executors import default_workers, run_all

        converted: list[W.SourceResult] = []
        total = len(tasks)
        note("converting", 0, total)
        # a few small runs are converted here: starting worker processes would cost more than it saves
        if workers is None and not dask and total <= SMALL_TASKS and \
                sum(f.size for t in tasks for f in t.files) <= SMALL_BYTES:
            workers = 1
        # consecutive runs share a staging file; chunks small enough that every worker stays busy
        n_workers = workers or default_workers()
        size = CHUNK_RUNS if n_workers == 1 and not dask else max(1, min(CHUNK_RUNS, total // (4 * n_workers)))
        chunks = [W.Chunk(tasks[i:i + size], tasks[i].staging) for i in range(0, total, size)]
        done = 0
        for chunk, out in run_all(W.convert_chunk, chunks, workers=workers, dask=dask):
            done += len(chunk.tasks)
            note("converting", done, total)
            if isinstance(out, BaseException):
                for task in chunk.tasks:  # our own bug or a lost worker: not cached, tried again next time
                    for f in task.files:
                        self.outcome(f.loc, FAILED, format=f.fmt, reason=f"worker error: {type(out).__name__}: {out}")
                continue
            by_task: dict[str, list[W.SourceResult]] = {}
            for r in out:
                by_task.setdefault(r.folder, []).append(r)
            for task in chunk.tasks:
                self._record(task, by_task.get(task.folder, []), converted)
        converted.sort(key=lambda r: r.loc)
        return converted

    def _record(self, task: W.RunTask, results: list[W.SourceResult], converted: list[W.SourceResult]) -> None:
        complete = True
        for r in results:
            entry = dict(self.idx.files.get(r.loc) or {})
            entry.pop("prev_sha256", None)
            if r.sha256:
                entry["sha256"] = r.sha256
            if r.status == W.VANISHED:
                complete = False
                self.idx.drop("files", r.loc)
                self.outcome(r.loc, VANISHED, format=r.fmt, reason=r.reason)
                continue
            self.idx.set("files", r.loc, entry)
            if r.status == W.CONVERTED:
                if r.settings is not None:  # thousands of runs share a few settings: keep one copy of each
                    r.settings = self._settings.setdefault(json.dumps(r.settings, sort_keys=True), r.settings)
                r.warnings = []
                self.idx.set("facts", r.sha256, {**self.idx.facts.get(r.sha256, {}), "elements": r.elements,
                                                "formula": r.formula})
                self.idx.drop("failed", r.loc)
                converted.append(r)
            elif r.status == W.FAILED:
                self.idx.set("failed", r.loc, {"sha256": r.sha256, "reason": r.reason})
                self.outcome(r.loc, FAILED, format=r.fmt, dropped=r.dropped, reason=r.reason)
            elif r.status == W.NOT_READ:
                self.outcome(r.loc, NOT_READ, format=r.fmt, reason=r.reason)
            elif r.status == W.UNCHANGED:
                state = self.prev_state.get(r.loc, UP_TO_DATE)
                reason = (self.idx.failed.get(r.loc) or {}).get("reason", "") if state == FAILED_BEFORE else ""
                self.outcome(r.loc, state, format=r.fmt, reason=reason)
        if complete and len(results) == len(task.files):
            self.idx.set("runs", task.folder, {
                "files": {f.loc: [f.size, f.mtime] for f in task.files},
                "chosen": [r.loc for r in results if r.status in (W.CONVERTED, W.FAILED, W.UNCHANGED)],
                "not_read": {r.loc: r.read_instead for r in results if r.status == W.NOT_READ},
            })

    # ------------------------------------------------------------------ 4. commit
    def commit(self, converted: list[W.SourceResult], *, message: str, staging: str, note: ProgressFn) -> None:
        from mlds.ingest.commit import commit_base

        by_base: dict[str, list[W.SourceResult]] = {}
        for r in converted:
            try:
                base = self.base_of(self.tree_of_folder[r.folder], r.folder, r.sha256)
            except LookupError:  # cannot happen: facts were recorded above
                base = None
            if base is None:
                self.outcome(r.loc, UNROUTED, format=r.fmt, frames=r.n_frames,
                             reason="no [ingest] rule matches this run; not ingested")
                continue
            by_base.setdefault(base, []).append(r)
        note("committing", 0, len(by_base))
        for k, (base, results) in enumerate(sorted(by_base.items()), 1):
            placements, reports, already = commit_base(self.store, base, results, message=message, staging=staging,
                                                       ingested_of=lambda n: ingested_sha256s(self.store, self.idx, n))
            for r in already:
                self.outcome(r.loc, UP_TO_DATE, format=r.fmt, dataset=base, frames=r.n_frames,
                             reason="a file with the same content (sha256) is already in the dataset")
            for p in placements:
                rep = reports.get(p.dataset, {})
                self.forget_ingested(p.dataset)
                if rep.get("unchanged"):
                    latest = self.store.read_ref(p.dataset, "latest")
                    for r in p.results:
                        facts = dict(self.idx.facts.get(r.sha256, {}))
                        facts["absorbed"] = {**facts.get("absorbed", {}), p.dataset: latest}
                        self.idx.set("facts", r.sha256, facts)
                        self.outcome(r.loc, NO_NEW_FRAMES, format=r.fmt, dataset=p.dataset, frames=r.n_frames,
                                     dropped=r.dropped, reason="every frame is already in the dataset")
                    continue
                self.result.versions[p.dataset] = rep
                for r in p.results:
                    self.outcome(r.loc, ADDED, format=r.fmt, dataset=p.dataset, frames=r.n_frames, dropped=r.dropped,
                                 reason=p.notes.get(r.loc, ""))
            note("committing", k, len(by_base))

    # ------------------------------------------------------------------ 5. push
    def push(self, remote: str, note: ProgressFn) -> None:
        from mlds.store import api

        pending = set(self.idx.pending_push.get(remote, [])) | set(self.result.versions)
        names = sorted(n for n in pending if self.store.read_ref(n, "latest"))
        note("pushing", 0, len(names))
        failed = []
        for k, name in enumerate(names, 1):
            try:
                self.result.pushed[name] = api.push(name, remote, store=self.store)
            except (MldsError, OSError) as err:  # the version is safe locally; the next ingest pushes it again
                self.result.push_errors[name] = " ".join(str(err).split())
                failed.append(name)
            note("pushing", k, len(names))
        if failed:
            self.idx.set("pending_push", remote, failed)
        elif remote in self.idx.pending_push:
            self.idx.drop("pending_push", remote)


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{max(0, int(seconds))} s"
    if seconds < 7200:
        return f"{int(seconds // 60)} min"
    return f"{seconds / 3600:.1f} h"


__all__ = ["ingest", "watch", "IngestResult", "Outcome"]
