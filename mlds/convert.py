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

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from mlds.errors import MldsError, OptionError
from mlds.io.registry import get_writer
from mlds.pipeline.inputs import expand_inputs
from mlds.pipeline.outputs import MLDS_SUFFIXES, check_output, commit, output_format
from mlds.pipeline.select import Selection, split_tagger
from mlds.pipeline.sources import DatasetSource, FileSource, ProvenanceTables, SourceSummary

__all__ = ["ConvertResult", "EmptyOutputError", "MLDS_SUFFIXES", "Selection", "SourceSummary", "check_output",
           "convert", "expand_inputs", "export_dataset", "output_format"]

INHERITED_KEYS = ("name", "description", "license", "authors", "keywords", "extra")


class EmptyOutputError(MldsError):
    """Every input together gave no frame: nothing was written (``result`` says why per source)."""

    def __init__(self, message: str, result: "ConvertResult") -> None:
        super().__init__(message)
        self.result = result


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


# ----------------------------------------------------------------------------- the pipeline
def _inherited_metadata(sources: list[Any]) -> dict[str, Any]:
    """Descriptive keys every dataset input agrees on (merging or subsetting keeps them)."""
    metas = [s.metadata for s in sources if isinstance(s, DatasetSource)]
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
        raise OptionError("no input file with a recognised format" + (
            f" ({len(skipped)} file(s) skipped: {skipped[0][0]}: {skipped[0][1]}, ...)" if skipped else ""))
    user_meta = dict(metadata or {})
    if "sources" in user_meta:
        raise OptionError("metadata cannot set 'sources': the provenance is recorded while reading")
    selection = selection or Selection()
    tag = split_tagger(test_fraction, seed)
    ropts = dict(reader_options or {})
    result = ConvertResult(output=out, format=fmt, skipped_inputs=skipped)

    sources = [DatasetSource(it, store) if it.kind in ("dataset", "ref") else FileSource(it, ropts) for it in items]
    meta = _inherited_metadata(sources)
    meta.update({k: v for k, v in user_meta.items() if k != "calculations"})
    tables = ProvenanceTables(user_meta.get("calculations") or [])
    default_calc = 0 if len(tables.calculations) == 1 else -1
    if fmt == "mlds" and user_meta:  # a bad license or author fails now, not after reading every input
        from mlds.format.schema import validate_metadata
        from mlds.format.spec import default_units

        validate_metadata({**meta, "calculations": tables.calculations, "units": default_units()}, level="base",
                          path="metadata given")
    result.sources = [s.summary for s in sources]

    from mlds.format.framehash import frame_hash

    seen: set[bytes] = set()
    hash_ahead = not keep_duplicates

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
            elif hash_ahead and isinstance(src, FileSource):
                frames = src.frames(tables, batches=True)
            else:
                frames = src.frames(tables)
            pairs = (_with_digests(frames, src.placement_fixed) if hash_ahead and isinstance(src, FileSource)
                     else zip(frames, repeat(None)))
            for frame, digest in pairs:
                k, index = index, index + 1
                if (selection.last is not None and k > selection.last) or not selection.keeps(k, frame):
                    extra["not-selected"] = extra.get("not-selected", 0) + 1
                    if isinstance(src, FileSource):
                        tables.tallies[src.place(frame, tables)].drop("not-selected")
                    continue
                if not keep_duplicates:
                    h = digest if digest is not None else bytes.fromhex(frame_hash(frame))
                    if h in seen:
                        extra["duplicate"] = extra.get("duplicate", 0) + 1
                        out_src = src.place(frame, tables)
                        if out_src >= 0:
                            tables.tallies[out_src].drop("duplicate")
                        continue
                    seen.add(h)
                is_test = tag(frame) if tag is not None else False
                if not selection.labels_match(frame):
                    extra["not-selected"] = extra.get("not-selected", 0) + 1
                    if isinstance(src, FileSource):
                        tables.tallies[src.place(frame, tables)].drop("not-selected")
                    continue
                result.n_test += is_test
                out_src = src.place(frame, tables)
                if frame.calculation < 0:
                    frame.calculation = default_calc
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
            # Metadata the readers built (sources, settings) is valid by construction (tests/io/test_detect_all.py
            # checks it against the schema for every real file) and user metadata was checked above, so the
            # writer's jsonschema pass (~0.15 s of imports per process, issue 12) runs only for dataset inputs.
            trusted = all(isinstance(s, FileSource) for s in sources)
            opts = {"validate": not trusted, **(writer_options or {})}
            result.n_frames = _write_mlds(staged, stream(), meta, tables, opts)
        else:
            writer = get_writer(fmt)(staged, **(writer_options or {}))
            result.n_frames = writer.write(stream(), meta)  # the provenance tables have no place in these formats
        if result.n_frames == 0:
            raise EmptyOutputError(_empty_message(result), result)
        commit(stage, out, force=force)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return result


_AHEAD = 64  # frames a file source is read ahead for _with_digests


def _with_digests(items: Iterable[Any], ready: Callable[[], bool]) -> Iterator[tuple[Any, bytes | None]]:
    """``(frame, digest)`` pairs of a reader's frames and FrameBatch lists: the frame hashes of a
    batch from its arrays, of other frames ``_AHEAD`` at a time (framehash.frame_digests; per frame
    they were a good part of a convert, issue 12); None where the caller must hash the frame
    itself.  Single frames are read ahead only once ``ready()`` (the source places frames without
    looking at the reader's state any more; what it reports is read at its end), so nothing but
    the timing changes; an error the reader raises still comes after the frames it yielded before."""
    from mlds.format.frame import FrameBatch
    from mlds.format.framehash import frame_digests

    held: list[Any] = []  # single frames read ahead, hashed together

    def release() -> list[tuple[Any, bytes | None]]:
        try:
            digests = frame_digests(held)
        except Exception:  # noqa: BLE001 - not frames as readers make them: frame_hash decides, in turn
            digests = [None] * len(held)
        out = list(zip(held, digests))
        held.clear()
        return out

    try:
        for item in items:
            if type(item) is FrameBatch:  # (made while the source reads ahead: see _finish_batch)
                if held:
                    yield from release()
                yield from zip(item, _batch_digests(item) if ready() else repeat(None))
            elif held or ready():
                held.append(item)
                if len(held) >= _AHEAD:
                    yield from release()
            else:  # one at a time until the look-ahead cannot change anything
                yield item, None
    except Exception:  # noqa: BLE001 - re-raised, after the frames read before it
        if held:
            yield from release()
        raise
    if held:
        yield from release()


def _batch_digests(batch: Any) -> list[bytes | None]:
    try:
        return batch.digests()
    except Exception:  # noqa: BLE001 - frame_hash decides, frame by frame
        return [None] * len(batch)


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


def _write_mlds(path: Path, frames: Iterator[Any], meta: dict[str, Any], tables: ProvenanceTables,
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
        if not w._validate:  # without the schema pass the table-index invariant is still checked
            w._check_table_indices()
        w.close()
    except BaseException:
        w.abort()
        raise
    return w.n_frames


def export_dataset(source: str | os.PathLike, output: str | os.PathLike, to_fmt: str | None = None, *,
                   force: bool = False, **writer_options: Any) -> int:
    """Write an mlds dataset (file or store version) in another format; returns frames written."""
    return convert([source], output, to_fmt=to_fmt, force=force, writer_options=writer_options or None,
                   keep_duplicates=True).n_frames
