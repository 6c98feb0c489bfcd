"""One reader -> filter -> writer pipeline: what `mlds import`, `convert` and `export` run.

Inputs are files, folders (searched recursively), glob patterns, mlds datasets
(``.h5``/``.zarr``/``.zarr.zip``) and store versions ``NAME[@TAG]``, so merging
datasets, splitting train/test out of one and exporting a subset are each one
call.  Along the way:

* one source per calculation: a run folder's OUTCAR + vasprun.xml (or pw.x
  output + ``data-file-schema.xml``) is read once (:mod:`mlds.io.runs`);
* selection (a frame range, an element set) and duplicate removal by the frame
  content hash (spec §16; the first occurrence is kept, the rest counted in the
  summary and in the provenance as ``frames_dropped["duplicate"]``);
* ``--test-fraction`` tags frames ``set=test``/``set=train`` (kept in mlds
  datasets since spec 1.1, written as n2p2 ``set=`` and extxyz ``set``);
* provenance: every output frame points at its source file and its
  calculation settings; datasets read as inputs bring their tables along.

Output is staged in a temporary sibling folder and moved into place only when
everything succeeded and produced at least one frame: a failure or an empty
result leaves nothing behind.  An existing output is replaced only with
``force=True``; an existing folder (aenet output) receives only the files the
writer made, and no command removes a folder mlds did not create.
"""

from __future__ import annotations

import glob
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from mlds.errors import FormatError, MldsError, OutputExistsError, UnknownFormatError
from mlds.io.registry import SourceReport, detect, get_reader, get_writer
from mlds.util import is_mlds_zarr_dir, move_into_place

MLDS_SUFFIXES = (".h5", ".hdf5", ".zarr", ".zarr.zip")
# name suffix -> output format; checked longest first
_SUFFIX_FORMATS = ((".zarr.zip", "mlds"), (".hdf5", "mlds"), (".h5", "mlds"), (".zarr", "mlds"),
                   (".extxyz", "extxyz"), (".xyz", "extxyz"), (".data", "n2p2"))
FOLDER_FORMATS = ("aenet",)
INHERITED_KEYS = ("name", "description", "license", "authors", "keywords", "extra")


class EmptyOutputError(MldsError):
    """Every input together gave no frame: nothing was written (``result`` says why per source)."""

    def __init__(self, message: str, result: "ConvertResult") -> None:
        super().__init__(message)
        self.result = result


@dataclass
class SourceSummary:
    """What happened to one input: a row of the summary table."""

    path: str
    format: str
    kept: int = 0
    dropped: dict[str, int] = field(default_factory=dict)   # reason -> frames (reader's and the pipeline's)
    warnings: list[str] = field(default_factory=list)
    empty_reason: str | None = None                         # why it gave no frame

    @property
    def duplicates(self) -> int:
        return self.dropped.get("duplicate", 0)


@dataclass
class ConvertResult:
    output: Path
    format: str = "mlds"
    n_frames: int = 0
    sources: list[SourceSummary] = field(default_factory=list)
    skipped_inputs: list[tuple[str, str]] = field(default_factory=list)  # (path, why not read)
    duplicates: int = 0
    not_selected: int = 0
    n_test: int = 0

    @property
    def empty_sources(self) -> list[SourceSummary]:
        return [s for s in self.sources if s.kept == 0]


# ----------------------------------------------------------------------------- output format
def output_format(output: str | os.PathLike, to_fmt: str | None = None) -> str:
    """The writer for ``output``: from its name, checked against ``to_fmt`` (``--to``).

    ``.h5``/``.hdf5``/``.zarr``/``.zarr.zip`` -> mlds, ``.xyz``/``.extxyz`` ->
    extxyz, ``*.data`` (``input.data``) -> n2p2; a folder needs ``--to aenet``.
    A name that says one format while ``--to`` says another is an error.
    """
    out = Path(output)
    by_name = next((fmt for suffix, fmt in _SUFFIX_FORMATS if out.name.lower().endswith(suffix)), None)
    if to_fmt is not None:
        to_fmt = to_fmt.lower()
        if to_fmt != "mlds":
            get_writer(to_fmt)  # unknown name -> one line listing the known ones
        if by_name is not None and by_name != to_fmt:
            raise FormatError(out, f"the name says {by_name} but --to says {to_fmt}; rename the output or drop --to")
        if to_fmt in FOLDER_FORMATS and out.exists() and not out.is_dir():
            raise FormatError(out, f"--to {to_fmt} writes a folder, but this is a file")
        return to_fmt
    if by_name is None:
        kind = "a folder" if out.is_dir() else "this name"
        raise FormatError(out, f"cannot tell the output format from {kind}; use .h5/.zarr/.zarr.zip (mlds), "
                          ".xyz/.extxyz (extxyz), input.data (n2p2), or pass --to (aenet writes a folder)")
    return by_name


