"""HDF5 and Zarr behind one small interface, like zarr-python's stores.

Everything above this module (writer, reader, validation) speaks only in
array keys such as ``"atoms/positions"``; the classes here (and the Zarr
reader in :mod:`mlds.format.zarr_read`) are the only places that know about
h5py or zarr.  Arrays are one-dimensional along their first axis (frames or
atoms) and grow by appending.  For reading, each container hands out
:mod:`~mlds.format.columns` that read rows straight from the file where the
storage allows it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from mlds.errors import FormatError
from mlds.format import columns as cols


class Container(Protocol):
    """One dataset file: root attributes and arrays addressed as ``"group/name"`` keys."""

    path: Path

    def root_attr(self, name: str, default: Any = None) -> Any: ...
    def root_attrs(self) -> dict[str, Any]: ...
    def set_root_attrs(self, attrs: dict[str, Any]) -> None: ...
    def keys(self) -> list[str]: ...
    def has(self, key: str) -> bool: ...
    def create(self, key: str, dtype: np.dtype, tail: tuple[int, ...], chunk_len: int, attrs: dict[str, Any]) -> None: ...
    def length(self, key: str) -> int: ...
    def shape(self, key: str) -> tuple[int, ...]: ...
    def dtype(self, key: str) -> np.dtype: ...
    def chunk_len(self, key: str) -> int: ...
    def array_attrs(self, key: str) -> dict[str, Any]: ...
    def append(self, key: str, data: np.ndarray) -> None: ...
    def resize(self, key: str, length: int, fill: Any) -> None: ...
    def read(self, key: str, start: int, stop: int) -> np.ndarray: ...
    def read_points(self, key: str, index: np.ndarray) -> np.ndarray: ...
    def column(self, key: str, cache: cols.BlockCache) -> cols.Column: ...
    def close(self) -> None: ...


def container_kind(path: str | os.PathLike) -> str:
    """``"hdf5"``, ``"zarr"`` or ``"zarr-zip"`` from the file name; content check happens on open."""
    name = Path(path).name.lower()
    if name.endswith((".zarr.zip", ".zip")):
        return "zarr-zip"
    if name.endswith(".zarr"):
        return "zarr"
    if name.endswith((".h5", ".hdf5", ".hdf")):
        return "hdf5"
    p = Path(path)
    if p.is_dir():
        return "zarr"
    if p.is_file():
        with open(p, "rb") as fh:
            head = fh.read(8)
        if head == b"\x89HDF\r\n\x1a\n":
            return "hdf5"
        if head[:4] == b"PK\x03\x04":
            return "zarr-zip"
    raise FormatError(path, "cannot tell the container from the name: use .h5 for HDF5, .zarr or .zarr.zip for Zarr")


# --------------------------------------------------------------------------- HDF5


class HDF5Container:
    """h5py-backed; only gzip+shuffle or no filter, so any HDF5 build reads it."""

    def __init__(self, path: str | os.PathLike, mode: str = "r", compression: str | None = None) -> None:
        import h5py

        self.path = Path(path)
        self.compression = compression
        try:
            # track_order off and no timestamps: same content -> same bytes, which
            # content-addressed storage relies on.
            if mode == "r":
                self._f = h5py.File(self.path, "r")
            else:
                from mlds.format.writer import ALIGN_INTERVAL, ALIGN_THRESHOLD

                # big chunks start at multiples of every row size, so readers map all of an array's rows at once
                self._f = h5py.File(self.path, mode, libver=("earliest", "v110"), track_order=False,
                                    alignment_threshold=ALIGN_THRESHOLD, alignment_interval=ALIGN_INTERVAL)
        except OSError as err:
            raise FormatError(self.path, f"not a readable HDF5 file ({_h5_reason(err)})") from None
        self._ds: dict[str, Any] = {}  # h5py's File[key] lookup costs ~50 µs; look each up once

    def _d(self, key: str):
        ds = self._ds.get(key)
        if ds is None:
            ds = self._ds[key] = self._f[key]
        return ds

    def root_attr(self, name: str, default: Any = None) -> Any:
        """One root attribute (strings decoded, numbers as Python scalars, metadata as a dict)."""
        try:
            v = self._f.attrs[name]
        except KeyError:
            return default
        return decode_attr(self.path, name, v)

    def root_attrs(self) -> dict[str, Any]:
        return {k: self.root_attr(k) for k in self._f.attrs.keys()}

    def set_root_attrs(self, attrs: dict[str, Any]) -> None:
        for k, v in attrs.items():
            if isinstance(v, (dict, list)):
                v = json.dumps(v, sort_keys=True, ensure_ascii=False)
            self._f.attrs[k] = v

    def keys(self) -> list[str]:
        out: list[str] = []
        for g in self._f.values():
            if hasattr(g, "keys"):
                out.extend(f"{g.name.strip('/')}/{k}" for k in g.keys())
        return out

    def has(self, key: str) -> bool:
        return key in self._f

    def create(self, key: str, dtype: np.dtype, tail: tuple[int, ...], chunk_len: int, attrs: dict[str, Any]) -> None:
        kw: dict[str, Any] = {}
        if self.compression == "gzip":
            kw = dict(compression="gzip", compression_opts=4, shuffle=True)
        ds = self._ds[key] = self._f.create_dataset(
            key, shape=(0, *tail), maxshape=(None, *tail), dtype=dtype,
            chunks=(chunk_len, *tail), track_times=False, fillvalue=_fill_of(key, dtype), **kw,
        )
        for k, v in attrs.items():
            ds.attrs[k] = v

    def length(self, key: str) -> int:
        return int(self._d(key).shape[0])

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self._d(key).shape)

    def dtype(self, key: str) -> np.dtype:
        return self._d(key).dtype

    def chunk_len(self, key: str) -> int:
        chunks = self._d(key).chunks
        return int(chunks[0]) if chunks else max(1, self.length(key))

    def array_attrs(self, key: str) -> dict[str, Any]:
        return {k: (v.decode() if isinstance(v, bytes) else v) for k, v in self._d(key).attrs.items()}

    def append(self, key: str, data: np.ndarray) -> None:
        ds = self._d(key)
        n = ds.shape[0]
        ds.resize(n + len(data), axis=0)
        ds[n:] = data

    def resize(self, key: str, length: int, fill: Any) -> None:
        ds = self._d(key)
        n = ds.shape[0]
        ds.resize(length, axis=0)
        if length > n:
            ds[n:] = fill

    def read(self, key: str, start: int, stop: int) -> np.ndarray:
        ds = self._d(key)
        out = np.empty((max(0, stop - start), *ds.shape[1:]), dtype=ds.dtype)
        if stop > start:
            ds.read_direct(out, np.s_[start:stop])
        return out

    def read_points(self, key: str, index: np.ndarray) -> np.ndarray:
        return self._d(key)[np.asarray(index)]

    def column(self, key: str, cache: cols.BlockCache) -> cols.Column:
        ds = self._d(key)
        return cols.BufferedColumn(key, ds.dtype, tuple(ds.shape[1:]), ds.shape[0], self.chunk_len(key),
                                   lambda a, b, _k=key: self.read(_k, a, b), cache, bool(ds.compression))

    def close(self) -> None:
        self._ds.clear()
        if self._f.id.valid:
            self._f.close()


def decode_attr(path: Path, name: str, v: Any) -> Any:
    """An HDF5 root attribute as Python: strings decoded, scalars unwrapped, ``metadata`` parsed from JSON."""
    if isinstance(v, np.ndarray) and v.shape == ():
        v = v[()]
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, bytes):
        v = v.decode()
    if name == "metadata" and isinstance(v, str):
        try:
            v = json.loads(v)
        except json.JSONDecodeError as err:
            raise FormatError(path, f"metadata attribute is not valid JSON ({err.msg} at char {err.pos})") from None
    return v


class ReadOnly:
    """The writing half of :class:`Container` for readers: every call is refused."""

    path: Path

    def set_root_attrs(self, attrs: dict[str, Any]) -> None:
        raise FormatError(self.path, "opened read-only")

    def create(self, *args: Any, **kw: Any) -> None:
        raise FormatError(self.path, "opened read-only")

    def append(self, key: str, data: np.ndarray) -> None:
        raise FormatError(self.path, "opened read-only")

    def resize(self, key: str, length: int, fill: Any) -> None:
        raise FormatError(self.path, "opened read-only")


def _h5_reason(err: OSError) -> str:
    text = str(err)
    if "truncated" in text:
        return "file is truncated"
    if "signature" in text:
        return "no HDF5 signature"
    return text.split("(")[-1].rstrip(")") if "(" in text else text


def _fill_of(key: str, dtype: np.dtype) -> Any:
    """The spec's missing value for an array (what a chunk never written reads as)."""
    from mlds.format import spec

    a = spec.BY_NAME.get(key.rsplit("/", 1)[-1])
    if a is not None and a.key == key:
        return a.missing
    return np.nan if dtype.kind == "f" else 0


