"""Reading mlds HDF5 files through h5py's low-level API, rows straight from the file.

h5py's high-level objects cost 50-350 µs per item access (``File[key]``,
``attrs[name]``, ``Dataset.dtype``), which made opening a file and reading
its first frame take 10 ms.  The low-level ids (``h5f``, ``h5d``, ``h5a``)
cost a few µs to tens of µs, so opening reads just two root attributes and
two group listings, and each array is opened when first used.  Row data of
unfiltered datasets (the default) is then read from a memory map of the file
at the chunk addresses HDF5 reports (:class:`~mlds.format.columns.MappedColumn`);
filtered (gzip) datasets are read through HDF5 itself.

What was learnt about a file's layout (attributes read, arrays present,
dtypes, shapes, chunk addresses), with one descriptor and memory map of it, is
kept for the process (the last 64 files), keyed by the file's identity
(device, inode, size, mtime and ctime in ns): re-opening an unchanged file, as
data loaders do per worker or per epoch, then reads it without going through
HDF5 at all and finds the pages it touched before still mapped.  Any change
to the file changes its identity; entries of deleted files are dropped.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mlds.errors import FormatError
from mlds.format import columns as cols
from mlds.format.containers import ReadOnly, _fill_of, _h5_reason, decode_attr


@dataclass
class _ChunkTable:
    """Byte offsets of an array's chunks: the few looked up one by one, or all of them."""

    n_chunks: int
    known: dict[int, int] = field(default_factory=dict)
    all: np.ndarray | None = None


@dataclass
class _ArrayInfo:
    dtype: np.dtype
    shape: tuple[int, ...]
    chunk_len: int
    mapped: bool                 # raw little-endian rows at known offsets
    filtered: bool
    contiguous: int | None       # byte offset of a contiguous dataset (-1: never written)
    table: _ChunkTable


@dataclass
class _FileInfo:
    """What one file (by identity) looks like, and one descriptor + map of it shared by its readers."""

    attrs: dict[str, Any] = field(default_factory=dict)
    keys: list[str] | None = None
    arrays: dict[str, _ArrayInfo] = field(default_factory=dict)
    fd: int | None = None
    map: Any = None
    columns: dict[str, cols.MappedColumn] = field(default_factory=dict)  # shared by the file's readers
    path: Path | None = None
    users: int = 0
    evicted: bool = False
    _fid: Any = None
    _dsids: dict[str, Any] = field(default_factory=dict)

    def dataset(self, key: str) -> Any:
        """An HDF5 dataset id for chunk lookups, from a handle of the entry's own (readers come and go)."""
        d = self._dsids.get(key)
        if d is None:
            import h5py

            with _LOCK:
                if self._fid is None:
                    self._fid = h5py.h5f.open(os.fsencode(self.path), h5py.h5f.ACC_RDONLY)
                d = self._dsids[key] = h5py.h5d.open(self._fid, key.encode())
        return d

    def release(self) -> None:
        """When unused, close the HDF5 handle (so others may open the file for writing); once also
        evicted, the descriptor and map (pages stay mapped, and cheap, until then)."""
        if self.users > 0:
            return
        self._dsids.clear()
        if self._fid is not None:
            if self._fid.valid:
                self._fid.close()
            self._fid = None
        if self.evicted and self.fd is not None:
            for col in self.columns.values():
                col.release()
            self.columns.clear()
            if self.map is not None:
                try:
                    self.map.close()
                except BufferError:  # a view is still alive somewhere: the map goes with it
                    pass
                self.map = None
            os.close(self.fd)
            self.fd = None


_FILES: OrderedDict[tuple, _FileInfo] = OrderedDict()
_FILES_MAX = 64
_LOCK = threading.RLock()  # readers in several threads share entries: counts and closing under one lock
_MISSING = object()