def check_output(output: str | os.PathLike, fmt: str, *, force: bool = False) -> None:
    """Refuse, before any work, an output that would destroy something or cannot be made."""
    out = Path(output)
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise FormatError(out, f"folder {parent} does not exist (mlds does not create it; make it first)")
    if not (out.exists() or out.is_symlink()):
        return
    if fmt in FOLDER_FORMATS:
        if not out.is_dir():
            raise OutputExistsError(f"{out} exists and is not a folder; {fmt} output is a folder")
        return  # files are merged in; clashes are checked when the writer has made them
    if out.is_dir() and not (fmt == "mlds" and is_mlds_zarr_dir(out)):
        raise OutputExistsError(f"{out} is a folder; not replacing it (choose another output name)")
    if not force:
        raise OutputExistsError(f"{out} already exists; pass --force to replace it")


# ----------------------------------------------------------------------------- inputs
@dataclass
class _Input:
    kind: str          # "file" (a reader), "dataset" (an mlds file or folder), "ref" (a store version)
    target: Any        # Path, or the ref text
    fmt: str | None = None


def _is_mlds_path(path: Path) -> bool:
    name = path.name.lower()
    if not name.endswith(MLDS_SUFFIXES):
        return False
    if path.is_dir():
        return is_mlds_zarr_dir(path)
    try:
        from mlds.format.dataset import Dataset

        Dataset(path).close()
        return True
    except (MldsError, OSError):
        return False


def _walk(folder: Path) -> Iterator[Path]:
    """Files below ``folder`` in sorted order; a Zarr dataset folder is one item, hidden entries skipped."""
    for root, dirs, files in os.walk(folder):
        here = Path(root)
        keep = []
        for d in sorted(dirs):
            if d.startswith("."):
                continue
            if (here / d / "zarr.json").is_file():
                yield here / d
            else:
                keep.append(d)
        dirs[:] = keep
        for f in sorted(files):
            if not f.startswith("."):
                yield here / f


def expand_inputs(inputs: Iterable[str | os.PathLike], *, from_fmt: str | None = None,
                  ) -> tuple[list[_Input], list[tuple[str, str]]]:
    """Inputs to read, and ``(path, why)`` for files found in folders but not read.

    Named files are read as given (format by content unless ``from_fmt``);
    inside folders only files whose format is recognised are taken; mlds
    datasets are read as datasets; a name that is not a file is tried as a
    store version ``NAME[@TAG]``.  Files of one calculation are read once.
    """
    items: list[_Input] = []
    skipped: list[tuple[str, str]] = []
    for item in inputs:
        text = os.fspath(item)
        matches = sorted(glob.glob(text, recursive=True)) if glob.has_magic(text) else [text]
        if not matches:
            raise FormatError(text, "no file matches this pattern")
        for m in matches:
            p = Path(m)
            if _is_mlds_path(p):
                items.append(_Input("dataset", p))
            elif p.is_dir():
                for child in _walk(p):
                    if _is_mlds_path(child):
                        items.append(_Input("dataset", child))
                    elif child.is_dir():
                        skipped.append((str(child), "a Zarr folder that is not an mlds dataset"))
                    elif from_fmt:
                        items.append(_Input("file", child, from_fmt))
                    else:
                        try:
                            items.append(_Input("file", child, detect(child).name))
                        except (UnknownFormatError, OSError):
                            skipped.append((str(child), "format not recognised"))
            elif p.exists():
                items.append(_Input("file", p, from_fmt))
            elif _looks_like_ref(text):
                items.append(_Input("ref", text))
            else:
                raise FormatError(p, "no such file, folder or store dataset")
    return _one_source_per_run(items, skipped)


def _looks_like_ref(text: str) -> bool:
    from mlds.api import looks_like_ref

    return looks_like_ref(text)


