"""Read a dataset: random access to frames, minibatches, bulk access to arrays.

Three access paths, for what MLMD codes do:

* ``ds[i]`` (random single frames): the frame's rows of each array, read
  straight from the file through :mod:`mlds.format.columns` (memory-mapped
  uncompressed chunks; blocks of decoded chunks for compressed data).
* ``ds.batch(indices)`` / ``ds.frames(indices)`` (a shuffled minibatch): one
  vectorised gather per array for the whole batch.
* ``ds.array(...)`` and ``ds.iter_frames()`` (scans, bulk loads): whole ranges
  in one read per array and chunk, at I/O speed.

Opening reads only the root attributes the format check needs and the list of
arrays; metadata, offsets and chunk tables are read when first used.

Reads adapt to where the data is.  From the page cache a frame costs a few
numpy slices.  When reads start taking major page faults (the data is on
disk, e.g. a dataset much larger than RAM, or a fresh page cache), the handle
switches to reading from disk well: it loads the small per-frame arrays
(offsets, energies, ...) once, sequentially, and before touching a frame's
rows asks the kernel for all of their pages at once (``madvise(MADV_WILLNEED)``),
so the disk serves them in parallel instead of one fault after another.  When
the arrays fit in half the available memory and 2% of the frames have been read
cold (dense reading, as a training epoch does), it also asks, once, for the
whole chunk each of those rows lies in, in the background: such data is read
whole anyway, and a ~2 MB chunk read at the disk's streaming rate serves every
later frame in it from memory.
Every 16th frame is read without prefetching, as a probe, and once probes stop
faulting the handle reads plainly again.

A Dataset pickles as its path and options and re-opens lazily where it is
unpickled (e.g. a PyTorch ``DataLoader`` worker started with spawn), and a
forked child re-opens its own handles instead of sharing the parent's.
"""

from __future__ import annotations

import math
import os
import weakref
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from mlds.errors import FormatError
from mlds.format import columns as colmod
from mlds.format import labels, spec
from mlds.format.containers import Container, open_container
from mlds.format.frame import Frame, blank_fields
from mlds.format.frames_api import FramesAPI, frames_from_arrays

try:
    import resource

    _RUSAGE_THREAD = getattr(resource, "RUSAGE_THREAD", None)
except ImportError:  # pragma: no cover - not on POSIX
    resource, _RUSAGE_THREAD = None, None  # type: ignore[assignment]

DEFAULT_CACHE_BYTES = 256 << 20

_OPEN: "weakref.WeakSet[Dataset]" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for ds in list(_OPEN):
        ds._forget()  # the parent's handles (HDF5 ids, maps) are not ours to use or close


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)

# How frame fields are read: per-atom rows, per-frame rows (arrays), per-frame scalars.
_ATOM_FIELDS = ("numbers", "positions", "forces", "charges", "magmoms")
_ROW_FIELDS = ("cell", "stress")
_FLOAT_FIELDS = ("energy", "energy_sigma0", "total_charge")
_INT_FIELDS = ("source", "calculation")


def _major_faults() -> int:
    """Page faults this thread waited on the disk for (-1 where not available)."""
    if _RUSAGE_THREAD is None:
        return -1
    return resource.getrusage(_RUSAGE_THREAD).ru_majflt


_COLD_CHECK_EVERY = 8  # warm: frames between fault-counter checks
_COLD_FAULTS = 8       # faults in such a window that mean "the data is on disk"
_COLD_PROBE_EVERY = 16 # cold: one frame in this many is read without prefetch, as a probe
_WARM_PROBES = 4       # probes in a row without a major fault that mean "the data is in memory"
_WHOLE_CHUNKS_RAM = 0.5  # cold, and the arrays fit in this share of available memory: prefetch whole chunks
_STREAM_AFTER = 0.02     # ... once this share of the frames was read cold (dense reading, not sparse sampling)


