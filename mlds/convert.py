"""Any reader to any writer (or to an mlds dataset): the engine behind `mlds convert`.

Inputs may be files, folders (searched recursively for files whose format is
recognised) and glob patterns.  Output goes through an atomic write, so a
failure on the tenth input leaves no partial output file behind.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from mlds.errors import FormatError, UnknownFormatError
from mlds.format.containers import container_kind
from mlds.io.registry import SourceReport, detect, get_writer, open_reader

MLDS_SUFFIXES = (".h5", ".hdf5", ".zarr", ".zarr.zip")


@dataclass
class ConvertResult:
    output: Path
    n_frames: int = 0
    reports: list[SourceReport] = field(default_factory=list)
    skipped_inputs: list[tuple[str, str]] = field(default_factory=list)  # (path, why)


def expand_inputs(inputs: Iterable[str | os.PathLike], *, from_fmt: str | None = None) -> tuple[list[Path], list[tuple[str, str]]]:
    """Files named, matched by globs, or found in folders (those whose format is recognised)."""
    files: list[Path] = []
    skipped: list[tuple[str, str]] = []
    for item in inputs:
        text = os.fspath(item)
        matches = sorted(glob.glob(text, recursive=True)) if glob.has_magic(text) else [text]
        if not matches:
            raise FormatError(text, "no file matches this pattern")
        for m in matches:
            p = Path(m)
            if p.is_dir() and not _is_mlds(p):
                for child in sorted(q for q in p.rglob("*") if q.is_file() and not q.name.startswith(".")):
                    if from_fmt:
                        files.append(child)
                        continue
                    try:
                        detect(child)
                        files.append(child)
                    except (UnknownFormatError, OSError):
                        skipped.append((str(child), "format not recognised"))
            elif p.exists():
                files.append(p)
            else:
                raise FormatError(p, "no such file or directory")
    return files, skipped


def _is_mlds(path: Path) -> bool:
    return path.name.endswith(MLDS_SUFFIXES) and (path.is_file() or (path / "zarr.json").exists())


def convert(
    inputs: Iterable[str | os.PathLike],
    output: str | os.PathLike,
    *,
    from_fmt: str | None = None,
    to_fmt: str | None = None,
    reader_options: dict[str, Any] | None = None,
    writer_options: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
    on_file: Callable[[Path, int, int], None] | None = None,
    on_frame: Callable[[], None] | None = None,
    test_fraction: float | None = None,
    seed: int = 0,
) -> ConvertResult:
    """Convert ``inputs`` into ``output``; returns per-file reports of what was kept and dropped.

    ``test_fraction`` tags each frame ``info["set"] = "test"`` with that
    probability (else ``"train"``), reproducibly from ``seed``; the n2p2 writer
    turns the tags into ``begin set=...`` lines.
    """
    out = Path(output)
    files, skipped = expand_inputs(inputs, from_fmt=from_fmt)
    if not files:
        raise FormatError(None, "no input files with a recognised format")
    ropts = dict(reader_options or {})
    if test_fraction is not None and not 0.0 <= test_fraction <= 1.0:
        raise FormatError(None, f"--test-fraction must be between 0 and 1, not {test_fraction}")
    tag = _split_tagger(test_fraction, seed)
    result = ConvertResult(output=out, skipped_inputs=skipped)
    to_mlds = to_fmt == "mlds" or (to_fmt is None and out.name.endswith(MLDS_SUFFIXES))
    if to_mlds:
        import mlds

        container_kind(out)  # fails early, naming the file, on an unknown suffix
        with mlds.create(out, metadata, **(writer_options or {})) as w:
            for i, path in enumerate(files):
                if on_file:
                    on_file(path, i, len(files))
                for_reader = open_reader(path, from_fmt, **ropts)
                w.append_from(_tap(for_reader, on_frame, tag))
                result.reports.append(for_reader.report)
        result.n_frames = w.n_frames  # counted by close(), after the last flush
        return result
    if to_fmt is None:
        raise FormatError(out, "cannot tell the output format from the name; pass --to (extxyz, n2p2, aenet, mlds)")
    readers = []

    def frames() -> Iterator[Any]:
        for i, path in enumerate(files):
            if on_file:
                on_file(path, i, len(files))
            r = open_reader(path, from_fmt, **ropts)
            readers.append(r)
            yield from _tap(r, on_frame, tag)

    writer = get_writer(to_fmt)(out, **(writer_options or {}))
    result.n_frames = writer.write(frames(), metadata)
    result.reports = [r.report for r in readers]
    return result


def _split_tagger(test_fraction: float | None, seed: int) -> Callable[[Any], None] | None:
    if test_fraction is None:
        return None
    import numpy as np

    rng = np.random.default_rng(seed)

    def tag(frame: Any) -> None:
        frame.info["set"] = "test" if rng.random() < test_fraction else "train"

    return tag


class _tap:
    """Wrap a reader to call hooks per frame while keeping its ``report``."""

    def __init__(self, reader: Any, on_frame: Callable[[], None] | None, tag: Callable[[Any], None] | None = None) -> None:
        self.reader = reader
        self.report = reader.report
        self._on_frame = on_frame
        self._tag = tag

    def __iter__(self) -> Iterator[Any]:
        for frame in self.reader:
            if self._tag:
                self._tag(frame)
            if self._on_frame:
                self._on_frame()
            yield frame


def export_dataset(source: str | os.PathLike, output: str | os.PathLike, to_fmt: str, **writer_options: Any) -> int:
    """Write an mlds dataset (file or store version) in another format; returns frames written."""
    import mlds

    out = Path(output)
    with mlds.open(source) as ds:
        if to_fmt == "mlds" or (out.name.endswith(MLDS_SUFFIXES) and to_fmt in (None, "mlds")):
            ds.copy_to(out, **writer_options)
            return len(ds)
        writer = get_writer(to_fmt)(out, **writer_options)
        return writer.write(ds.iter_frames(), ds.metadata)