def _one_source_per_run(items: list[_Input], skipped: list[tuple[str, str]]) -> tuple[list[_Input], list[tuple[str, str]]]:
    from mlds.io.runs import pick_sources

    files = [it for it in items if it.kind == "file"]
    if len(files) < 2:
        return items, skipped
    formats = {it.target: it.fmt for it in files if it.fmt}
    chosen, left_out = pick_sources([it.target for it in files], formats)
    keep = set(chosen)
    out = [it for it in items if it.kind != "file" or it.target in keep]
    return out, skipped + [(str(p), why) for p, why in left_out]


# ----------------------------------------------------------------------------- selection
@dataclass
class Selection:
    """Which frames of the input stream to keep (indices count every input frame, from 0)."""

    frames: str | None = None          # "0:100,150,200:400:2"
    elements: Iterable[str] | None = None  # keep frames made only of these elements

    def __post_init__(self) -> None:
        self._ranges = _parse_ranges(self.frames) if self.frames else None
        self._allowed = _element_numbers(self.elements) if self.elements else None
        self.last = None if self._ranges is None or any(r.stop is None for r in self._ranges) else \
            max(r.stop for r in self._ranges) - 1

    @property
    def active(self) -> bool:
        return self._ranges is not None or self._allowed is not None

    def keeps(self, index: int, frame: Any) -> bool:
        if self._ranges is not None and not any(_in_range(index, r) for r in self._ranges):
            return False
        if self._allowed is not None and not set(frame.numbers.tolist()) <= self._allowed:
            return False
        return True


def _parse_ranges(text: str) -> list[slice]:
    out = []
    for part in text.split(","):
        part = part.strip()
        try:
            if ":" in part:
                bits = [int(b) if b.strip() else None for b in part.split(":")]
                if len(bits) > 3:
                    raise ValueError
                s = slice(*bits)
            else:
                i = int(part)
                s = slice(i, i + 1)
        except ValueError:
            raise FormatError(None, f"--frames: {part!r} is not an index or a range like 0:100 or 0:100:5") from None
        if (s.start or 0) < 0 or (s.stop is not None and s.stop < 0) or (s.step is not None and s.step <= 0):
            raise FormatError(None, f"--frames: {part!r}: indices count from 0 and steps are positive")
        out.append(s)
    return out


def _in_range(i: int, s: slice) -> bool:
    start, step = s.start or 0, s.step or 1
    return i >= start and (s.stop is None or i < s.stop) and (i - start) % step == 0


def _element_numbers(elements: Iterable[str]) -> set[int]:
    from ase.data import atomic_numbers

    out = set()
    for item in elements:
        for sym in str(item).replace(",", " ").split():
            if sym not in atomic_numbers:
                raise FormatError(None, f"--elements: {sym!r} is not an element symbol")
            out.add(atomic_numbers[sym])
    return out


# ----------------------------------------------------------------------------- provenance
class _Tables:
    """The output's calculations and sources tables, filled as frames pass."""

    def __init__(self, calculations: list[dict[str, Any]]) -> None:
        self.calculations: list[dict[str, Any]] = [dict(c) for c in calculations]
        self.sources: list[dict[str, Any]] = []
        self.tallies: list[SourceReport] = []   # per output source: frames kept / dropped by the pipeline

    def calc(self, settings: dict[str, Any]) -> int:
        for i, existing in enumerate(self.calculations):
            if existing == settings:
                return i
        self.calculations.append(dict(settings))
        return len(self.calculations) - 1

    def new_source(self, entry: dict[str, Any]) -> int:
        self.sources.append(dict(entry))
        self.tallies.append(SourceReport(path="", format=""))
        return len(self.sources) - 1

    def finish(self) -> list[dict[str, Any]]:
        """Provenance entries with what the pipeline kept and dropped folded in."""
        out = []
        for entry, tally in zip(self.sources, self.tallies):
            e = dict(entry)
            e["frames_kept"] = tally.kept
            dropped = dict(e.get("frames_dropped") or {})
            for reason, n in tally.dropped.items():
                dropped[reason] = dropped.get(reason, 0) + n
            e["frames_dropped"] = dropped
            steps = tally.steps_kept()
            if steps is not None and len(tally.step_runs) <= 1000:
                e["steps_kept"] = steps
            elif tally.kept == 0:
                e["steps_kept"] = ""
            elif tally.dropped or tally.kept != entry.get("frames_kept"):
                e.pop("steps_kept", None)  # a recorded list would no longer match the frames kept
            out.append(e)
        return out


