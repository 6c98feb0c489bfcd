"""Convert run folders: the unit of work a worker process (or Dask worker) does.

A :class:`RunTask` names the candidate files of one run folder; a
:class:`Chunk` is a few consecutive tasks.  For each task the worker fetches
the files (remote trees: a temporary local copy of each file, nothing else of
the folder), hashes them, picks one source per calculation with
:func:`mlds.io.runs.group_runs`, and streams each chosen source into the
chunk's staging dataset next to the store (one HDF5 file per chunk, not per
run: creating a file costs more than parsing a small OUTCAR).  Memory stays
that of one reader batch whatever the size of a run, and the result sent back
is a few kilobytes of facts, never frames.  A source that fails half-way
leaves frames in the staging file under its own source index; they are never
copied out (only converted sources' frames are).
"""

from __future__ import annotations

import contextlib
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from mlds.errors import MldsError
from mlds.ingest.tree import Tree, TreeSpec, open_tree

# statuses of a SourceResult
CONVERTED = "converted"     # frames written to the staging file
UNCHANGED = "unchanged"     # same content as last time (only its mtime moved): nothing to do
NOT_READ = "not-read"       # the same calculation in another form was read instead
FAILED = "failed"           # unreadable, broken or no frame; retried only once it changes
VANISHED = "vanished"       # removed while we worked; looked at again next time


@dataclass
class CandidateFile:
    loc: str
    path: str
    fmt: str
    size: int
    mtime: float
    prev_sha: str | None = None     # content hash recorded last time
    prev_done: bool = False         # last time's content is ingested or failed: skip it if unchanged


@dataclass
class RunTask:
    tree: TreeSpec
    folder: str
    files: list[CandidateFile]
    staging: str
    reader_options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Chunk:
    tasks: list[RunTask]
    staging: str              # folder for the chunk's staging file


@dataclass
class SourceResult:
    loc: str
    fmt: str
    folder: str
    status: str
    sha256: str | None = None
    reason: str = ""
    n_frames: int = 0
    staging_file: str | None = None
    staging_source: int = -1          # index of this source in the staging file's sources table
    settings: dict[str, Any] | None = None
    elements: list[str] = field(default_factory=list)
    formula: str | None = None
    dropped: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    read_instead: str | None = None   # NOT_READ: the file that was read
    same_run: list[str] = field(default_factory=list)  # CONVERTED: other files of the run left out
    size: int = 0
    mtime: float = 0.0


_TREES: dict[TreeSpec, Tree] = {}


def _tree(spec: TreeSpec) -> Tree:
    """One opened tree per worker process (an SFTP connection is reused across tasks)."""
    tree = _TREES.get(spec)
    if tree is None:
        tree = _TREES[spec] = open_tree(spec)
    return tree


def convert_chunk(chunk: Chunk) -> list[SourceResult]:
    """Every candidate file of the chunk's run folders, each with its outcome."""
    sink = _Sink(Path(chunk.staging) / f"{uuid.uuid4().hex}.h5")
    results: list[SourceResult] = []
    try:
        for task in chunk.tasks:
            results.extend(convert_run(task, sink))
        sink.close()
    except BaseException:
        sink.abort()
        raise
    if sink.n_frames == 0:
        sink.path.unlink(missing_ok=True)
    return results