# --------------------------------------------------------------------------- Zarr


class ZarrContainer:
    """Zarr v3, as a directory or a read-only zip (zips are written via a directory)."""

    def __init__(self, path: str | os.PathLike, mode: str = "r", compression: str | None = None) -> None:
        import zarr

        self.path = Path(path)
        self.compression = compression
        self._zip = None
        try:
            if container_kind(self.path) == "zarr-zip":
                if mode != "r":
                    raise ValueError("zip stores are written through a directory")
                from zarr.storage import ZipStore

                self._zip = ZipStore(self.path, mode="r")
                store: Any = self._zip
            else:
                if mode == "r" and not (self.path / "zarr.json").is_file():
                    raise FileNotFoundError("no zarr.json")
                store = str(self.path)
            self._g = zarr.open_group(store, mode=mode, zarr_format=3)
        except FormatError:
            raise
        except Exception as err:  # zarr raises a variety of types for bad stores
            raise FormatError(self.path, f"not a readable Zarr v3 store ({type(err).__name__}: {err})") from None
        self._arrays: dict[str, Any] = {}

    def _arr(self, key: str):
        arr = self._arrays.get(key)
        if arr is None:
            arr = self._arrays[key] = self._g[key]
        return arr

    def root_attr(self, name: str, default: Any = None) -> Any:
        return self._g.attrs.get(name, default)

    def root_attrs(self) -> dict[str, Any]:
        return dict(self._g.attrs)

    def set_root_attrs(self, attrs: dict[str, Any]) -> None:
        self._g.attrs.update(attrs)

    def keys(self) -> list[str]:
        out: list[str] = []
        for gname, g in self._g.groups():
            out.extend(f"{gname}/{k}" for k in g.array_keys())
        return out

    def has(self, key: str) -> bool:
        try:
            self._arr(key)
            return True
        except KeyError:
            return False

    def create(self, key: str, dtype: np.dtype, tail: tuple[int, ...], chunk_len: int, attrs: dict[str, Any]) -> None:
        from zarr.codecs import GzipCodec

        group, name = key.split("/")
        g = self._g.require_group(group)
        compressors = [GzipCodec(level=4)] if self.compression == "gzip" else None
        fill = _fill_of(key, dtype)  # spec §10.3: NaN, -1 for signed ints, 0 for uint8 (1 for converged)
        self._arrays[key] = g.create_array(
            name, shape=(0, *tail), chunks=(chunk_len, *tail), dtype=dtype,
            compressors=compressors, fill_value=fill, attributes=dict(attrs),
        )

    def length(self, key: str) -> int:
        return int(self._arr(key).shape[0])

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self._arr(key).shape)

    def dtype(self, key: str) -> np.dtype:
        return np.dtype(self._arr(key).dtype)

    def chunk_len(self, key: str) -> int:
        return int(self._arr(key).chunks[0])

    def array_attrs(self, key: str) -> dict[str, Any]:
        return dict(self._arr(key).attrs)

    def append(self, key: str, data: np.ndarray) -> None:
        arr = self._arr(key)
        n = arr.shape[0]
        arr.resize((n + len(data), *arr.shape[1:]))
        arr[n:] = data

    def resize(self, key: str, length: int, fill: Any) -> None:
        arr = self._arr(key)
        n = arr.shape[0]
        arr.resize((length, *arr.shape[1:]))
        if length > n:
            arr[n:] = fill

    def read(self, key: str, start: int, stop: int) -> np.ndarray:
        arr = self._arr(key)
        if stop <= start:
            return np.empty((0, *arr.shape[1:]), dtype=arr.dtype)
        return np.asarray(arr[start:stop])

    def read_points(self, key: str, index: np.ndarray) -> np.ndarray:
        return np.asarray(self._arr(key).oindex[np.asarray(index)])

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()
            self._zip = None