# ----------------------------------------------------------------------------- sources
# A source yields its frames with the source/calculation indices of its own
# tables; ``place`` maps a frame that is kept (or counted as a duplicate) into
# the output's tables, so entries exist only for what the output accounts for.

class _FileSource:
    """A file read by an ``mlds.io`` reader: one provenance entry, listed even when empty."""

    def __init__(self, inp: _Input, reader_options: dict[str, Any]) -> None:
        cls = get_reader(inp.fmt) if inp.fmt else detect(inp.target)
        self.reader = cls(inp.target, **reader_options)
        self.summary = SourceSummary(path=str(inp.target), format=cls.name)
        self.total: int | None = None
        self._src = -1
        self._calc = -1

    def frames(self, tables: _Tables) -> Iterator[Any]:
        report = self.reader.report
        self._src = tables.new_source({})
        yield from self.reader
        prov = report.to_provenance()
        if report.settings:
            prov["calculation"] = self._calc = tables.calc(report.settings) if self._calc < 0 else self._calc
        tables.sources[self._src] = prov
        self.summary.dropped = dict(report.dropped)
        self.summary.warnings = list(report.warnings)
        if report.kept == 0:
            self.summary.empty_reason = _empty_reason(report)

    def place(self, frame: Any, tables: _Tables) -> int:
        if frame.calculation < 0:
            settings = self.reader.report.settings
            if self._calc < 0 and settings:
                self._calc = tables.calc(settings)
            frame.calculation = self._calc
        frame.source = self._src
        return self._src


def _empty_reason(report: SourceReport) -> str:
    """The reader's own reason (``SourceReport.empty_reason``, CONTRACTS §7), else one from its tallies."""
    reason = getattr(report, "empty_reason", None)
    if reason:
        return str(reason)
    if report.warnings:  # readers without empty_reason say it in their last warning
        last = report.warnings[-1]
        return last.split(": ", 1)[1] if last.startswith(report.path + ":") else last
    if report.dropped:
        what = ", ".join(f"{k}: {v}" for k, v in report.dropped.items())
        return f"every step was dropped ({what})"
    return "no frame found in this file"


class _DatasetSource:
    """An mlds dataset (file or store version): its provenance and settings tables come along."""

    def __init__(self, inp: _Input, store: Any = None) -> None:
        import mlds

        if inp.kind == "ref":
            from mlds.errors import StoreError
            from mlds.store import open_ref

            try:
                self.ds = open_ref(inp.target, store=store)
            except StoreError as err:
                if "no dataset named" not in str(err):
                    raise
                raise FormatError(inp.target, "no such file, folder or store dataset") from None
        else:
            self.ds = mlds.open(inp.target)
        self.summary = SourceSummary(path=str(inp.target), format="mlds" if inp.kind == "dataset" else "store")
        self.total = len(self.ds)
        self.metadata = self.ds.metadata
        self._sources = self.metadata.get("sources") or []
        self._calcs = self.metadata.get("calculations") or []
        self._src_map: dict[int, int] = {}
        self._calc_map: dict[int, int] = {}

    def frames(self, tables: _Tables) -> Iterator[Any]:
        try:
            for frame in self.ds.iter_frames():
                frame.info = dict(frame.info)
                yield frame
        finally:
            self.ds.close()
        if self.total == 0:
            self.summary.empty_reason = "the dataset has no frames"

    def skip(self) -> None:
        self.ds.close()

    def _out_calc(self, c: int, tables: _Tables) -> int:
        if not 0 <= c < len(self._calcs):
            return -1
        if c not in self._calc_map:
            self._calc_map[c] = tables.calc(self._calcs[c])
        return self._calc_map[c]

    def place(self, frame: Any, tables: _Tables) -> int:
        s = frame.source
        frame.calculation = self._out_calc(frame.calculation, tables)
        if not 0 <= s < len(self._sources):
            frame.source = -1
            return -1
        if s not in self._src_map:
            entry = dict(self._sources[s])
            if "calculation" in entry:
                mapped = self._out_calc(int(entry["calculation"]), tables)
                if mapped >= 0:
                    entry["calculation"] = mapped
                else:
                    entry.pop("calculation")
            self._src_map[s] = tables.new_source(entry)
        frame.source = self._src_map[s]
        return frame.source