class _Sink:
    """The chunk's staging dataset, created on the first converted source."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.writer: Any = None
        self.n_frames = 0

    def open(self) -> Any:
        if self.writer is None:
            from mlds.format.writer import create

            self.writer = create(self.path, {}, validate=False)
        return self.writer

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.n_frames = self.writer.n_frames

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.abort()


def convert_run(task: RunTask, sink: "_Sink | None" = None) -> list[SourceResult]:
    """Every candidate file of one run folder, each with its outcome (frames go to ``sink``)."""
    if sink is None:  # one run on its own (tests, tools): its own staging file
        return convert_chunk(Chunk([task], task.staging))
    tree = _tree(task.tree)
    results: dict[str, SourceResult] = {}
    local: dict[str, Path] = {}
    with _fetched(tree, task, results) as local:
        shas: dict[str, str] = {}
        for f in task.files:
            if f.loc not in local:
                continue
            try:
                from mlds.util import sha256_file

                shas[f.loc] = sha256_file(local[f.loc])
            except OSError as err:
                results[f.loc] = _failed_os(f, task.folder, err)
        live = [f for f in task.files if f.loc in shas]
        for chosen, dups in _one_source_per_run(live, local):
            for dup in dups:
                results[dup.loc] = SourceResult(dup.loc, dup.fmt, task.folder, NOT_READ, sha256=shas[dup.loc],
                                                reason=f"same calculation as {_name(chosen.loc)}, which was read instead",
                                                read_instead=chosen.loc, size=dup.size, mtime=dup.mtime)
            sha = shas[chosen.loc]
            if chosen.prev_done and chosen.prev_sha == sha:
                results[chosen.loc] = SourceResult(chosen.loc, chosen.fmt, task.folder, UNCHANGED, sha256=sha,
                                                   size=chosen.size, mtime=chosen.mtime)
                continue
            not_read = [{"path": d.loc, "format": d.fmt, "sha256": shas[d.loc]} for d in dups]
            res = _convert_one(chosen, local[chosen.loc], sha, task, not_read, sink)
            res.same_run = [d.loc for d in dups]
            results[chosen.loc] = res
    return [results[f.loc] for f in task.files if f.loc in results]


@contextlib.contextmanager
def _fetched(tree: Tree, task: RunTask, results: dict[str, SourceResult]) -> Iterator[dict[str, Path]]:
    """Local paths of the task's files; files that vanished or cannot be read get their result here."""
    if tree.fs is None:
        out = {}
        for f in task.files:
            if os.path.exists(f.path):
                out[f.loc] = Path(f.path)
            else:
                results[f.loc] = SourceResult(f.loc, f.fmt, task.folder, VANISHED, reason="removed during the ingest")
        yield out
        return
    import shutil
    import tempfile

    tmp = tempfile.mkdtemp(prefix="mlds-ingest-")
    try:
        out = {}
        for f in task.files:
            # the runs module pairs files by folder, so the copies share one folder (and <prefix>.save/ below it)
            parent = f.path.rstrip("/").rsplit("/", 2)[-2] if f.path.count("/") >= 2 else ""
            rel = Path(parent, _name(f.path)) if parent.endswith(".save") else Path(_name(f.path))
            dest = Path(tmp) / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                tree.fetch(f.path, dest)
                out[f.loc] = dest
            except FileNotFoundError:
                results[f.loc] = SourceResult(f.loc, f.fmt, task.folder, VANISHED, reason="removed during the ingest")
            except PermissionError as err:
                results[f.loc] = _failed_os(f, task.folder, err)
            except Exception as err:  # noqa: BLE001 - a transport error on one file must not stop the batch
                results[f.loc] = SourceResult(f.loc, f.fmt, task.folder, VANISHED,
                                              reason=f"could not fetch ({_one_line(err)}); tried again next time")
        yield out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _one_source_per_run(files: list[CandidateFile], local: dict[str, Path]) -> list[tuple[CandidateFile, list[CandidateFile]]]:
    if len(files) < 2:
        return [(f, []) for f in files]
    from mlds.io.runs import group_runs

    by_local = {local[f.loc]: f for f in files}
    groups = group_runs([local[f.loc] for f in files], {local[f.loc]: f.fmt for f in files})
    return [(by_local[g.chosen], [by_local[p] for p, _ in g.duplicates]) for g in groups]