def open_container(path: str | os.PathLike, mode: str = "r", compression: str | None = None) -> Container:
    """Read through mlds' own readers (:mod:`~mlds.format.h5_read`, :mod:`~mlds.format.zarr_read`); write through h5py / zarr-python."""
    kind = container_kind(path)
    if kind == "hdf5":
        if mode == "r":
            from mlds.format.h5_read import HDF5Reader

            return HDF5Reader(path)
        return HDF5Container(path, mode, compression)
    if mode == "r":
        from mlds.format.zarr_read import ZarrReader

        return ZarrReader(path)
    return ZarrContainer(path, mode, compression)


def zip_directory(src: Path, dest: Path) -> None:
    """Pack a Zarr directory into a zip store (stored, not deflated: chunks carry their own codecs).

    The root ``zarr.json`` goes first, so the archive's first bytes say what it
    is (ASE recognises an mlds ``.zarr.zip`` by content that way).
    """
    import zipfile

    files = sorted((p for p in src.rglob("*") if p.is_file()), key=lambda p: (p != src / "zarr.json", p.as_posix()))
    with zipfile.ZipFile(dest, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for file in files:
            info = zipfile.ZipInfo(file.relative_to(src).as_posix(), date_time=(1980, 1, 1, 0, 0, 0))
            with open(file, "rb") as fh, zf.open(info, "w", force_zip64=True) as out:
                while block := fh.read(1 << 20):
                    out.write(block)
