"""Rows of one stored array, read the cheapest way its storage allows.

A frame is a handful of rows scattered over several arrays, so a random read
costs what locating and copying those rows costs.  Going through h5py or
zarr-python for each costs 20-100 µs per call and, on a cache miss, a whole
chunk (megabytes) to return a few kB.  Uncompressed chunks, which the spec
makes the default, are plain little-endian rows at a known place in a file,
so :class:`MappedColumn` reads them straight from a memory map: a frame is a
few numpy slices, a cold read fetches only the pages holding the frame's rows,
and the OS page cache is the cache.  This is why it is hand-written: no
library offers row access to HDF5/Zarr chunks without the per-call overhead.

:class:`BufferedColumn` covers everything else (compressed chunks, layouts we
do not map): blocks aligned to the storage chunks in an LRU bounded in bytes,
or, for an uncompressed array too big for the cache, just the rows asked for.

Every column offers the same four reads; none returns a view of the file.
"""

from __future__ import annotations

import math
import mmap
import os
import threading
from collections import OrderedDict
from typing import Any, Callable, Protocol

import numpy as np

# Below this many rows a gather copies slice by slice; above, one vectorised take.
_SMALL_GATHER = 8


class Column(Protocol):
    """Rows of one array: ``read`` (bulk), ``rows`` (a few), ``row`` (one), ``take`` (any order)."""

    key: str
    dtype: np.dtype
    tail: tuple[int, ...]
    n: int

    def read(self, start: int, stop: int) -> np.ndarray: ...  # bulk range, fresh array
    def rows(self, start: int, stop: int) -> np.ndarray: ...  # a few rows, fresh array
    def row(self, i: int) -> Any: ...                         # one row; may be a view: copy arrays you keep
    def take(self, index: np.ndarray) -> np.ndarray: ...      # rows in any order, fresh array
    def hint(self, start: int, stop: int) -> None: ...        # these rows will be read soon
    def hint_rows(self, index: np.ndarray) -> None: ...       # these rows will be read soon


def empty(col: Column, n: int = 0) -> np.ndarray:
    """An uninitialised result of ``n`` rows for ``col``."""
    return np.empty((n, *col.tail), dtype=col.dtype)