def _convert_one(f: CandidateFile, local: Path, sha: str, task: RunTask, not_read: list[dict[str, str]],
                 sink: _Sink) -> SourceResult:
    from mlds.io.registry import get_reader

    res = SourceResult(f.loc, f.fmt, task.folder, FAILED, sha256=sha, size=f.size, mtime=f.mtime)
    try:
        reader = get_reader(f.fmt)(local, **task.reader_options)
        reader.report.sha256 = sha          # hashed already: the reader need not hash again
        reader.report.path = f.loc          # provenance names the real file, not a temporary copy
        facts = _Facts()
        writer = sink.open()
        writer.append_from(facts.tap(reader))
        index = len(writer.metadata["sources"]) - 1
        prov = writer.metadata["sources"][index]
        prov["path"] = f.loc
        if not_read:  # which copies of this calculation were left out (provenance of the choice)
            prov["same_run_not_read"] = not_read
        prov["warnings"] = [w.replace(str(local), f.loc) for w in prov.get("warnings", [])]
        if not prov["warnings"]:
            del prov["warnings"]
        rep = reader.report
        res.warnings = [w.replace(str(local), f.loc) for w in rep.warnings]
        res.dropped = dict(rep.dropped)
        if rep.kept == 0:
            res.reason = _empty_reason(rep, res.warnings)
            return res
        res.status = CONVERTED
        res.n_frames = rep.kept
        res.staging_file = str(sink.path)
        res.staging_source = index
        res.settings = dict(rep.settings) if rep.settings else None
        res.elements, res.formula = facts.elements(), facts.formula
        return res
    except FileNotFoundError:
        res.status, res.reason = VANISHED, "removed during the ingest"
    except PermissionError as err:
        res.reason = f"unreadable: {err.strerror or 'permission denied'}"
    except MldsError as err:
        res.reason = _strip_path(str(err), (str(local), f.loc))
    except Exception as err:  # noqa: BLE001 - a reader crash on a broken file is that file's failure, not the batch's
        res.reason = f"reader error: {type(err).__name__}: {_one_line(err)}"
    return res  # frames it may have appended stay under its source index and are never copied out


class _Facts:
    """Elements and formula of a source's frames, gathered while they stream past."""

    def __init__(self) -> None:
        self._numbers: set[int] = set()
        self.formula: str | None = None

    def tap(self, reader: Any) -> Any:
        facts = self

        class _Tapped:
            report = reader.report

            def __iter__(self) -> Iterator[Any]:
                for frame in reader:
                    if facts.formula is None:
                        from mlds.ingest.rules import reduced_formula

                        facts.formula = reduced_formula(frame.numbers)
                    facts._numbers.update(int(z) for z in np.unique(frame.numbers))
                    yield frame

        return _Tapped()

    def elements(self) -> list[str]:
        from mlds.elements import chemical_symbols

        return sorted(chemical_symbols[z] for z in self._numbers)


def _empty_reason(report: Any, warnings: list[str]) -> str:
    reason = getattr(report, "empty_reason", None)  # set by every reader that yields no frame
    if reason:
        return str(reason)
    if warnings:
        return _strip_path(warnings[-1], (report.path,))
    return "no frame in the file"


def _strip_path(text: str, paths: tuple[str, ...]) -> str:
    for p in paths:
        if text.startswith(p + ":"):
            text = text[len(p) + 1:].lstrip()
            break
    for p in paths:
        text = text.replace(p, _name(p))
    return _one_line(text)


def _failed_os(f: CandidateFile, folder: str, err: OSError) -> SourceResult:
    why = "permission denied" if isinstance(err, PermissionError) else (err.strerror or type(err).__name__)
    return SourceResult(f.loc, f.fmt, folder, FAILED, reason=f"unreadable: {why}", size=f.size, mtime=f.mtime)


def _name(loc: str) -> str:
    return loc.rstrip("/").rsplit("/", 1)[-1]


def _one_line(err: Any, limit: int = 300) -> str:
    text = " ".join(str(err).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
