"""Read a dataset: random access to frames, bulk access to arrays.

Two access paths, chosen for what MLMD codes do:

* ``ds[i]`` (random single frames, e.g. a shuffling data loader) goes through
  an in-process cache of decoded blocks.  A call into h5py or zarr costs tens
  of microseconds, more than assembling a frame; caching blocks of rows makes
  a random read a few numpy slices.  That cache is why this is hand-written
  rather than delegated to h5py's own chunk cache.
* ``ds.array(...)`` and ``ds.iter_frames()`` read whole ranges in one call per
  array, so scans and bulk loads run at I/O speed with no per-frame loop.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from mlds.errors import FormatError
from mlds.format import labels, spec
from mlds.format.containers import Container, open_container
from mlds.format.frame import Frame
from mlds.format.frames_api import FramesAPI

DEFAULT_CACHE_BYTES = 256 << 20
BLOCK_ROWS = 65536


class _BlockCache:
    """LRU of decoded row blocks, keyed by (array key, block index), bounded in bytes.

    An array small enough (under 1/8 of the budget) is one block, read whole
    on first touch: a shuffled loader then pays one read per array instead of
    one per block.  Larger arrays use blocks of ``BLOCK_ROWS`` rows.
    """

    def __init__(self, container: Container, max_bytes: int) -> None:
        self._c = container
        self._max = max_bytes
        self._bytes = 0
        self._blocks: OrderedDict[tuple[str, int], np.ndarray] = OrderedDict()
        self._geometry: dict[str, tuple[int, int]] = {}  # key -> (rows, rows per block)

    def _rows_per_block(self, key: str) -> tuple[int, int]:
        geo = self._geometry.get(key)
        if geo is None:
            shape = self._c.shape(key)
            n = shape[0]
            row_bytes = self._c.dtype(key).itemsize * int(np.prod(shape[1:], dtype=np.int64))
            per_block = max(1, n) if n * row_bytes <= self._max // 8 else BLOCK_ROWS
            geo = self._geometry[key] = (n, per_block)
        return geo

    def rows(self, key: str, start: int, stop: int) -> np.ndarray:
        per = self._rows_per_block(key)[1]
        b0 = start // per
        b1 = (stop - 1) // per if stop > start else b0
        if b0 == b1:
            base = b0 * per
            return self._block(key, b0, per)[start - base : stop - base]
        return np.concatenate([self.rows(key, max(start, b * per), min(stop, (b + 1) * per)) for b in range(b0, b1 + 1)])

    def row(self, key: str, i: int) -> np.ndarray:
        per = self._rows_per_block(key)[1]
        b = i // per
        return self._block(key, b, per)[i - b * per]

    def _block(self, key: str, b: int, per: int) -> np.ndarray:
        k = (key, b)
        block = self._blocks.get(k)
        if block is not None:
            self._blocks.move_to_end(k)
            return block
        n = self._geometry[key][0]
        block = self._c.read(key, b * per, min(n, (b + 1) * per))
        block.setflags(write=False)
        self._blocks[k] = block
        self._bytes += block.nbytes
        while self._bytes > self._max and len(self._blocks) > 1:
            _, old = self._blocks.popitem(last=False)
            self._bytes -= old.nbytes
        return block


class Dataset(FramesAPI):
    """An open mlds dataset (HDF5 or Zarr).  Use as a context manager or call ``close``."""

    def __init__(self, path: str | os.PathLike, *, cache_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise FormatError(self.path, "no such file or directory")
        self._c = open_container(self.path, "r")
        try:
            self._attrs = self._c.root_attrs()
            if self._attrs.get("mlds_format") != spec.FORMAT_NAME:
                raise FormatError(self.path, "not an mlds dataset (no mlds_format attribute)")
            spec.check_version(self._attrs.get("mlds_spec_version"), str(self.path))
            keys = set(self._c.keys())  # one listing instead of a lookup per spec array
            for a in spec.REQUIRED:
                if a.key not in keys:
                    raise FormatError(self.path, f"required array {a.key} is missing")
            self._present = {a.name for a in spec.ARRAYS if a.key in keys}
            self._labels = [k for k in labels.NAMES if k in self._present]  # spec 1.1 labels -> Frame.info
            self._n = self._c.length("frames/n_atoms")
            meta = self._attrs.get("metadata", {})
            self._metadata: dict[str, Any] = meta if isinstance(meta, dict) else {}
        except BaseException:
            self._c.close()
            raise
        self._cache = _BlockCache(self._c, cache_bytes)
        self._offsets: np.ndarray | None = None
        self._counts: np.ndarray | None = None

    # -- basics ------------------------------------------------------------------

    def __len__(self) -> int:
        return self._n

    @property
    def metadata(self) -> dict[str, Any]:
        return self._metadata

    @property
    def spec_version(self) -> str:
        return str(self._attrs.get("mlds_spec_version"))

    @property
    def n_atoms_total(self) -> int:
        return self._c.length("atoms/numbers")

    def _index(self) -> tuple[np.ndarray, np.ndarray]:
        if self._offsets is None:
            self._offsets = self._c.read("frames/atom_offset", 0, self._n)
            self._counts = self._c.read("frames/n_atoms", 0, self._n)
        return self._offsets, self._counts  # type: ignore[return-value]

    # -- frames ------------------------------------------------------------------

    def frame(self, i: int) -> Frame:
        n = self._n
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"frame {i} out of range for a dataset of {n} frames")
        offsets, counts = self._index()
        a0 = int(offsets[i])
        a1 = a0 + int(counts[i])
        rows = self._cache.rows
        row = self._cache.row
        present = self._present
        fields: dict[str, Any] = {
            "numbers": rows("atoms/numbers", a0, a1),
            "positions": rows("atoms/positions", a0, a1),
            "cell": row("frames/cell", i),
            "pbc": row("frames/pbc", i).astype(bool),
            "energy": float(row("frames/energy", i)),
        }
        if "forces" in present:
            fields["forces"] = rows("atoms/forces", a0, a1)
        if "stress" in present:
            fields["stress"] = row("frames/stress", i)
        if "charges" in present:
            fields["charges"] = rows("atoms/charges", a0, a1)
        if "magmoms" in present:
            fields["magmoms"] = rows("atoms/magmoms", a0, a1)
        for name in ("energy_sigma0", "total_charge"):
            if name in present:
                fields[name] = float(row(f"frames/{name}", i))
        if "converged" in present:
            fields["converged"] = bool(row("frames/converged", i))
        if "source" in present:
            fields["source"] = int(row("frames/source", i))
        if "calculation" in present:
            fields["calculation"] = int(row("frames/calculation", i))
        info: dict[str, Any] = {}
        if "source_step" in present:
            step = int(row("frames/source_step", i))
            if step >= 0:
                info["step"] = step
        for name in self._labels:
            value = labels.info_value(name, row(f"frames/{name}", i))
            if value is not None:
                info[name] = value
        if info:
            fields["info"] = info
        return Frame._trusted(**fields)

    def iter_frames(self, start: int = 0, stop: int | None = None, *, batch: int = 4096) -> Iterator[Frame]:
        """In-order frames, reading each array once per batch of frames."""
        stop = self._n if stop is None else min(stop, self._n)
        for b0 in range(start, stop, batch):
            b1 = min(stop, b0 + batch)
            cols = self.arrays(None, b0, b1)
            counts = cols["n_atoms"]
            ends = np.cumsum(counts)
            begins = ends - counts
            per_frame = [k for k in ("stress",) if k in cols]
            per_atom = [k for k in ("forces", "charges", "magmoms") if k in cols]
            scalars = [k for k in ("energy_sigma0", "total_charge") if k in cols]
            ints = [k for k in ("source", "calculation") if k in cols]
            label_names = [k for k in labels.NAMES if k in cols]
            energy = cols["energy"].tolist()
            pbc = cols["pbc"].astype(bool)
            for j in range(b1 - b0):
                a0, a1 = int(begins[j]), int(ends[j])
                fields: dict[str, Any] = {
                    "numbers": cols["numbers"][a0:a1],
                    "positions": cols["positions"][a0:a1],
                    "cell": cols["cell"][j],
                    "pbc": pbc[j],
                    "energy": energy[j],
                }
                for k in per_atom:
                    fields[k] = cols[k][a0:a1]
                for k in per_frame:
                    fields[k] = cols[k][j]
                for k in scalars:
                    fields[k] = float(cols[k][j])
                for k in ints:
                    fields[k] = int(cols[k][j])
                if "converged" in cols:
                    fields["converged"] = bool(cols["converged"][j])
                info: dict[str, Any] = {}
                if "source_step" in cols and cols["source_step"][j] >= 0:
                    info["step"] = int(cols["source_step"][j])
                for name in label_names:
                    value = labels.info_value(name, cols[name][j])
                    if value is not None:
                        info[name] = value
                if info:
                    fields["info"] = info
                yield Frame._trusted(**fields)

    # -- bulk arrays -------------------------------------------------------------

    def array(self, name: str, start: int | None = None, stop: int | None = None) -> np.ndarray:
        """Array ``name`` for frames ``start:stop``: per-frame rows, or the atoms of those frames."""
        a = spec.BY_NAME.get(name)
        if a is None:
            raise KeyError(f"unknown array {name!r}; spec arrays: {', '.join(spec.BY_NAME)}")
        if name not in self._present:
            raise KeyError(f"array {name!r} is not present in {self.path}")
        start, stop, _ = slice(start, stop).indices(self._n)
        stop = max(start, stop)
        if a.group == spec.FRAMES:
            return self._c.read(a.key, start, stop)
        a0, a1 = self._atom_range(start, stop)
        return self._c.read(a.key, a0, a1)

    def _atom_range(self, start: int, stop: int) -> tuple[int, int]:
        if stop <= start:
            return 0, 0
        offsets, counts = self._index()
        return int(offsets[start]), int(offsets[stop - 1] + counts[stop - 1])

    def close(self) -> None:
        self._c.close()

    def __repr__(self) -> str:
        return f"<mlds.Dataset {self.path.name}: {self._n} frames, {self.n_atoms_total} atoms>"