# ----------------------------------------------------------------------------- the pipeline
def _split_tagger(test_fraction: float | None, seed: int) -> Callable[[Any], bool] | None:
    if test_fraction is None:
        return None
    if not 0.0 <= test_fraction <= 1.0:
        raise FormatError(None, f"--test-fraction must be between 0 and 1, not {test_fraction}")
    import numpy as np

    rng = np.random.default_rng(seed)

    def tag(frame: Any) -> bool:
        test = bool(rng.random() < test_fraction)
        frame.info["set"] = "test" if test else "train"
        return test

    return tag


def _inherited_metadata(sources: list[Any]) -> dict[str, Any]:
    """Descriptive keys every dataset input agrees on (merging or subsetting keeps them)."""
    metas = [s.metadata for s in sources if isinstance(s, _DatasetSource)]
    out: dict[str, Any] = {}
    if not metas:
        return out
    for key in INHERITED_KEYS:
        values = [m.get(key) for m in metas]
        if values[0] is not None and all(v == values[0] for v in values):
            out[key] = values[0]
    return out


def convert(
    inputs: Iterable[str | os.PathLike],
    output: str | os.PathLike,
    *,
    from_fmt: str | None = None,
    to_fmt: str | None = None,
    force: bool = False,
    reader_options: dict[str, Any] | None = None,
    writer_options: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
    selection: Selection | None = None,
    keep_duplicates: bool = False,
    test_fraction: float | None = None,
    seed: int = 0,
    store: Any = None,
    on_file: Callable[[str, int, int, int | None], None] | None = None,
    on_frame: Callable[[], None] | None = None,
) -> ConvertResult:
    """Read ``inputs``, filter, write ``output``; returns what was kept and dropped per source.

    ``metadata`` (name, license, authors, description, calculations, ...) is
    laid over the descriptive metadata the dataset inputs agree on.  When it
    brings exactly one calculation, frames whose settings are unknown get it.
    Raises :class:`EmptyOutputError` (nothing written) when no frame results.
    """
    out = Path(output)
    fmt = output_format(out, to_fmt)
    check_output(out, fmt, force=force)
    items, skipped = expand_inputs(inputs, from_fmt=from_fmt)
    if not items:
        raise FormatError(None, "no input file with a recognised format" + (
            f" ({len(skipped)} file(s) skipped: {skipped[0][0]}: {skipped[0][1]}, ...)" if skipped else ""))
    user_meta = dict(metadata or {})
    if "sources" in user_meta:
        raise FormatError(None, "metadata cannot set 'sources': the provenance is recorded while reading")
    selection = selection or Selection()
    tag = _split_tagger(test_fraction, seed)
    ropts = dict(reader_options or {})
    result = ConvertResult(output=out, format=fmt, skipped_inputs=skipped)

    sources = [_DatasetSource(it, store) if it.kind in ("dataset", "ref") else _FileSource(it, ropts) for it in items]
    meta = _inherited_metadata(sources)
    meta.update({k: v for k, v in user_meta.items() if k != "calculations"})
    tables = _Tables(user_meta.get("calculations") or [])
    default_calc = 0 if len(tables.calculations) == 1 else -1
    result.sources = [s.summary for s in sources]

    from mlds.format.framehash import frame_hash

    seen: set[bytes] = set()

    def stream() -> Iterator[Any]:
        index = 0
        for i, src in enumerate(sources):
            if on_file:
                on_file(src.summary.path, i, len(sources), src.total)
            summary = src.summary
            extra: dict[str, int] = {}
            if selection.last is not None and index > selection.last and src.total is not None:
                extra["not-selected"] = src.total  # a dataset wholly past the selection: not even opened for reading
                index += src.total
                src.skip()
                frames: Iterable[Any] = ()
            else:
                frames = src.frames(tables)
            for frame in frames:
                k, index = index, index + 1
                if (selection.last is not None and k > selection.last) or not selection.keeps(k, frame):
                    extra["not-selected"] = extra.get("not-selected", 0) + 1
                    if isinstance(src, _FileSource):
                        tables.tallies[src.place(frame, tables)].drop("not-selected")
                    continue
                if not keep_duplicates:
                    h = bytes.fromhex(frame_hash(frame))
                    if h in seen:
                        extra["duplicate"] = extra.get("duplicate", 0) + 1
                        out_src = src.place(frame, tables)
                        if out_src >= 0:
                            tables.tallies[out_src].drop("duplicate")
                        continue
                    seen.add(h)
                out_src = src.place(frame, tables)
                if frame.calculation < 0:
                    frame.calculation = default_calc
                if tag is not None and tag(frame):
                    result.n_test += 1
                if out_src >= 0:
                    tally = tables.tallies[out_src]
                    tally.kept += 1
                    step = frame.info.get("step")
                    if step is not None and step >= 0:
                        tally.keep_step(int(step))
                summary.kept += 1
                if on_frame:
                    on_frame()
                yield frame
            for reason, n in extra.items():
                summary.dropped[reason] = summary.dropped.get(reason, 0) + n
            if summary.kept == 0 and not summary.empty_reason:
                summary.empty_reason = _pipeline_reason(extra)
        result.duplicates = sum(s.duplicates for s in result.sources)
        result.not_selected = sum(s.dropped.get("not-selected", 0) for s in result.sources)

    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent if str(out.parent) else "."))
    try:
        staged = stage / out.name
        if fmt == "mlds":
            result.n_frames = _write_mlds(staged, stream(), meta, tables, writer_options)
        else:
            writer = get_writer(fmt)(staged, **(writer_options or {}))
            result.n_frames = writer.write(stream(), meta)
            meta["calculations"], meta["sources"] = tables.calculations, tables.finish()
        if result.n_frames == 0:
            raise EmptyOutputError(_empty_message(result), result)
        _commit(stage, out, force=force)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return result


