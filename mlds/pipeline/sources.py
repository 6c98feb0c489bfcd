"""Sources of frames for the pipeline, and the output's provenance tables they fill.

A source yields its frames with the source/calculation indices of its own
tables; ``place`` maps a frame that is kept (or counted as a duplicate) into
the output's tables, so entries exist only for what the output accounts for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

from mlds.errors import FormatError
from mlds.io.registry import SourceReport, detect, get_reader
from mlds.pipeline.inputs import InputItem


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


class ProvenanceTables:
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


class FileSource:
    """A file read by an ``mlds.io`` reader: one provenance entry, listed even when empty."""

    def __init__(self, inp: InputItem, reader_options: dict[str, Any]) -> None:
        cls = get_reader(inp.fmt) if inp.fmt else detect(inp.target)
        self.reader = cls(inp.target, **reader_options)
        self.summary = SourceSummary(path=str(inp.target), format=cls.name)
        self.total: int | None = None
        self._src = -1
        self._calc = -1

    def frames(self, tables: ProvenanceTables, batches: bool = False) -> Iterator[Any]:
        """The reader's frames; ``batches``: FrameBatch lists where the reader made them."""
        report = self.reader.report
        self._src = tables.new_source({})
        yield from (self.reader.iter_batches() if batches else self.reader)
        prov = report.to_provenance()
        if report.settings:
            prov["calculation"] = self._calc = tables.calc(report.settings) if self._calc < 0 else self._calc
        tables.sources[self._src] = prov
        self.summary.dropped = dict(report.dropped)
        self.summary.warnings = list(report.warnings)
        if report.kept == 0:
            self.summary.empty_reason = _empty_reason(report)

    def placement_fixed(self) -> bool:
        """True once ``place`` no longer reads the reader's state (its calculation is known): from
        then on, reading ahead of the frames placed changes nothing (convert's hash look-ahead)."""
        return self._calc >= 0

    def place(self, frame: Any, tables: ProvenanceTables) -> int:
        if frame.calculation < 0:
            settings = self.reader.report.settings
            if self._calc < 0 and settings:
                self._calc = tables.calc(settings)
            frame.calculation = self._calc
        frame.source = self._src
        return self._src


def _empty_reason(report: SourceReport) -> str:
    """The reader's own reason (``SourceReport.empty_reason``), else one from its tallies."""
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


class DatasetSource:
    """An mlds dataset (file or store version): its provenance and settings tables come along."""

    def __init__(self, inp: InputItem, store: Any = None) -> None:
        import mlds

        if inp.kind == "ref":
            from mlds.errors import NotFoundError
            from mlds.store import open_ref

            try:
                self.ds = open_ref(inp.target, store=store)
            except NotFoundError:
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

    def frames(self, tables: ProvenanceTables) -> Iterator[Any]:
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

    def _out_calc(self, c: int, tables: ProvenanceTables) -> int:
        if not 0 <= c < len(self._calcs):
            return -1
        if c not in self._calc_map:
            self._calc_map[c] = tables.calc(self._calcs[c])
        return self._calc_map[c]

    def place(self, frame: Any, tables: ProvenanceTables) -> int:
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