def _available_memory() -> int:
    """MemAvailable of /proc/meminfo in bytes (0 where unknown: then only exact pages are prefetched)."""
    try:
        with open("/proc/meminfo", "rb") as fh:
            for line in fh:
                if line.startswith(b"MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


# One line per kind of field; ``c`` is the field's column.  The per-frame reader is generated from
# these for the fields a file has: a frame is then one straight-line function, no loop or dispatch,
# which halves the Python time of a warm random read.
_READ_FIELD = {
    0: "f[{name!r}] = c_{name}.rows(a0, a1)",
    1: "f[{name!r}] = array(c_{name}.row(i))",
    2: "f[{name!r}] = float(c_{name}.row(i))",
    3: "f[{name!r}] = int(c_{name}.row(i))",
    4: "f[{name!r}] = c_{name}.row(i).astype(bool)",
    5: "f[{name!r}] = bool(c_{name}.row(i))",
    6: "s = int(c_{name}.row(i))\n    if s >= 0: f['info']['step'] = s",
    7: "v = text(c_{name}.row(i))\n    if v is not None: f['info'][{name!r}] = v",
    8: "v = float(c_{name}.row(i))\n    if v == v: f['info'][{name!r}] = v",  # NaN: no weight for this frame
}


_READER_CODE: dict[tuple[tuple[str, int], ...], Any] = {}  # compiled per set of fields (~1 ms each)


def _frame_reader(plan: list[tuple[str, Any, int]]) -> Any:
    """``read(i, a0, a1) -> Frame`` for the fields in ``plan`` (names come from the spec, not the file).

    Compiling the function costs about as much as the rest of a first open, so the code is
    compiled once per set of fields and only bound to each open's columns.
    """
    shape = tuple((name, kind) for name, _, kind in plan)
    code = _READER_CODE.get(shape)
    if code is None:
        body = ["def read(i, a0, a1):", "    f = blank_fields()"]
        body += ["    " + _READ_FIELD[kind].format(name=name) for name, kind in shape]
        body.append("    return adopt(f)")
        code = _READER_CODE[shape] = compile("\n".join(body), "<mlds frame reader>", "exec")
    env: dict[str, Any] = {"blank_fields": blank_fields, "adopt": Frame._adopt, "array": np.array,
                           "text": labels.decode}
    env.update((f"c_{name}", col) for name, col, _ in plan)
    exec(code, env)  # noqa: S102 - generated from spec field names only
    return env["read"]


class _Handle:
    """Everything that belongs to one open of the file (dropped on close, fork or pickling)."""

    def __init__(self, path: Path, cache_bytes: int) -> None:
        self.c: Container = open_container(path, "r")
        try:
            c = self.c
            if c.root_attr("mlds_format") != spec.FORMAT_NAME:
                raise FormatError(path, "not an mlds dataset (no mlds_format attribute)")
            spec.check_version(c.root_attr("mlds_spec_version"), str(path))
            keys = set(c.keys())  # one listing instead of a lookup per spec array
            for a in spec.REQUIRED:
                if a.key not in keys:
                    raise FormatError(path, f"required array {a.key} is missing")
            self.present = {a.name for a in spec.ARRAYS if a.key in keys}
            self.n = c.length("frames/atom_offset")  # the array a frame read needs anyway
        except BaseException:
            self.c.close()
            raise
        self.cache = colmod.BlockCache(cache_bytes)
        self.cols: dict[str, colmod.Column] = {}
        self.plan: list[tuple[str, Any, int]] | None = None
        self.reader: Any = None
        self.n_atoms_total: int | None = None
        self.cold = False                       # reading from disk: prefetch (see module docstring)
        self.offsets: np.ndarray | None = None  # atom_offset, loaded when cold
        self.reads = 0
        self.faults = _major_faults()
        self.quiet_probes = 0
        self.whole_chunks: list[tuple[str, Any, int]] | None = None  # cold, fits in RAM (_whole_chunk_plan)
        self.streamed: set[tuple[str, int]] = set()                   # chunks asked for whole since going cold
        self.cold_reads = 0                                           # frames read since going cold

    def watch(self) -> None:
        """Warm: every few reads, look at the major-fault counter; go cold if the disk is being hit."""
        self.reads += 1
        if self.reads >= _COLD_CHECK_EVERY and self.faults >= 0:
            now = _major_faults()
            if now - self.faults >= _COLD_FAULTS:
                self.go_cold()
            self.faults, self.reads = now, 0

    def probe_due(self) -> bool:
        """Cold: every few reads, read one frame without prefetching to see whether it still faults."""
        self.reads += 1
        return self.reads % _COLD_PROBE_EVERY == 0

    def probed(self, faults_before: int) -> None:
        if _major_faults() - faults_before > 0:
            self.quiet_probes = 0
        else:
            self.quiet_probes += 1
            if self.quiet_probes >= _WARM_PROBES:  # the data is in memory now: plain reads are cheaper
                self.cold, self.reads, self.faults = False, 0, _major_faults()

    def go_cold(self) -> None:
        """Reads come from disk: load the small per-frame arrays whole (one sequential read each
        replaces a page fault per frame) and prefetch the rest frame by frame."""
        self.cold, self.reads, self.quiet_probes = True, 0, 0
        self.load_small_columns()
        self.streamed.clear()
        self.cold_reads = 0
        self.whole_chunks = self._whole_chunk_plan()

    def load_small_columns(self) -> None:
        if self.offsets is not None:
            return
        small = [a for a in spec.ARRAYS if a.group == spec.FRAMES and a.name in self.present
                 and a.dtype.itemsize * math.prod(a.tail) <= 8]
        if sum(a.dtype.itemsize * math.prod(a.tail) for a in small) * self.n > self.cache.max_bytes:
            small = [a for a in small if a.name == "atom_offset"] if 8 * self.n <= self.cache.max_bytes else []
        for a in small:
            self.cols[a.name] = colmod.LoadedColumn(a.key, self.col(a.name).read(0, self.n))
        if small:
            self.offsets = self.cols["atom_offset"].data  # type: ignore[attr-defined]
            self.plan = None  # rebuilt on the loaded columns

    def _whole_chunk_plan(self) -> list[tuple[str, Any, int]] | None:
        """(field, column, kind) of the columns whose chunks may be streamed whole: only when
        the arrays fit in memory.

        A training loop reads every frame each epoch, so data that fits in memory is
        read whole anyway: a chunk (~2 MB) asked for at once, in the background, streams
        from the disk and then serves every later frame in it from memory.  Sparse
        sampling of a big file would pay for streaming chunks it mostly does not use, so
        chunks are streamed only once ``_STREAM_AFTER`` of the frames were read cold
        (dense reading).  Data larger than memory gets exact pages only.
        """
        if self.n_atoms_total is None:
            self.n_atoms_total = self.c.length("atoms/numbers")
        size = sum(a.dtype.itemsize * math.prod(a.tail) * (self.n_atoms_total if a.group == spec.ATOMS else self.n)
                   for a in spec.ARRAYS if a.name in self.present)
        if size > _WHOLE_CHUNKS_RAM * _available_memory():
            return None
        plan = self.plan or self.frame_plan()
        return [(name, col, kind) for name, col, kind in plan if hasattr(col, "hint_chunk")]

    def _stream(self, name: str, col: Any, ks: Any) -> None:
        for k in ks:
            if (name, k) not in self.streamed:
                self.streamed.add((name, k))
                col.hint_chunk(k)

    def prefetch_chunks(self, i: int, a0: int) -> None:
        """Cold, fits in memory, read densely: stream the chunks frame ``i`` lies in (each once)."""
        self.cold_reads += 1
        if self.cold_reads >= _STREAM_AFTER * self.n:
            for name, col, kind in self.whole_chunks or ():
                self._stream(name, col, ((a0 if kind == 0 else i) // col.chunk_len,))

    def prefetch_chunks_of(self, names: Sequence[str], idx: np.ndarray, rows: np.ndarray | None) -> None:
        """:meth:`prefetch_chunks` for a minibatch: frames ``idx`` (atom rows ``rows``) of arrays ``names``."""
        self.cold_reads += idx.size
        if self.cold_reads < _STREAM_AFTER * self.n:
            return
        for name, col, kind in self.whole_chunks or ():
            r = rows if kind == 0 else idx
            if name in names and r is not None:
                self._stream(name, col, np.unique(r // col.chunk_len).tolist())

    def col(self, name: str) -> colmod.Column:
        col = self.cols.get(name)
        if col is None:
            col = self.cols[name] = self.c.column(spec.BY_NAME[name].key, self.cache)
        return col

    def frame_plan(self) -> list[tuple[str, Any, int]]:
        """(field, column, kind) for every present field, and :attr:`reader` for them, built once."""
        if self.plan is None:
            plan: list[tuple[str, Any, int]] = []
            for name in spec.ARRAYS:
                f = name.name
                if f not in self.present or f in ("n_atoms", "atom_offset"):
                    continue
                kind = (0 if f in _ATOM_FIELDS else 1 if f in _ROW_FIELDS else 2 if f in _FLOAT_FIELDS
                        else 3 if f in _INT_FIELDS else 4 if f == "pbc" else 5 if f == "converged"
                        else 7 if f in labels.TEXT_LABELS else 8 if f in labels.NUMBER_LABELS else 6)
                plan.append((f, self.col(f), kind))
            self.reader = _frame_reader(plan)
            self.plan = plan
        return self.plan

    def close(self) -> None:
        self.cols.clear()
        self.plan = None
        self.cache.clear()
        self.c.close()


class Dataset(FramesAPI):
    """An mlds dataset file (HDF5 ``.h5``, Zarr ``.zarr`` / ``.zarr.zip``), read lazily.

    ``ds[i]`` is a :class:`~mlds.format.frame.Frame`; ``ds.batch(indices)``
    a minibatch of arrays; ``ds.array("forces")`` one array for all frames;
    ``ds.select(...)`` / ``ds.subset(...)`` views that write out as valid
    datasets.  Units and signs are those of spec §2 (Å, eV, eV/Å, eV/Å³,
    stress positive = tensile).  ``cache_bytes`` bounds the in-process cache
    of decoded blocks used for compressed data (uncompressed data is read
    through the OS page cache).  Use as a context manager or call ``close``;
    a closed or unpickled dataset re-opens on next use.
    """

    def __init__(self, path: str | os.PathLike, *, cache_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self.path = Path(path)
        self.cache_bytes = int(cache_bytes)
        self._h: _Handle | None = None
        self._metadata: dict[str, Any] | None = None
        self._root_attrs: dict[str, Any] | None = None
        if not self.path.exists():
            raise FormatError(self.path, "no such file or directory")
        self._handle()  # check the file now: a bad path fails at mlds.open, not at first read

    # -- open / close / pickle ---------------------------------------------------

    def _handle(self) -> _Handle:
        h = self._h
        if h is None:
            h = self._h = _Handle(self.path, self.cache_bytes)
            _OPEN.add(self)
        return h

    def _forget(self) -> None:
        self._h = None

    def close(self) -> None:
        """Release the file (handles, maps, cache); the dataset re-opens on next use."""
        h, self._h = self._h, None
        if h is not None:
            h.close()
            _OPEN.discard(self)

    def __getstate__(self) -> dict[str, Any]:
        return {"path": str(self.path), "cache_bytes": self.cache_bytes}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path = Path(state["path"])
        self.cache_bytes = int(state["cache_bytes"])
        self._h = None
        self._metadata = None
        self._root_attrs = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass

    # -- basics ------------------------------------------------------------------

    def __len__(self) -> int:
        return self._handle().n

    @property  # type: ignore[override]
    def _present(self) -> set[str]:
        return self._handle().present

    @property
    def _c(self) -> Container:
        return self._handle().c

    @property
    def metadata(self) -> dict[str, Any]:
        """The metadata object of spec §8 (read and parsed on first use)."""
        if self._metadata is None:
            meta = self._handle().c.root_attr("metadata", {})
            self._metadata = meta if isinstance(meta, dict) else {}
        return self._metadata

    @property
    def _attrs(self) -> dict[str, Any]:
        """All root attributes (for validation; reading frames needs only a few)."""
        if self._root_attrs is None:
            self._root_attrs = self._handle().c.root_attrs()
        return self._root_attrs

    @property
    def spec_version(self) -> str:
        """``mlds_spec_version`` of the file (this reader accepts any 1.x)."""
        return str(self._handle().c.root_attr("mlds_spec_version"))

    @property
    def n_atoms_total(self) -> int:
        """Number of atoms over all frames."""
        h = self._handle()
        if h.n_atoms_total is None:
            h.n_atoms_total = h.c.length("atoms/numbers")
        return h.n_atoms_total

    def _atom_range(self, i: int) -> tuple[int, int]:
        """Rows of frame i's atoms, from ``atom_offset[i:i+2]`` (one read, one page)."""
        h = self._h or self._handle()
        if h.offsets is not None:
            return int(h.offsets[i]), int(h.offsets[i + 1]) if i + 1 < h.n else self.n_atoms_total
        off = h.cols.get("atom_offset") or h.col("atom_offset")
        if i + 1 < h.n:
            pair = off.rows(i, i + 2)
            return int(pair[0]), int(pair[1])
        return int(off.row(i)), self.n_atoms_total

    # -- frames ------------------------------------------------------------------

    def frame(self, i: int) -> Frame:
        """Frame ``i`` (negative counts from the end), read row by row from the file."""
        h = self._h or self._handle()
        n = h.n
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"frame {i} out of range for a dataset of {n} frames")
        if h.offsets is not None:
            a0 = int(h.offsets[i])
            a1 = int(h.offsets[i + 1]) if i + 1 < n else self.n_atoms_total
        else:
            off = h.cols.get("atom_offset") or h.col("atom_offset")
            a0 = int(off.row(i))
            a1 = int(off.row(i + 1)) if i + 1 < n else self.n_atoms_total
        plan = h.plan or h.frame_plan()
        probe = -1
        if not h.cold:
            h.watch()
        elif h.probe_due():
            probe = _major_faults()
        else:
            for name, col, kind in plan:
                col.hint(a0, a1) if kind == 0 else col.hint(i, i + 1)
            if h.whole_chunks:
                h.prefetch_chunks(i, a0)
        frame = h.reader(i, a0, a1)
        if probe >= 0:
            h.probed(probe)
        return frame

    def iter_frames(self, start: int = 0, stop: int | None = None, *, batch: int = 4096) -> Iterator[Frame]:
        """Frames ``start:stop`` in order, reading each array once per ``batch`` frames."""
        stop = len(self) if stop is None else min(stop, len(self))
        names = self.arrays_present
        for b0 in range(start, stop, batch):
            b1 = min(stop, b0 + batch)
            got = self.arrays(names, b0, b1)
            yield from frames_from_arrays(got, got["n_atoms"])

    def _gather(self, names: Sequence[str], idx: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        h = self._handle()
        out: dict[str, np.ndarray] = {}
        if idx.size == 0:
            counts = np.empty(0, dtype=np.int64)
            for name in names:
                a = spec.BY_NAME[name]
                out[name] = np.empty((0, *a.tail), dtype=a.dtype)
            return out, counts
        faults = _major_faults() if not h.cold else -1
        if h.cold:
            h.col("n_atoms").hint_rows(idx)
            if h.offsets is None:
                h.col("atom_offset").hint_rows(idx)
        offsets = h.col("atom_offset").take(idx) if h.offsets is None else h.offsets[idx]
        counts = h.col("n_atoms").take(idx)
        rows = colmod.ranges_to_rows(offsets, counts) if any(spec.BY_NAME[n].group == spec.ATOMS for n in names) else None
        if h.cold:  # every page the batch needs requested at once, then read
            for name in names:
                if name not in ("n_atoms", "atom_offset"):
                    h.col(name).hint_rows(idx if spec.BY_NAME[name].group == spec.FRAMES else rows)
            if h.whole_chunks:
                h.prefetch_chunks_of(names, idx, rows)
        for name in names:
            a = spec.BY_NAME[name]
            if a.group == spec.FRAMES:
                out[name] = counts if name == "n_atoms" else offsets if name == "atom_offset" else h.col(name).take(idx)
            else:
                out[name] = h.col(name).take(rows)
        if faults >= 0 and _major_faults() - faults >= max(_COLD_FAULTS, idx.size // 4):
            h.go_cold()
        return out, counts

    # -- bulk arrays -------------------------------------------------------------

    def array(self, name: str, start: int | None = None, stop: int | None = None) -> np.ndarray:
        """Array ``name`` for frames ``start:stop``: per-frame rows, or the atoms of those frames."""
        a = spec.BY_NAME.get(name)
        if a is None:
            raise KeyError(f"unknown array {name!r}; spec arrays: {', '.join(spec.BY_NAME)}")
        h = self._handle()
        if name not in h.present:
            raise KeyError(f"array {name!r} is not present in {self.path}")
        start, stop, _ = slice(start, stop).indices(h.n)
        stop = max(start, stop)
        if a.group == spec.FRAMES:
            return h.col(name).read(start, stop)
        a0, a1 = self._atoms_of(start, stop)
        return h.col(name).read(a0, a1)

    def _atoms_of(self, start: int, stop: int) -> tuple[int, int]:
        if stop <= start:
            return 0, 0
        a0 = self._atom_range(start)[0]
        a1 = self._atom_range(stop - 1)[1]
        return a0, a1

    def __repr__(self) -> str:
        try:
            return f"<mlds.Dataset {self.path.name}: {len(self):,} frames, {self.n_atoms_total:,} atoms, arrays {', '.join(self.arrays_present)}>"
        except Exception:  # a repr must not raise (e.g. the file was removed)
            return f"<mlds.Dataset {self.path.name} (unreadable)>"