def _pipeline_reason(extra: dict[str, int]) -> str:
    if extra.get("duplicate") and not extra.get("not-selected"):
        return "every frame duplicates one read earlier"
    if extra.get("not-selected"):
        return "no frame selected"
    return "no frame"


def _empty_message(result: ConvertResult) -> str:
    parts = [f"{Path(s.path).name}: {s.empty_reason or 'no frame'}" for s in result.sources[:3]]
    more = f"; and {len(result.sources) - 3} more" if len(result.sources) > 3 else ""
    return f"no frames to write, so {result.output} was not written ({'; '.join(parts)}{more})"


def _write_mlds(path: Path, frames: Iterator[Any], meta: dict[str, Any], tables: _Tables,
                writer_options: dict[str, Any] | None) -> int:
    from mlds.format.writer import DatasetWriter

    w = DatasetWriter(path, meta, **(writer_options or {}))
    try:
        n = 0
        for frame in frames:
            w.append_frame(frame)
            n += 1
        if n == 0:  # nothing to write: no empty dataset
            w.abort()
            return 0
        w.metadata["calculations"] = tables.calculations
        w.metadata["sources"] = tables.finish()
        w.close()
    except BaseException:
        w.abort()
        raise
    return w.n_frames


def _commit(stage: Path, target: Path, *, force: bool) -> None:
    """Move what the writer made from ``stage`` to ``target`` (and its siblings), refusing clashes.

    A folder output into an existing folder (aenet) merges file by file: the
    folder's other files stay.  A Zarr dataset folder replaces an existing one
    only with ``force``.
    """
    moves: list[tuple[Path, Path]] = []
    for entry in sorted(stage.iterdir()):
        dest = target.parent / entry.name
        if entry.is_dir() and dest.is_dir() and not is_mlds_zarr_dir(entry):
            for f in sorted(p for p in entry.rglob("*") if not p.is_dir()):
                moves.append((f, dest / f.relative_to(entry)))
        else:
            moves.append((entry, dest))
    clashes = [d for _, d in moves if d.exists() or d.is_symlink()]
    for d in clashes:
        if d.is_dir() and not (force and is_mlds_zarr_dir(d)):
            raise OutputExistsError(f"{d} is a folder; not replacing it")
    if clashes and not force:
        more = f" (and {len(clashes) - 1} more)" if len(clashes) > 1 else ""
        raise OutputExistsError(f"{clashes[0]} already exists{more}; pass --force to replace it")
    for src, dest in moves:
        dest.parent.mkdir(parents=True, exist_ok=True)
        move_into_place(src, dest, replace_dir=is_mlds_zarr_dir if force else None)


def export_dataset(source: str | os.PathLike, output: str | os.PathLike, to_fmt: str | None = None, *,
                   force: bool = False, **writer_options: Any) -> int:
    """Write an mlds dataset (file or store version) in another format; returns frames written."""
    return convert([source], output, to_fmt=to_fmt, force=force, writer_options=writer_options or None,
                   keep_duplicates=True).n_frames