def ranges_to_rows(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Row indices of the concatenated ranges ``starts[j] : starts[j] + counts[j]`` (vectorised)."""
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    if total == 0:
        return np.empty(0, dtype=np.int64)
    ends = np.cumsum(counts)
    shift = np.asarray(starts, dtype=np.int64) - (ends - counts)
    return np.repeat(shift, counts) + np.arange(total, dtype=np.int64)


# --------------------------------------------------------------------------- mapped


class ChunkIndex(Protocol):
    """Where chunk ``k`` of an array starts in the mapped buffer (-1: never written, reads as fill)."""

    n_chunks: int

    def offset(self, k: int) -> int: ...
    def all(self) -> np.ndarray: ...


class _ChunkRows:
    """``row``/``rows`` for columns that can view chunk ``k`` as ``(rows view, index of its first row)``."""

    chunk_len: int
    dtype: np.dtype
    tail: tuple[int, ...]
    _fill: Any
    _loc: dict[int, tuple[np.ndarray, int] | None]

    def _chunk(self, k: int) -> tuple[np.ndarray, int] | None:
        raise NotImplementedError

    def read(self, start: int, stop: int) -> np.ndarray:
        raise NotImplementedError

    def row(self, i: int) -> Any:
        """Row ``i``: a view into the map (copy what you keep), or the fill value."""
        c = self.chunk_len
        k = i // c
        loc = self._loc.get(k) or self._chunk(k)
        if loc is None:
            return np.full(self.tail, self._fill, dtype=self.dtype)[()]
        return loc[0][loc[1] + i - k * c]

    def rows(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` as a fresh array (one slice when they sit in one chunk)."""
        c = self.chunk_len
        k = start // c
        if stop <= start:
            return empty(self)
        if (stop - 1) // c == k:
            loc = self._loc.get(k) or self._chunk(k)
            if loc is not None:
                b = loc[1] - k * c
                return loc[0][b + start : b + stop].copy()
        return self.read(start, stop)


class MappedColumn(_ChunkRows):
    """An array stored as raw little-endian chunks at byte offsets of one memory-mapped file.

    Each chunk is addressed in a view of the whole map whose start is congruent
    to the chunk's offset modulo the row size; chunks sharing that residue share
    a view, so a gather over many chunks is one ``take`` per residue (one in
    files whose chunks are aligned, as mlds writes them).
    """

    def __init__(self, key: str, dtype: np.dtype, tail: tuple[int, ...], n: int, chunk_len: int,
                 buf: mmap.mmap, index: ChunkIndex, fill: Any, fd: int | None = None) -> None:
        self.key, self.dtype, self.tail, self.n = key, np.dtype(dtype), tuple(tail), int(n)
        self.chunk_len = max(1, int(chunk_len))
        self._buf, self._index, self._fill, self._fd = buf, index, fill, fd
        self._items = math.prod(self.tail)
        self.row_bytes = self.dtype.itemsize * self._items
        self._views: dict[int, np.ndarray] = {}       # residue -> rows view over the whole map
        self._loc: dict[int, tuple[np.ndarray, int] | None] = {}  # chunk -> (view, first row) or None
        self._table: tuple[np.ndarray, np.ndarray] | None = None  # (residue per chunk, first row per chunk)

    def _view(self, residue: int) -> np.ndarray:
        v = self._views.get(residue)
        if v is None:
            count = (len(self._buf) - residue) // self.row_bytes
            v = np.frombuffer(self._buf, dtype=self.dtype, count=count * self._items, offset=residue)
            v = self._views[residue] = v.reshape(count, *self.tail)
        return v

    def _chunk(self, k: int) -> tuple[np.ndarray, int] | None:
        loc = self._loc.get(k, False)
        if loc is False:
            off = self._index.offset(k)
            if off < 0:
                loc = None
            else:
                residue = off % self.row_bytes
                loc = (self._view(residue), (off - residue) // self.row_bytes)
            self._loc[k] = loc
        return loc  # type: ignore[return-value]

    def read(self, start: int, stop: int) -> np.ndarray:
        """Bulk rows: chunk by chunk with ``preadv`` into the result (fast, and readahead works)."""
        out = empty(self, max(0, stop - start))
        if stop <= start:
            return out
        c = self.chunk_len
        flat = out.reshape(-1).view(np.uint8) if out.size else out
        for k in range(start // c, (stop - 1) // c + 1):
            lo, hi = max(start, k * c), min(stop, (k + 1) * c)
            dst = out[lo - start : hi - start]
            off = self._index.offset(k)
            if off < 0:
                dst[...] = self._fill
            elif self._fd is not None and _HAS_PREADV:
                nbytes = (hi - lo) * self.row_bytes
                mv = memoryview(flat)[(lo - start) * self.row_bytes : (lo - start) * self.row_bytes + nbytes]
                got = os.preadv(self._fd, [mv], off + (lo - k * c) * self.row_bytes)
                if got != nbytes:
                    raise OSError(f"{self.key}: short read ({got} of {nbytes} bytes): file truncated?")
            else:
                loc = self._chunk(k)
                assert loc is not None
                b = loc[1] - k * c
                dst[...] = loc[0][b + lo : b + hi]
        return out

    def take(self, index: np.ndarray) -> np.ndarray:
        index = np.asarray(index, dtype=np.int64)
        if index.size <= _SMALL_GATHER:
            return np.stack([np.asarray(self.row(int(i))) for i in index]) if index.size else empty(self)
        c = self.chunk_len
        k = index // c
        if self._index.n_chunks == 1 or int(k.min()) == int(k.max()):
            loc = self._chunk(int(k[0]))
            if loc is not None:
                return loc[0].take(index + (loc[1] - int(k[0]) * c), axis=0)
        residue, first = self._chunk_table()
        res_k, first_k = residue[k], first[k]
        glob = first_k + (index - k * c)
        kinds = np.unique(res_k)
        if kinds.size == 1 and kinds[0] >= 0:
            return self._view(int(kinds[0])).take(glob, axis=0)
        out = empty(self, index.size)
        for r in kinds.tolist():
            sel = np.nonzero(res_k == r)[0]
            out[sel] = self._fill if r < 0 else self._view(r).take(glob[sel], axis=0)
        return out

    def hint(self, start: int, stop: int) -> None:
        """Ask the kernel to start reading the pages of rows ``start:stop`` (asynchronously)."""
        c = self.chunk_len
        for k in range(start // c, (stop - 1) // c + 1) if stop > start else ():
            off = self._index.offset(k)
            if off >= 0:
                b0 = off + (max(start, k * c) - k * c) * self.row_bytes
                b1 = off + (min(stop, (k + 1) * c) - k * c) * self.row_bytes
                _willneed(self._buf, b0, b1)

    def hint_chunk(self, k: int) -> None:
        """Ask the kernel to start reading all of chunk ``k`` (asynchronously)."""
        off = self._index.offset(k) if 0 <= k < self._index.n_chunks else -1
        if off >= 0:
            _willneed(self._buf, off, off + min(self.chunk_len, self.n - k * self.chunk_len) * self.row_bytes)

    def hint_rows(self, index: np.ndarray) -> None:
        """:meth:`hint` for many rows at once: one request per run of adjacent pages."""
        index = np.asarray(index, dtype=np.int64)
        if not index.size:
            return
        residue, first = self._chunk_table()
        k = index // self.chunk_len
        ok = residue[k] >= 0
        byte = (first[k] * self.row_bytes + residue[k] + (index - k * self.chunk_len) * self.row_bytes)[ok]
        _willneed_pages(self._buf, byte, self.row_bytes)

    def _chunk_table(self) -> tuple[np.ndarray, np.ndarray]:
        if self._table is None:
            offs = self._index.all()
            residue = np.where(offs >= 0, offs % self.row_bytes, -1)
            first = np.where(offs >= 0, (offs - np.maximum(residue, 0)) // self.row_bytes, 0)
            self._table = (residue, first)
        return self._table

    def release(self) -> None:
        """Drop every view of the map so it can be closed."""
        self._views.clear()
        self._loc.clear()


# Maps of chunk files, shared by every reader in the process and kept (the last 4096) after they
# close, keyed by path and checked against the file's identity on each use: re-opening a Zarr store,
# as loaders do per worker or epoch, then finds its chunks mapped (and their pages faulted in).
_CHUNK_MAPS: OrderedDict[str, tuple[tuple, mmap.mmap]] = OrderedDict()
_CHUNK_MAPS_MAX = 4096
_CHUNK_LOCK = threading.Lock()


def clear_map_cache() -> None:
    """Drop the shared chunk-file maps (they close once no view uses them)."""
    with _CHUNK_LOCK:
        for _, mm in _CHUNK_MAPS.values():
            _close_quietly(mm)
        _CHUNK_MAPS.clear()


def _close_quietly(mm: mmap.mmap) -> None:
    try:
        mm.close()
    except BufferError:  # a view is still alive: the map goes when it does
        pass


class ChunkFiles:
    """One file per chunk (a Zarr directory store): each chunk file mapped on first use."""

    def __init__(self, path_of: Callable[[int], str], n_chunks: int, chunk_bytes: int) -> None:
        self._path_of, self.n_chunks, self._chunk_bytes = path_of, n_chunks, chunk_bytes
        self._maps: dict[int, mmap.mmap | None] = {}

    def map(self, k: int) -> mmap.mmap | None:
        """Chunk ``k`` mapped read-only (None: never written, reads as the fill value, the Zarr rule)."""
        if k in self._maps:
            return self._maps[k]
        path = self._path_of(k)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            self._maps[k] = None
            return None
        ident = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        with _CHUNK_LOCK:
            hit = _CHUNK_MAPS.get(path)
            if hit is not None and hit[0] == ident:
                _CHUNK_MAPS.move_to_end(path)
                self._maps[k] = hit[1]
                return hit[1]
        if st.st_size < self._chunk_bytes:
            raise OSError(f"chunk file {path} has {st.st_size} bytes, expected {self._chunk_bytes}")
        fd = os.open(path, os.O_RDONLY)
        try:
            mm = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
        finally:
            os.close(fd)
        _advise_random(mm)
        with _CHUNK_LOCK:
            _CHUNK_MAPS[path] = (ident, mm)
            while len(_CHUNK_MAPS) > _CHUNK_MAPS_MAX:
                _close_quietly(_CHUNK_MAPS.popitem(last=False)[1][1])
        self._maps[k] = mm
        return mm

    def readinto(self, k: int, offset: int, dst: memoryview) -> bool:
        try:
            fd = os.open(self._path_of(k), os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            if _HAS_PREADV:
                got = os.preadv(fd, [dst], offset)
            else:  # pragma: no cover - platforms without preadv (Windows)
                data = os.pread(fd, len(dst), offset)
                dst[: len(data)] = data
                got = len(data)
        finally:
            os.close(fd)
        if got != len(dst):
            raise OSError(f"chunk file {self._path_of(k)} is truncated")
        return True

    def close(self) -> None:
        self._maps.clear()  # the maps are shared (see _CHUNK_MAPS)


class ChunkFileColumn(_ChunkRows):
    """An uncompressed Zarr array in a directory store: rows straight from the mapped chunk files."""

    def __init__(self, key: str, dtype: np.dtype, tail: tuple[int, ...], n: int, chunk_len: int,
                 files: ChunkFiles, fill: Any) -> None:
        self.key, self.dtype, self.tail, self.n = key, np.dtype(dtype), tuple(tail), int(n)
        self.chunk_len = max(1, int(chunk_len))
        self._files, self._fill = files, fill
        self._items = math.prod(self.tail)
        self.row_bytes = self.dtype.itemsize * self._items
        self._loc: dict[int, tuple[np.ndarray, int] | None] = {}

    def _chunk(self, k: int) -> tuple[np.ndarray, int] | None:
        if k in self._loc:
            return self._loc[k]
        mm = self._files.map(k)
        loc = None
        if mm is not None:
            loc = (np.frombuffer(mm, dtype=self.dtype, count=self.chunk_len * self._items).reshape(self.chunk_len, *self.tail), 0)
        self._loc[k] = loc
        return loc

    def read(self, start: int, stop: int) -> np.ndarray:
        out = empty(self, max(0, stop - start))
        if stop <= start:
            return out
        c = self.chunk_len
        flat = out.reshape(-1).view(np.uint8)
        for k in range(start // c, (stop - 1) // c + 1):
            lo, hi = max(start, k * c), min(stop, (k + 1) * c)
            b0 = (lo - start) * self.row_bytes
            dst = memoryview(flat)[b0 : b0 + (hi - lo) * self.row_bytes]
            if not self._files.readinto(k, (lo - k * c) * self.row_bytes, dst):
                out[lo - start : hi - start] = self._fill
        return out

    def hint(self, start: int, stop: int) -> None:
        """Ask the kernel to start reading the pages of rows ``start:stop`` (asynchronously)."""
        c = self.chunk_len
        for k in range(start // c, (stop - 1) // c + 1) if stop > start else ():
            mm = self._files.map(k)
            if mm is not None:
                lo, hi = max(start, k * c) - k * c, min(stop, (k + 1) * c) - k * c
                _willneed(mm, lo * self.row_bytes, hi * self.row_bytes)

    def hint_chunk(self, k: int) -> None:
        """Ask the kernel to start reading all of chunk file ``k`` (asynchronously)."""
        mm = self._files.map(k) if k * self.chunk_len < self.n else None
        if mm is not None:
            _willneed(mm, 0, len(mm))

    def hint_rows(self, index: np.ndarray) -> None:
        """:meth:`hint` for many rows: grouped by chunk file."""
        index = np.asarray(index, dtype=np.int64)
        if not index.size:
            return
        k = index // self.chunk_len
        for kk in np.unique(k).tolist():
            mm = self._files.map(kk)
            if mm is not None:
                _willneed_pages(mm, (index[k == kk] - kk * self.chunk_len) * self.row_bytes, self.row_bytes)

    def take(self, index: np.ndarray) -> np.ndarray:
        index = np.asarray(index, dtype=np.int64)
        out = empty(self, index.size)
        if not index.size:
            return out
        c = self.chunk_len
        k = index // c
        order = np.argsort(k, kind="stable")
        ks = k[order]
        cuts = np.flatnonzero(np.diff(ks)) + 1
        for grp in np.split(order, cuts):
            kk = int(k[grp[0]])
            loc = self._chunk(kk)
            out[grp] = self._fill if loc is None else loc[0].take(index[grp] - kk * c, axis=0)
        return out

    def release(self) -> None:
        self._loc.clear()


class LoadedColumn:
    """An array held in memory (a small per-frame array loaded whole once reads come from disk)."""

    def __init__(self, key: str, data: np.ndarray) -> None:
        self.key, self.data = key, data
        self.dtype, self.tail, self.n = data.dtype, tuple(data.shape[1:]), int(data.shape[0])

    def row(self, i: int) -> Any:
        """Row ``i`` (a view of the in-memory array)."""
        return self.data[i]

    def rows(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop``, copied."""
        return self.data[start:stop].copy()

    read = rows

    def take(self, index: np.ndarray) -> np.ndarray:
        """Rows in any order, copied."""
        return self.data.take(np.asarray(index, dtype=np.int64), axis=0)

    def hint(self, start: int, stop: int) -> None:
        """No-op: already in memory."""

    def hint_rows(self, index: np.ndarray) -> None:
        """No-op: already in memory."""

    def release(self) -> None:
        pass


# --------------------------------------------------------------------------- buffered


class BlockCache:
    """LRU of decoded row blocks, keyed by (array key, block index), bounded in bytes (shared by columns)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = int(max_bytes)
        self._bytes = 0
        self._blocks: OrderedDict[tuple[str, int], np.ndarray] = OrderedDict()

    def get(self, key: tuple[str, int]) -> np.ndarray | None:
        block = self._blocks.get(key)
        if block is not None:
            self._blocks.move_to_end(key)
        return block

    def put(self, key: tuple[str, int], block: np.ndarray) -> None:
        block.setflags(write=False)
        self._blocks[key] = block
        self._bytes += block.nbytes
        while self._bytes > self.max_bytes and len(self._blocks) > 1:
            _, old = self._blocks.popitem(last=False)
            self._bytes -= old.nbytes

    def clear(self) -> None:
        self._blocks.clear()
        self._bytes = 0


class BufferedColumn:
    """Rows through the container's own reader (h5py / chunk decoding), for what cannot be mapped.

    Compressed chunks must be decoded whole, so single rows come from blocks
    aligned to the storage chunks, kept in the shared :class:`BlockCache`.  An
    array small enough (under 1/8 of the cache) is one block.  An uncompressed
    array too big for the cache is read row range by row range: a cache that
    cannot hold the data would only turn every miss into a chunk-sized read.
    """

    def __init__(self, key: str, dtype: np.dtype, tail: tuple[int, ...], n: int, chunk_len: int,
                 read: Callable[[int, int], np.ndarray], cache: BlockCache, compressed: bool) -> None:
        self.key, self.dtype, self.tail, self.n = key, np.dtype(dtype), tuple(tail), int(n)
        self._read, self._cache = read, cache
        row_bytes = self.dtype.itemsize * (int(np.prod(self.tail, dtype=np.int64)) if self.tail else 1)
        if self.n * row_bytes <= cache.max_bytes // 8:
            self._per = max(1, self.n)
        elif compressed:
            self._per = max(1, int(chunk_len)) * max(1, (64 << 10) // max(1, int(chunk_len) * row_bytes))
        else:
            self._per = 0  # direct row reads

    def read(self, start: int, stop: int) -> np.ndarray:
        return self._read(start, stop) if stop > start else empty(self)

    def _block(self, b: int) -> np.ndarray:
        key = (self.key, b)
        block = self._cache.get(key)
        if block is None:
            block = self._read(b * self._per, min(self.n, (b + 1) * self._per))
            self._cache.put(key, block)
        return block

    def row(self, i: int) -> Any:
        per = self._per
        if not per:
            return self._read(i, i + 1)[0]
        b = i // per
        return self._block(b)[i - b * per]

    def rows(self, start: int, stop: int) -> np.ndarray:
        per = self._per
        if not per or stop <= start:
            return self.read(start, stop)
        b0, b1 = start // per, (stop - 1) // per
        if b0 == b1:
            return self._block(b0)[start - b0 * per : stop - b0 * per].copy()
        return np.concatenate([self._block(b)[max(start, b * per) - b * per : min(stop, (b + 1) * per) - b * per]
                               for b in range(b0, b1 + 1)])

    def take(self, index: np.ndarray) -> np.ndarray:
        index = np.asarray(index, dtype=np.int64)
        out = empty(self, index.size)
        if not index.size:
            return out
        per = self._per or max(1, int(index.max()) - int(index.min()) + 1)
        if not self._per:  # uncompressed and large: read the covering runs of sorted rows
            order = np.argsort(index, kind="stable")
            srt = index[order]
            cuts = np.flatnonzero(np.diff(srt) > 1) + 1
            for grp in np.split(np.arange(srt.size), cuts):
                lo, hi = int(srt[grp[0]]), int(srt[grp[-1]]) + 1
                out[order[grp]] = self._read(lo, hi)[srt[grp] - lo]
            return out
        b = index // per
        order = np.argsort(b, kind="stable")
        cuts = np.flatnonzero(np.diff(b[order])) + 1
        for grp in np.split(order, cuts):
            bb = int(b[grp[0]])
            out[grp] = self._block(bb).take(index[grp] - bb * per, axis=0)
        return out

    def hint(self, start: int, stop: int) -> None:
        """No-op: blocks are read (and decoded) on demand."""

    def hint_rows(self, index: np.ndarray) -> None:
        """No-op: blocks are read (and decoded) on demand."""

    def release(self) -> None:
        pass


_HAS_PREADV = hasattr(os, "preadv")
_PAGE = mmap.PAGESIZE
_WILLNEED = getattr(mmap, "MADV_WILLNEED", None)


def _willneed(mm: mmap.mmap, b0: int, b1: int) -> None:
    if _WILLNEED is not None and b1 > b0:
        p0 = b0 - b0 % _PAGE
        try:
            mm.madvise(_WILLNEED, p0, min(b1, len(mm)) - p0)
        except (OSError, ValueError):  # pragma: no cover - advisory only
            pass


def _willneed_pages(mm: mmap.mmap, byte: np.ndarray, row_bytes: int) -> None:
    """One WILLNEED request per run of consecutive pages touched by rows starting at ``byte``."""
    if _WILLNEED is None or not byte.size:
        return
    pages = np.unique(np.concatenate([byte // _PAGE, (byte + row_bytes - 1) // _PAGE]))
    cuts = np.flatnonzero(np.diff(pages) > 1) + 1
    starts = pages[np.concatenate([[0], cuts])]
    ends = pages[np.concatenate([cuts - 1, [pages.size - 1]])] + 1
    for p0, p1 in zip(starts.tolist(), ends.tolist()):
        _willneed(mm, p0 * _PAGE, p1 * _PAGE)


def _advise_random(mm: mmap.mmap) -> None:
    """Random row reads: ask the kernel to fetch only the pages touched (no read-around)."""
    advice = getattr(mmap, "MADV_RANDOM", None)
    if advice is not None and len(mm):
        try:
            mm.madvise(advice)
        except OSError:  # pragma: no cover - advisory only
            pass


def map_file(fd: int) -> mmap.mmap | None:
    """A read-only map of the whole file behind ``fd`` (None for an empty file)."""
    if os.fstat(fd).st_size == 0:
        return None
    mm = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
    _advise_random(mm)
    return mm
