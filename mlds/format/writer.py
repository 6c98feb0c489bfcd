"""Create a dataset and append frames in batches with bounded memory.

Frames are buffered column by column and flushed every ``batch_frames``
frames (or ``batch_atoms`` atoms), so converting a multi-GB OUTCAR never
holds more than one batch.  The file is written under a temporary name and
moved into place by :meth:`DatasetWriter.close`; an exception inside the
``with`` block discards it, so no half-written dataset is ever visible.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from mlds.errors import FormatError
from mlds.format import labels, spec
from mlds.format.containers import Container, container_kind, open_container, zip_directory
from mlds.format.frame import Frame
from mlds.util import is_mlds_zarr_dir, move_into_place

DEFAULT_CHUNK_FRAMES = 4096
DEFAULT_CHUNK_ATOMS = 16384


class DatasetWriter:
    def __init__(
        self,
        path: str | os.PathLike,
        metadata: dict[str, Any] | None = None,
        *,
        compression: str | None = None,
        batch_frames: int = 1024,
        batch_atoms: int = 1 << 18,
        chunk_frames: int = DEFAULT_CHUNK_FRAMES,
        chunk_atoms: int = DEFAULT_CHUNK_ATOMS,
        validate: bool = True,
    ) -> None:
        if compression not in (None, "gzip"):
            raise FormatError(path, f"compression must be None or 'gzip' (portable filters only), not {compression!r}")
        self.path = Path(path)
        self.kind = container_kind(self.path)
        self.metadata: dict[str, Any] = dict(metadata or {})
        self.metadata.setdefault("units", spec.default_units())
        self.metadata.setdefault("calculations", [])
        self.metadata.setdefault("sources", [])
        self._validate = validate
        self._batch_frames = batch_frames
        self._batch_atoms = batch_atoms
        self._chunks = {spec.FRAMES: chunk_frames, spec.ATOMS: chunk_atoms}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmpdir = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", suffix=".part", dir=self.path.parent))
        inner = self.path.name[: -len(".zip")] if self.kind == "zarr-zip" else self.path.name
        self._tmp = self._tmpdir / inner
        self._c: Container = open_container(self._tmp, "w", compression)
        for a in spec.REQUIRED:
            self._create(a)
        self._present: set[str] = {a.name for a in spec.REQUIRED}
        self._buf: list[Frame] = []
        self._buf_atoms = 0
        self.n_frames = 0
        self.n_atoms = 0
        self._closed = False

    # -- metadata tables -------------------------------------------------------

    def add_calculation(self, settings: dict[str, Any]) -> int:
        """Index of ``settings`` in the calculations table (identical settings share one entry)."""
        calcs = self.metadata["calculations"]
        for i, existing in enumerate(calcs):
            if existing == settings:
                return i
        calcs.append(dict(settings))
        return len(calcs) - 1

    def add_source(self, provenance: dict[str, Any]) -> int:
        self.metadata["sources"].append(dict(provenance))
        return len(self.metadata["sources"]) - 1

    def append_from(self, reader: Any) -> Any:
        """Append every frame of an :class:`mlds.io.registry.Reader`, recording its provenance."""
        src = self.add_source({})
        calc = -1
        for frame in reader:
            if calc < 0 and reader.report.settings:
                calc = self.add_calculation(reader.report.settings)
            frame.source = src
            frame.calculation = calc
            self.append_frame(frame)
        if calc < 0 and reader.report.settings:
            calc = self.add_calculation(reader.report.settings)
        prov = reader.report.to_provenance()
        if calc >= 0:
            prov["calculation"] = calc
        self.metadata["sources"][src] = prov
        return reader.report

    # -- frames ------------------------------------------------------------------

    def append(self, frames: Iterable[Frame]) -> int:
        n = 0
        for frame in frames:
            self.append_frame(frame)
            n += 1
        return n

    def append_frame(self, frame: Frame) -> None:
        if not isinstance(frame, Frame):
            frame = Frame.from_atoms(frame) if hasattr(frame, "get_positions") else frame
        self._buf.append(frame)
        self._buf_atoms += frame.n_atoms
        if len(self._buf) >= self._batch_frames or self._buf_atoms >= self._batch_atoms:
            self.flush()

    def flush(self) -> None:
        if not self._buf:
            return
        frames, self._buf, self._buf_atoms = self._buf, [], 0
        cols = _columns(frames, self.n_atoms)
        for name in cols.keys() - self._present:
            self._create(spec.BY_NAME[name], backfill=True)
            self._present.add(name)
        n_frames, n_atoms = len(frames), int(cols["n_atoms"].sum())
        for name in self._present:
            a = spec.BY_NAME[name]
            data = cols.get(name)
            if data is None:
                size = n_frames if a.group == spec.FRAMES else n_atoms
                data = np.full((size, *a.tail), a.missing, dtype=a.dtype)
            self._c.append(a.key, np.ascontiguousarray(data, dtype=a.dtype))
        self.n_frames += n_frames
        self.n_atoms += n_atoms

    def _create(self, a: spec.ArraySpec, backfill: bool = False) -> None:
        self._c.create(a.key, a.dtype, a.tail, self._chunks[a.group], {"unit": a.unit})
        if backfill:
            size = self.n_frames if a.group == spec.FRAMES else self.n_atoms
            if size:
                self._c.resize(a.key, size, a.missing)

    # -- finishing -----------------------------------------------------------------

    def close(self) -> Path:
        """Finish the file and move it into place; returns the final path."""
        if self._closed:
            return self.path
        try:
            self.flush()
            from mlds import __version__

            self.metadata.setdefault("created_with", f"mlds {__version__}")
            if self._validate:
                _validate_metadata(self.metadata, self.path)
            self._c.set_root_attrs(
                {
                    "mlds_format": spec.FORMAT_NAME,
                    "mlds_spec_version": spec.SPEC_VERSION,
                    "n_frames": self.n_frames,
                    "n_atoms": self.n_atoms,
                    "metadata": self.metadata,
                }
            )
            self._c.close()
            built = self._tmp
            if self.kind == "zarr-zip":
                built = self._tmpdir / self.path.name
                zip_directory(self._tmp, built)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # an existing folder is replaced only if it is an mlds Zarr dataset, never a user's folder
            move_into_place(built, self.path, replace_dir=is_mlds_zarr_dir)
        except BaseException:
            self.abort()
            raise
        self._closed = True
        shutil.rmtree(self._tmpdir, ignore_errors=True)
        return self.path

    def abort(self) -> None:
        """Discard everything written; the target path is left as it was."""
        with contextlib.suppress(Exception):
            self._c.close()
        shutil.rmtree(self._tmpdir, ignore_errors=True)
        self._closed = True

    def __enter__(self) -> "DatasetWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def __del__(self) -> None:  # never leave temp files behind, even if close() was forgotten
        if not getattr(self, "_closed", True):
            self.abort()


def _validate_metadata(meta: dict[str, Any], path: Path) -> None:
    from mlds.format.schema import validate_metadata

    validate_metadata(meta, level="base", path=str(path))


def _columns(frames: list[Frame], atom_base: int) -> dict[str, np.ndarray]:
    """Columns for one batch; optional columns only when some frame has the value."""
    n_atoms = np.fromiter((f.n_atoms for f in frames), dtype=np.int64, count=len(frames))
    offsets = np.empty_like(n_atoms)
    if len(frames):
        offsets[0] = atom_base
        np.cumsum(n_atoms[:-1], out=offsets[1:])
        offsets[1:] += atom_base
    cols: dict[str, np.ndarray] = {
        "n_atoms": n_atoms,
        "atom_offset": offsets,
        "cell": np.stack([f.cell for f in frames]),
        "pbc": np.stack([f.pbc for f in frames]).astype(np.uint8),
        "energy": np.array([f.energy for f in frames], dtype=np.float64),
        "numbers": np.concatenate([f.numbers for f in frames]),
        "positions": np.concatenate([f.positions for f in frames]),
    }
    if any(not math.isnan(f.energy_sigma0) for f in frames):
        cols["energy_sigma0"] = np.array([f.energy_sigma0 for f in frames])
    if any(not math.isnan(f.total_charge) for f in frames):
        cols["total_charge"] = np.array([f.total_charge for f in frames])
    if any(not f.converged for f in frames):
        cols["converged"] = np.array([f.converged for f in frames], dtype=np.uint8)
    if any(f.source >= 0 for f in frames):
        cols["source"] = np.array([f.source for f in frames], dtype=np.int32)
    if any(f.calculation >= 0 for f in frames):
        cols["calculation"] = np.array([f.calculation for f in frames], dtype=np.int32)
    steps = [f.info.get("step", -1) for f in frames]
    if any(s >= 0 for s in steps):
        cols["source_step"] = np.array(steps, dtype=np.int64)
    cols.update(labels.columns(frames))
    if any(f.stress is not None for f in frames):
        nan33 = np.full((3, 3), np.nan)
        cols["stress"] = np.stack([nan33 if f.stress is None else f.stress for f in frames])
    for name in ("forces", "charges", "magmoms"):
        if any(getattr(f, name) is not None for f in frames):
            parts = []
            for f in frames:
                v = getattr(f, name)
                parts.append(np.full((f.n_atoms, 3) if name == "forces" else (f.n_atoms,), np.nan) if v is None else v)
            cols[name] = np.concatenate(parts)
    return cols


def create(path: str | os.PathLike, metadata: dict[str, Any] | None = None, **options: Any) -> DatasetWriter:
    """Start a new dataset at ``path`` (``.h5`` HDF5, ``.zarr`` or ``.zarr.zip`` Zarr)."""
    return DatasetWriter(path, metadata, **options)


def write(path: str | os.PathLike, frames: Iterable[Frame], metadata: dict[str, Any] | None = None, **options: Any) -> Path:
    """Write all ``frames`` to a new dataset in one call."""
    with create(path, metadata, **options) as w:
        w.append(frames)
    return Path(path)
