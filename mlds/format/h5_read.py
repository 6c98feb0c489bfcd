"""Reading mlds HDF5 files through h5py's low-level API, rows straight from the file.

h5py's high-level objects cost 50-350 µs per item access (``File[key]``,
``attrs[name]``, ``Dataset.dtype``), which made opening a file and reading
its first frame take 10 ms.  The low-level ids (``h5f``, ``h5d``, ``h5a``)
cost a few µs to tens of µs, so opening reads just two root attributes and
two group listings, and each array is opened when first used.  Row data of
unfiltered datasets (the default) is then read from a memory map of the file
at the chunk addresses HDF5 reports (:class:`~mlds.format.columns.MappedColumn`);
filtered (gzip) datasets are read through HDF5 itself.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from mlds.errors import FormatError
from mlds.format import columns as cols
from mlds.format.containers import _fill_of, _h5_reason


class HDF5Reader:
    """Read side of the container interface for HDF5 files."""

    def __init__(self, path: str | os.PathLike) -> None:
        import h5py

        self._h5py = h5py
        self.path = Path(path)
        try:
            self._fid = h5py.h5f.open(os.fsencode(self.path), h5py.h5f.ACC_RDONLY)
        except OSError as err:
            raise FormatError(self.path, f"not a readable HDF5 file ({_h5_reason(err)})") from None
        self._ds: dict[str, Any] = {}
        self._fd: int | None = None
        self._map: Any = None
        self._columns: list[Any] = []
        self._hl: Any = None

    # -- metadata --------------------------------------------------------------

    def _d(self, key: str) -> Any:
        d = self._ds.get(key)
        if d is None:
            try:
                d = self._ds[key] = self._h5py.h5d.open(self._fid, key.encode())
            except KeyError:
                raise KeyError(f"{self.path}: no array {key}") from None
        return d

    def root_attr(self, name: str, default: Any = None) -> Any:
        try:
            attr = self._h5py.h5a.open(self._fid, name.encode())
        except KeyError:
            return default
        out = np.empty(attr.shape, dtype=attr.dtype)
        attr.read(out)
        v: Any = out[()] if out.shape == () else out
        if isinstance(v, bytes):
            v = v.decode()
        if isinstance(v, np.generic):
            v = v.item()
        if isinstance(v, bytes):
            v = v.decode()
        if name == "metadata" and isinstance(v, str):
            import json

            try:
                v = json.loads(v)
            except json.JSONDecodeError as err:
                raise FormatError(self.path, f"metadata attribute is not valid JSON ({err.msg} at char {err.pos})") from None
        return v

    def root_attrs(self) -> dict[str, Any]:
        names = list(self.hl.attrs.keys())
        return {k: self.root_attr(k) for k in names}

    @property
    def hl(self) -> Any:
        """A high-level h5py view of the same file (for the rare calls that want one)."""
        if self._hl is None:
            self._hl = self._h5py.File(self._fid)
        return self._hl

    def keys(self) -> list[str]:
        out: list[str] = []
        h5g = self._h5py.h5g
        for group in (b"frames", b"atoms"):
            try:
                gid = h5g.open(self._fid, group)
            except KeyError:
                continue
            out.extend(f"{group.decode()}/{name.decode()}" for name in gid)
        return out

    def has(self, key: str) -> bool:
        try:
            self._d(key)
            return True
        except KeyError:
            return False

    def length(self, key: str) -> int:
        return int(self._d(key).shape[0])

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self._d(key).shape)

    def dtype(self, key: str) -> np.dtype:
        return self._d(key).dtype

    def chunk_len(self, key: str) -> int:
        d = self._d(key)
        dcpl = d.get_create_plist()
        if dcpl.get_layout() == self._h5py.h5d.CHUNKED:
            return int(dcpl.get_chunk()[0])
        return max(1, int(d.shape[0]))

    def array_attrs(self, key: str) -> dict[str, Any]:
        return {k: (v.decode() if isinstance(v, bytes) else v) for k, v in self.hl[key].attrs.items()}

    # -- data --------------------------------------------------------------------

    def read(self, key: str, start: int, stop: int) -> np.ndarray:
        d = self._d(key)
        shape = d.shape
        out = np.empty((max(0, stop - start), *shape[1:]), dtype=d.dtype)
        if stop > start:
            h5s = self._h5py.h5s
            fspace = d.get_space()
            fspace.select_hyperslab((start,) + (0,) * (len(shape) - 1), out.shape)
            d.read(h5s.create_simple(out.shape), fspace, out)
        return out

    def read_points(self, key: str, index: np.ndarray) -> np.ndarray:
        return self.column(key, cols.BlockCache(64 << 20)).take(np.asarray(index))

    def column(self, key: str, cache: cols.BlockCache) -> cols.Column:
        """Mapped rows for an unfiltered little-endian dataset; HDF5 reads otherwise."""
        h5d = self._h5py.h5d
        d = self._d(key)
        dtype, shape = self._dtype_of(key, d), tuple(d.shape)
        dcpl = d.get_create_plist()
        layout = dcpl.get_layout()
        filtered = dcpl.get_nfilters() > 0
        chunk_len = int(dcpl.get_chunk()[0]) if layout == h5d.CHUNKED else max(1, shape[0])
        fill = _fill_of(key, dtype)
        little = dtype.byteorder in ("<", "|") or (dtype.byteorder == "=" and np.little_endian)
        if (not filtered and little and dtype.kind in "biuf" and layout in (h5d.CHUNKED, h5d.CONTIGUOUS)
                and dcpl.get_external_count() == 0):
            buf = self._mapped()
            if buf is not None:
                index: Any = (_ContiguousIndex(d) if layout == h5d.CONTIGUOUS
                              else _H5ChunkIndex(d, chunk_len, shape, self._identity(), key))
                col = cols.MappedColumn(key, dtype, shape[1:], shape[0], chunk_len, buf, index, fill, self._fd)
                self._columns.append(col)
                return col
        return cols.BufferedColumn(key, dtype, shape[1:], shape[0], chunk_len,
                                   lambda a, b, _k=key: self.read(_k, a, b), cache, filtered)

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

    def _mapped(self) -> Any:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY)
            self._map = cols.map_file(self._fd)
        return self._map

    def _identity(self) -> tuple[int, ...]:
        st = os.fstat(self._fd) if self._fd is not None else os.stat(self.path)
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)

    # -- writing is not supported here ----------------------------------------------

    def set_root_attrs(self, attrs: dict[str, Any]) -> None:
        raise FormatError(self.path, "opened read-only")

    def create(self, *args: Any, **kw: Any) -> None:
        raise FormatError(self.path, "opened read-only")

    def append(self, key: str, data: np.ndarray) -> None:
        raise FormatError(self.path, "opened read-only")

    def resize(self, key: str, length: int, fill: Any) -> None:
        raise FormatError(self.path, "opened read-only")

    def close(self) -> None:
        for col in self._columns:
            col.release()
        self._columns.clear()
        if self._map is not None:
            self._map.close()
            self._map = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._ds.clear()
        if self._hl is not None:
            self._hl = None
        if self._fid is not None and self._fid.valid:
            self._fid.close()
        self._fid = None


class _ContiguousIndex:
    n_chunks = 1

    def __init__(self, dsid: Any) -> None:
        off = dsid.get_offset()
        self._off = -1 if off is None else int(off)

    def offset(self, k: int) -> int:
        return self._off

    def all(self) -> np.ndarray:
        return np.array([self._off], dtype=np.int64)


# Chunk tables of files already read in this process, keyed by file identity (device, inode,
# size, mtime) and array: re-opening an unchanged file then costs no chunk lookups.
_CHUNK_TABLES: OrderedDict[tuple, np.ndarray] = OrderedDict()
_CHUNK_TABLES_MAX = 256


class _H5ChunkIndex:
    """Byte offset of each chunk of an HDF5 dataset, looked up lazily.

    The first few lookups ask for one chunk each (a frame read then costs a few
    µs per array, not a walk of the whole index); from the fifth distinct chunk
    on, the whole table is read in one ``chunk_iter`` pass and kept for the
    process (keyed by file identity, so an unchanged file re-opened reuses it).
    """

    def __init__(self, dsid: Any, chunk_len: int, shape: tuple[int, ...], identity: tuple, key: str) -> None:
        self._dsid, self._c, self._shape = dsid, chunk_len, shape
        self.n_chunks = -(-shape[0] // chunk_len) if shape[0] else 0
        self._ident = (*identity, key)
        self._known: dict[int, int] = {}
        self._all: np.ndarray | None = _CHUNK_TABLES.get(self._ident)

    def offset(self, k: int) -> int:
        if self._all is not None:
            return int(self._all[k])
        off = self._known.get(k)
        if off is None:
            if len(self._known) >= 4:
                return int(self.all()[k])
            info = self._dsid.get_chunk_info_by_coord((k * self._c,) + (0,) * (len(self._shape) - 1))
            off = self._known[k] = -1 if info.byte_offset is None else int(info.byte_offset)
        return off

    def all(self) -> np.ndarray:
        if self._all is None:
            offs = np.full(self.n_chunks, -1, dtype=np.int64)
            c = self._c

            def visit(info: Any) -> None:
                offs[info.chunk_offset[0] // c] = info.byte_offset

            try:
                self._dsid.chunk_iter(visit)
            except AttributeError:  # HDF5 < 1.12.3 / h5py without chunk_iter
                for i in range(self._dsid.get_num_chunks()):
                    visit(self._dsid.get_chunk_info(i))
            self._all = offs
            _CHUNK_TABLES[self._ident] = offs
            while len(_CHUNK_TABLES) > _CHUNK_TABLES_MAX:
                _CHUNK_TABLES.popitem(last=False)
        return self._all