def clear_caches() -> None:
    """Forget every file layout learnt in this process (the next open goes through HDF5 again)."""
    with _LOCK:
        for info in _FILES.values():
            info.evicted = True
            info.release()
        _FILES.clear()


def _identity(st: os.stat_result) -> tuple:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _evict(ident: tuple) -> None:
    info = _FILES.pop(ident)
    info.evicted = True
    info.release()


class HDF5Reader(ReadOnly):
    """Read side of the container interface for HDF5 files."""

    def __init__(self, path: str | os.PathLike) -> None:
        import h5py

        self._h5py = h5py
        self.path = Path(path)
        self._fid: Any = None
        self._ds: dict[str, Any] = {}
        self._map: Any = None
        self._hl: Any = None
        self._info: _FileInfo | None = None
        self._fd: int | None = None
        ident = _identity(os.stat(self.path))
        with _LOCK:
            info = _FILES.get(ident)
            if info is None or info.fd is None:
                info = self._register()
            else:
                _FILES.move_to_end(ident)
            info.users += 1
            self._info, self._fd = info, info.fd
            self._lend()

    def _register(self) -> _FileInfo:
        """A file (version) seen for the first time: it must open as HDF5 now, not at first read."""
        fd = os.open(self.path, os.O_RDONLY)
        try:
            ident = _identity(os.fstat(fd))
            info = _FILES.get(ident)
            if info is None:
                self.fid
                for old, other in list(_FILES.items()):  # drop files deleted since: their maps pin the disk space
                    if other.fd is not None and os.fstat(other.fd).st_nlink == 0:
                        _evict(old)
                info = _FILES[ident] = _FileInfo(path=self.path)
                while len(_FILES) > _FILES_MAX:
                    _evict(next(iter(_FILES)))
            if info.fd is None:
                info.fd, fd = fd, -1
            return info
        finally:
            if fd >= 0:
                os.close(fd)

    @property
    def fid(self) -> Any:
        """The HDF5 file id, opened on first need."""
        if self._fid is None:
            try:
                self._fid = self._h5py.h5f.open(os.fsencode(self.path), self._h5py.h5f.ACC_RDONLY)
            except OSError as err:
                raise FormatError(self.path, f"not a readable HDF5 file ({_h5_reason(err)})") from None
            self._lend()
        return self._fid

    def _lend(self) -> None:
        """Lend our HDF5 id to the file's cache entry for chunk lookups (a first open opens HDF5 once)."""
        info = self._info
        with _LOCK:
            if info is not None and self._fid is not None and info._fid is None and info.fd is not None:
                info._fid = self._fid

    # -- metadata --------------------------------------------------------------

    def _d(self, key: str) -> Any:
        d = self._ds.get(key)
        if d is None:
            try:
                d = self._ds[key] = self._h5py.h5d.open(self.fid, key.encode())
            except KeyError:
                raise KeyError(f"{self.path}: no array {key}") from None
            info = self._info
            if info is not None and info._fid is self._fid:
                info._dsids.setdefault(key, d)
        return d

    def root_attr(self, name: str, default: Any = None) -> Any:
        v = self._info.attrs.get(name, _MISSING)
        if v is _MISSING:
            v = self._info.attrs[name] = self._read_attr(name)
        if v is _MISSING:
            return default
        if isinstance(v, (dict, list)):  # metadata: callers may modify what they get
            import copy

            return copy.deepcopy(v)
        return v

    def _read_attr(self, name: str) -> Any:
        try:
            attr = self._h5py.h5a.open(self.fid, name.encode())
        except KeyError:
            return _MISSING
        out = np.empty(attr.shape, dtype=attr.dtype)
        attr.read(out)
        return decode_attr(self.path, name, out)

    def root_attrs(self) -> dict[str, Any]:
        return {k: self.root_attr(k) for k in self.hl.attrs.keys()}

    @property
    def hl(self) -> Any:
        """A high-level h5py view of the same file (for the rare calls that want one)."""
        if self._hl is None:
            self._hl = self._h5py.File(self.fid)
        return self._hl

    def keys(self) -> list[str]:
        if self._info.keys is None:
            out: list[str] = []
            for group in (b"frames", b"atoms"):
                try:
                    gid = self._h5py.h5g.open(self.fid, group)
                except KeyError:
                    continue
                out.extend(f"{group.decode()}/{name.decode()}" for name in gid)
            self._info.keys = out
        return list(self._info.keys)

    def has(self, key: str) -> bool:
        if key in self._info.arrays:
            return True
        try:
            self._d(key)
            return True
        except KeyError:
            return False

    def _array(self, key: str) -> _ArrayInfo:
        a = self._info.arrays.get(key)
        if a is None:
            a = self._info.arrays[key] = self._describe(key)
        return a

    def _describe(self, key: str) -> _ArrayInfo:
        h5d = self._h5py.h5d
        d = self._d(key)
        shape = tuple(d.shape)
        dtype = self._dtype_of(key, d)
        dcpl = d.get_create_plist()
        layout = dcpl.get_layout()
        filtered = dcpl.get_nfilters() > 0
        chunked = layout == h5d.CHUNKED
        chunk_len = int(dcpl.get_chunk()[0]) if chunked else max(1, shape[0] if shape else 1)
        little = dtype.byteorder in ("<", "|") or (dtype.byteorder == "=" and np.little_endian)
        contiguous = None
        mapped = not filtered and little and dtype.kind in "biuf" and len(shape) >= 1
        if layout == h5d.CONTIGUOUS:
            if dcpl.get_external_count() == 0:
                off = d.get_offset()
                contiguous = -1 if off is None else int(off)
            else:
                mapped = False
        elif not chunked:
            mapped = False  # compact or virtual: read through HDF5
        n_chunks = (-(-shape[0] // chunk_len) if shape and shape[0] else 0) if chunked else 1
        return _ArrayInfo(dtype, shape, chunk_len, mapped, filtered, contiguous, _ChunkTable(n_chunks))

    def _dtype_of(self, key: str, d: Any) -> np.dtype:
        """The spec dtype when the stored type is exactly it (a few µs), else h5py's conversion (~100 µs)."""
        from mlds.format import spec

        a = spec.BY_NAME.get(key.rsplit("/", 1)[-1])
        if a is not None and a.key == key:
            h5t = self._h5py.h5t
            tid = d.get_type()
            size = tid.get_size()
            if size == a.dtype.itemsize and (size == 1 or tid.get_order() == h5t.ORDER_LE):
                cls = tid.get_class()
                if a.dtype.kind == "f" and cls == h5t.FLOAT and tid.get_precision() == 8 * size:
                    return a.dtype
                if a.dtype.kind in "iu" and cls == h5t.INTEGER and (tid.get_sign() == h5t.SGN_2) == (a.dtype.kind == "i"):
                    return a.dtype
        return d.dtype

    def length(self, key: str) -> int:
        return int(self._array(key).shape[0])

    def shape(self, key: str) -> tuple[int, ...]:
        return self._array(key).shape

    def dtype(self, key: str) -> np.dtype:
        return self._d(key).dtype  # h5py's own view of the stored type (validation compares it with the spec)

    def chunk_len(self, key: str) -> int:
        return self._array(key).chunk_len

    def array_attrs(self, key: str) -> dict[str, Any]:
        return {k: (v.decode() if isinstance(v, bytes) else v) for k, v in self.hl[key].attrs.items()}

    # -- data --------------------------------------------------------------------

    def read(self, key: str, start: int, stop: int) -> np.ndarray:
        a = self._array(key)
        if a.mapped and self._mapped() is not None:
            return self.column(key, cols.BlockCache(0)).read(start, stop)
        return self._read_hdf5(key, start, stop)

    def _read_hdf5(self, key: str, start: int, stop: int) -> np.ndarray:
        d = self._d(key)
        a = self._array(key)
        out = np.empty((max(0, stop - start), *a.shape[1:]), dtype=a.dtype)
        if stop > start:
            fspace = d.get_space()
            fspace.select_hyperslab((start,) + (0,) * (len(a.shape) - 1), out.shape)
            d.read(self._h5py.h5s.create_simple(out.shape), fspace, out)
        return out

    def read_points(self, key: str, index: np.ndarray) -> np.ndarray:
        return self.column(key, cols.BlockCache(64 << 20)).take(np.asarray(index))

    def column(self, key: str, cache: cols.BlockCache) -> cols.Column:
        """Mapped rows for an unfiltered little-endian dataset; HDF5 reads otherwise."""
        a = self._array(key)
        fill = _fill_of(key, a.dtype)
        buf = self._mapped() if a.mapped else None
        if buf is not None:
            info = self._info
            assert info is not None
            col = info.columns.get(key)
            if col is None:  # shared by every reader of this file: its chunk views outlive one open
                col = info.columns[key] = cols.MappedColumn(
                    key, a.dtype, a.shape[1:], a.shape[0], a.chunk_len, buf, _Index(info, key, a), fill, info.fd)
            return col
        return cols.BufferedColumn(key, a.dtype, a.shape[1:], a.shape[0], a.chunk_len,
                                   lambda s, e, _k=key: self._read_hdf5(_k, s, e), cache, a.filtered)

    def _mapped(self) -> Any:
        if self._map is None and self._info is not None and self._info.fd is not None:
            with _LOCK:
                if self._info.map is None:
                    self._info.map = cols.map_file(self._info.fd)
            self._map = self._info.map
        return self._map

    def close(self) -> None:
        self._map = self._fd = None
        lent = self._info is not None and self._fid is not None and self._info._fid is self._fid
        if self._info is not None:  # the descriptor, map and lent HDF5 id are shared: released with the cache entry
            with _LOCK:
                self._info.users -= 1
                self._info.release()
            self._info = None
        self._ds.clear()
        self._hl = None
        if self._fid is not None and not lent and self._fid.valid:
            self._fid.close()
        self._fid = None


class _Index:
    """Chunk offsets of one array: from the file's cached table, else asked of HDF5.

    The first few chunks are looked up one by one (a frame read then costs a
    few µs per array, not a walk of the whole index); from the fifth distinct
    chunk on, the whole table is read in one ``chunk_iter`` pass.
    """

    def __init__(self, info: _FileInfo, key: str, a: _ArrayInfo) -> None:
        self._info, self._key, self._a, self._t = info, key, a, a.table
        self.n_chunks = a.table.n_chunks

    def offset(self, k: int) -> int:
        a = self._a
        if a.contiguous is not None:
            return a.contiguous
        t = self._t
        if t.all is not None:
            return int(t.all[k])
        off = t.known.get(k)
        if off is None:
            if len(t.known) >= 4:
                return int(self.all()[k])
            info = self._info.dataset(self._key).get_chunk_info_by_coord((k * a.chunk_len,) + (0,) * (len(a.shape) - 1))
            off = t.known[k] = -1 if info.byte_offset is None else int(info.byte_offset)
        return off

    def all(self) -> np.ndarray:
        a, t = self._a, self._t
        if a.contiguous is not None:
            return np.array([a.contiguous], dtype=np.int64)
        if t.all is None:
            offs = np.full(t.n_chunks, -1, dtype=np.int64)
            c = a.chunk_len
            dsid = self._info.dataset(self._key)

            def visit(info: Any) -> None:
                offs[info.chunk_offset[0] // c] = info.byte_offset

            try:
                dsid.chunk_iter(visit)
            except AttributeError:  # HDF5 < 1.12.3 / h5py without chunk_iter
                for i in range(dsid.get_num_chunks()):
                    visit(dsid.get_chunk_info(i))
            t.all = offs
        return t.all
