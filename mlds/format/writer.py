"""Create a dataset and append frames in batches with bounded memory.

Frames are turned into columns every ``batch_frames`` frames (or
``batch_atoms`` atoms), so converting a multi-GB OUTCAR never holds more than
a bounded amount.  The file is written under a temporary name and moved into
place by :meth:`DatasetWriter.close`; an exception inside the ``with`` block
discards it, so no half-written dataset is ever visible.

Chunk sizes follow the data.  Arrays are created only once the first
``FIRST_WRITE_BYTES`` of columns are buffered (or at close): a dataset that
fits gets chunks cut to its exact size (a 20-frame file is a few kB, not the
MBs of pre-sized chunks), a bigger one chunks of about ``TARGET_CHUNK_BYTES``
(2 MiB uncompressed, 256 KiB with gzip, so a random read decompresses
little), never more than four times what was seen, so per-frame arrays of a
mid-sized file do not get megabyte chunks.  HDF5 chunks of 64 KiB and more
are aligned to 36 KiB (a multiple of every row size: 1, 3, 4, 8, 24, 72
bytes, and of the 4 KiB page), so readers can address rows of all chunks of an
array in one memory map view.
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

TARGET_CHUNK_BYTES = 2 << 20
TARGET_CHUNK_BYTES_COMPRESSED = 256 << 10
FIRST_WRITE_BYTES = 32 << 20
ALIGN_THRESHOLD = 64 << 10
ALIGN_INTERVAL = 36 << 10


class DatasetWriter:
    """Writes one dataset: ``append`` frames, record provenance, ``close`` to publish (see the module docstring)."""

    def __init__(
        self,
        path: str | os.PathLike,
        metadata: dict[str, Any] | None = None,
        *,
        compression: str | None = None,
        batch_frames: int = 1024,
        batch_atoms: int = 1 << 18,
        chunk_frames: int | None = None,
        chunk_atoms: int | None = None,
        validate: bool = True,
    ) -> None:
        """Start writing ``path`` (``.h5``, ``.zarr`` or ``.zarr.zip``); nothing appears there before :meth:`close`.

        ``metadata`` is the spec §8 object (``name``, ``license``, ``authors``,
        ``calculations``, ``sources``, ...); ``units`` is filled in.
        ``compression``: None (fast random access) or ``"gzip"``.
        ``chunk_frames`` / ``chunk_atoms`` fix the chunk length of per-frame /
        per-atom arrays (default: sized from the data).  ``validate=False``
        skips the metadata schema check and the table-index check (for store
        shards, whose frames index the manifest's tables).
        """
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
        self._fixed_chunks = {spec.FRAMES: chunk_frames, spec.ATOMS: chunk_atoms}
        self._target = TARGET_CHUNK_BYTES_COMPRESSED if compression else TARGET_CHUNK_BYTES
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmpdir = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", suffix=".part", dir=self.path.parent))
        inner = self.path.name[: -len(".zip")] if self.kind == "zarr-zip" else self.path.name
        self._tmp = self._tmpdir / inner
        try:
            self._c: Container = open_container(self._tmp, "w", compression)
            # the format marker first: it then sits in the file's first bytes, where ASE looks
            self._c.set_root_attrs({"mlds_format": spec.FORMAT_NAME, "mlds_spec_version": spec.SPEC_VERSION})
        except BaseException:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            raise
        self._present: set[str] = set()
        self._created = False
        self._pending: list[dict[str, np.ndarray]] = []
        self._pending_bytes = 0
        self._written = {spec.FRAMES: 0, spec.ATOMS: 0}
        self._max_index = {"source": -1, "calculation": -1}
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
        """Append a provenance entry (spec §8.4) and return its index, for ``frame.source``."""
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
        """Append frames (or ``ase.Atoms``); returns how many."""
        n = 0
        for frame in frames:
            self.append_frame(frame)
            n += 1
        return n

    def append_frame(self, frame: Frame) -> None:
        """Append one frame (or ``ase.Atoms``)."""
        if not isinstance(frame, Frame):
            frame = Frame.from_atoms(frame) if hasattr(frame, "get_positions") else frame
        self._buf.append(frame)
        self._buf_atoms += frame.n_atoms
        if len(self._buf) >= self._batch_frames or self._buf_atoms >= self._batch_atoms:
            self.flush()

    def flush(self, *, final: bool = False) -> None:
        """Turn buffered frames into columns; write them once the chunk sizes are decided."""
        if self._buf:
            frames, self._buf, self._buf_atoms = self._buf, [], 0
            cols = _columns(frames, self.n_atoms)
            for k in self._max_index:
                if k in cols and cols[k].size:
                    self._max_index[k] = max(self._max_index[k], int(cols[k].max()))
            self.n_frames += len(frames)
            self.n_atoms += int(cols["n_atoms"].sum())
            self._pending.append(cols)
            self._pending_bytes += sum(v.nbytes for v in cols.values())
        if not self._created and (final or self._pending_bytes >= FIRST_WRITE_BYTES):
            self._create_arrays(final)
        if self._created:
            pending, self._pending, self._pending_bytes = self._pending, [], 0
            for cols in pending:
                self._write_columns(cols)

    def _create_arrays(self, final: bool) -> None:
        """Create the arrays with chunks sized from the buffered data (exactly, when it is all there)."""
        names = {a.name for a in spec.REQUIRED}.union(*(c.keys() for c in self._pending))
        rows = {spec.FRAMES: self.n_frames, spec.ATOMS: self.n_atoms}
        for a in spec.ARRAYS:
            if a.name in names:
                self._create(a, rows[a.group], final)
        self._created = True

    def _chunk_len(self, a: spec.ArraySpec, rows_seen: int, final: bool) -> int:
        fixed = self._fixed_chunks[a.group]
        if fixed:
            return max(1, int(fixed))
        row_bytes = a.dtype.itemsize * int(np.prod(a.tail, dtype=np.int64))
        target_rows = max(1, self._target // row_bytes)
        if final:  # all rows known: as few chunks as the target allows, the last one (nearly) full
            n_chunks = max(1, -(-rows_seen // target_rows))
            return max(1, -(-rows_seen // n_chunks))
        return max(1, min(target_rows, 4 * rows_seen))

    def _create(self, a: spec.ArraySpec, rows_seen: int, final: bool) -> None:
        self._c.create(a.key, a.dtype, a.tail, self._chunk_len(a, rows_seen, final), {"unit": a.unit})
        self._present.add(a.name)

    def _write_columns(self, cols: dict[str, np.ndarray]) -> None:
        for name in cols.keys() - self._present:  # an optional value first seen now: earlier rows are missing
            a = spec.BY_NAME[name]
            self._create(a, len(cols[name]), final=False)
            if self._written[a.group]:
                self._c.resize(a.key, self._written[a.group], a.missing)
        n_frames, n_atoms = len(cols["n_atoms"]), int(cols["n_atoms"].sum())
        for name in self._present:
            a = spec.BY_NAME[name]
            data = cols.get(name)
            if data is None:
                size = n_frames if a.group == spec.FRAMES else n_atoms
                data = np.full((size, *a.tail), a.missing, dtype=a.dtype)
            self._c.append(a.key, np.ascontiguousarray(data, dtype=a.dtype))
        self._written[spec.FRAMES] += n_frames
        self._written[spec.ATOMS] += n_atoms

    # -- finishing -----------------------------------------------------------------

    def close(self) -> Path:
        """Finish the file and move it into place; returns the final path."""
        if self._closed:
            return self.path
        try:
            self.flush(final=True)
            from mlds import __version__

            self.metadata.setdefault("created_with", f"mlds {__version__}")
            if self._validate:
                _validate_metadata(self.metadata, self.path)
                self._check_table_indices()
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

    def _check_table_indices(self) -> None:
        """Frames may only refer to entries of the metadata tables (invariant 11): never write that invalid."""
        for key, table in (("source", "sources"), ("calculation", "calculations")):
            n = len(self.metadata.get(table) or [])
            if self._max_index[key] >= n:
                raise FormatError(
                    self.path,
                    f"frames refer to {key} {self._max_index[key]} but the metadata lists {n} {table}: "
                    f"write a dataset or a view with its metadata (mlds.write(path, ds.subset(indices)) or "
                    f"view.copy_to(path)), or pass metadata holding the {table} table")

    def abort(self) -> None:
        """Discard everything written; the target path is left as it was."""
        with contextlib.suppress(Exception):
            self._c.close()
        shutil.rmtree(self._tmpdir, ignore_errors=True)
        self._closed = True

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<mlds.DatasetWriter {self.path.name} ({state}): {self.n_frames:,} frames, {self.n_atoms:,} atoms>"

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
    # len(numbers): what Frame.n_atoms gives, without a property call per frame (issue 12)
    n_atoms = np.fromiter(map(len, [f.numbers for f in frames]), dtype=np.int64, count=len(frames))
    offsets = np.empty_like(n_atoms)
    if len(frames):
        offsets[0] = atom_base
        np.cumsum(n_atoms[:-1], out=offsets[1:])
        offsets[1:] += atom_base
    cols: dict[str, np.ndarray] = {
        "n_atoms": n_atoms,
        "atom_offset": offsets,
        "cell": _stack([f.cell for f in frames]),
        "pbc": _stack([f.pbc for f in frames]).astype(np.uint8),
        "energy": np.array([f.energy for f in frames], dtype=np.float64),
        "numbers": np.concatenate([f.numbers for f in frames]),
        "positions": np.concatenate([f.positions for f in frames]),
    }
    # each value list built once, tested by C-level passes (no generator per frame)
    sigma0 = [f.energy_sigma0 for f in frames]
    if not all(map(math.isnan, sigma0)):
        cols["energy_sigma0"] = np.array(sigma0)
    charge = [f.total_charge for f in frames]
    if not all(map(math.isnan, charge)):
        cols["total_charge"] = np.array(charge)
    converged = [f.converged for f in frames]
    if not all(converged):
        cols["converged"] = np.array(converged, dtype=np.uint8)
    for name in ("source", "calculation"):
        index = [getattr(f, name) for f in frames]
        if any(i >= 0 for i in index):
            cols[name] = np.array(index, dtype=np.int32)
    steps = [f.info.get("step", -1) for f in frames]
    if any(s >= 0 for s in steps):
        cols["source_step"] = np.array(steps, dtype=np.int64)
    cols.update(labels.columns(frames))
    if any(f.stress is not None for f in frames):
        nan33 = np.full((3, 3), np.nan)
        cols["stress"] = _stack([nan33 if f.stress is None else f.stress for f in frames])
    for name in ("forces", "charges", "magmoms"):
        values = [getattr(f, name) for f in frames]
        missing = [v is None for v in values]
        if all(missing):
            continue
        if any(missing):
            values = [np.full((f.n_atoms, 3) if name == "forces" else (f.n_atoms,), np.nan) if v is None else v
                      for f, v in zip(frames, values)]
        cols[name] = np.concatenate(values)
    return cols


def _stack(arrays: list[np.ndarray]) -> np.ndarray:
    """``np.stack(arrays)``: np.array when every array has one shape (half the time per frame;
    the same array), np.stack itself otherwise (its error for shapes that differ)."""
    shapes = {getattr(a, "shape", None) for a in arrays}
    if len(shapes) == 1 and None not in shapes:
        return np.array(arrays)
    return np.stack(arrays)


def create(path: str | os.PathLike, metadata: dict[str, Any] | None = None, **options: Any) -> DatasetWriter:
    """Start a new dataset at ``path`` (``.h5`` HDF5, ``.zarr`` or ``.zarr.zip`` Zarr); see :class:`DatasetWriter`.

    >>> with mlds.create("si.h5", {"name": "si"}) as w:
    ...     w.append(frames)
    """
    return DatasetWriter(path, metadata, **options)


def write(path: str | os.PathLike, frames: Iterable[Frame] | Any, metadata: dict[str, Any] | None = None, **options: Any) -> Path:
    """Write ``frames`` (Frames, ``ase.Atoms``, or a dataset / view) to a new dataset in one call.

    A dataset or view (``ds.select(...)``, ``ds.subset(...)``) brings its own
    metadata and provenance unless ``metadata`` is given.
    """
    from mlds.format.frames_api import FramesAPI

    if isinstance(frames, FramesAPI):
        if metadata is None:
            metadata = frames.metadata
        frames = frames.iter_frames()
    with create(path, metadata, **options) as w:
        w.append(frames)
    return Path(path)
