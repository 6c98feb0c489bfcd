"""What every readable collection of frames offers, written once.

:class:`~mlds.format.dataset.Dataset` (one file),
:class:`~mlds.format.concat.ConcatDataset` (a store version's shards) and
:class:`~mlds.format.view.DatasetView` (a selection of either) supply
``__len__``, ``frame``, ``array``, ``metadata``, ``_present`` and ``_gather``
(rows of several arrays for a list of frames); indexing, minibatches,
selections, ASE conversion, summaries and copies follow from those.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Sequence

import numpy as np

from mlds.format import labels, spec
from mlds.format.frame import Frame

if TYPE_CHECKING:
    from mlds.format.batch import Batch
    from mlds.format.view import DatasetView

IndexLike = int | slice | Sequence[int] | np.ndarray

_PER_ATOM_FIELDS = ("numbers", "positions", "forces", "charges", "magmoms")
_ITER_BLOCK = 4096


class FramesAPI:
    """The read API shared by datasets, store versions and views (see the module docstring)."""

    _present: set[str]  # names of the spec arrays this collection holds

    # -- supplied by subclasses ------------------------------------------------

    def __len__(self) -> int:
        raise NotImplementedError

    @property
    def metadata(self) -> dict[str, Any]:
        """The metadata object of spec §8 (name, license, authors, ``calculations``, ``sources``, ...)."""
        raise NotImplementedError

    @property
    def n_atoms_total(self) -> int:
        """Number of atoms over all frames."""
        raise NotImplementedError

    def frame(self, i: int) -> Frame:
        """Frame ``i`` (negative counts from the end)."""
        raise NotImplementedError

    def array(self, name: str, start: int | None = None, stop: int | None = None) -> np.ndarray:
        """Spec array ``name`` for frames ``start:stop``: per-frame rows, or the atoms of those frames."""
        raise NotImplementedError

    def _gather(self, names: Sequence[str], idx: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Arrays ``names`` for frames ``idx`` (in that order, repeats allowed) and their atom counts.

        Per-frame arrays have one row per entry of ``idx``; per-atom arrays are
        the frames' atoms concatenated in ``idx`` order.
        """
        raise NotImplementedError

    # -- derived -----------------------------------------------------------------

    @property
    def arrays_present(self) -> list[str]:
        """Present arrays, in the spec's order."""
        return [a.name for a in spec.ARRAYS if a.name in self._present]

    def has(self, name: str) -> bool:
        """Whether spec array ``name`` is stored (optional arrays may be absent)."""
        return name in self._present

    def _indices(self, indices: Iterable[int] | np.ndarray) -> np.ndarray:
        """Indices as int64, negatives counted from the end, range-checked."""
        idx = np.asarray(indices if isinstance(indices, np.ndarray) else list(indices), dtype=np.int64).reshape(-1)
        n = len(self)
        if idx.size:
            idx = np.where(idx < 0, idx + n, idx)
            bad = (idx < 0) | (idx >= n)
            if bad.any():
                raise IndexError(f"frame {int(idx[np.argmax(bad)])} out of range for a dataset of {n} frames")
        return idx

    def __getitem__(self, index: IndexLike) -> Any:
        """``ds[i]`` → :class:`Frame`; ``ds[a:b]`` or ``ds[[i, j, ...]]`` → list of frames."""
        if isinstance(index, (int, np.integer)):
            return self.frame(int(index))
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step == 1:
                return list(self.iter_frames(start, stop))
            return self.frames(range(start, stop, step))
        return self.frames(index)

    def __iter__(self) -> Iterator[Frame]:
        return self.iter_frames()

    def iter_frames(self, start: int = 0, stop: int | None = None) -> Iterator[Frame]:
        """Frames ``start:stop`` in order, read in blocks (one read per array per block)."""
        stop = len(self) if stop is None else min(stop, len(self))
        for b0 in range(start, stop, _ITER_BLOCK):
            yield from self.frames(np.arange(b0, min(stop, b0 + _ITER_BLOCK)))

    def arrays(self, names: Sequence[str] | None = None, start: int | None = None, stop: int | None = None) -> dict[str, np.ndarray]:
        """Several arrays for one frame range (all present ones when ``names`` is None)."""
        names = self.arrays_present if names is None else list(names)
        return {n: self.array(n, start, stop) for n in names}

    # -- minibatches -----------------------------------------------------------------

    def frames(self, indices: Iterable[int] | np.ndarray) -> list[Frame]:
        """The frames at ``indices`` (any order, repeats allowed) with one sorted read per array."""
        idx = self._indices(indices)
        names = self.arrays_present
        got, counts = self._gather(names, idx)
        return list(frames_from_arrays(got, counts))

    def batch(self, indices: Iterable[int] | np.ndarray, *, arrays: Sequence[str] | None = None, pad: bool = False) -> "Batch":
        """A minibatch for a training loop: the frames at ``indices`` as a few numpy arrays.

        ``arrays`` names the spec arrays to load (default: numbers, positions,
        cell, pbc, energy, and forces/stress when stored).  Per-frame arrays get
        one row per index, in the order given.  Per-atom arrays are concatenated
        (``batch.ptr[j]:batch.ptr[j+1]`` are frame j's atoms, ``batch.batch``
        the frame of each atom, as in PyTorch Geometric) or, with ``pad=True``,
        padded to ``(B, max_atoms, ...)`` with zeros and a boolean ``mask``.
        Reads are sorted underneath; units are those of spec §2 (Å, eV, eV/Å, eV/Å³).
        """
        from mlds.format.batch import Batch, default_batch_arrays

        idx = self._indices(indices)
        names = default_batch_arrays(self) if arrays is None else list(arrays)
        for name in names:
            if name not in spec.BY_NAME:
                raise KeyError(f"unknown array {name!r}; spec arrays: {', '.join(spec.BY_NAME)}")
            if name not in self._present:
                raise KeyError(f"array {name!r} is not present in this dataset")
        got, counts = self._gather(names, idx)
        return Batch.build(idx, got, counts, pad=pad)

    # -- selections ----------------------------------------------------------------------

    def subset(self, indices: Iterable[int] | np.ndarray) -> "DatasetView":
        """A view of the frames at ``indices``, in that order (each frame at most once).

        The view reads lazily from this dataset, pickles, and writes out as a
        valid dataset with the provenance of its frames (``view.copy_to(path)``
        or ``mlds.write(path, view)``).
        """
        from mlds.format.view import DatasetView

        idx = self._indices(indices)
        if np.unique(idx).size != idx.size:
            vals, counts = np.unique(idx, return_counts=True)
            raise ValueError(f"indices repeat frame {int(vals[np.argmax(counts > 1)])}: a subset holds each frame once "
                             f"(use ds.batch(...) to sample with replacement)")
        return DatasetView(self, idx)

    def select(
        self,
        *,
        elements: Iterable[str | int] | None = None,
        energy_per_atom: tuple[float | None, float | None] | None = None,
        n_atoms: tuple[int | None, int | None] | None = None,
        indices: Iterable[int] | np.ndarray | None = None,
    ) -> "DatasetView":
        """A view of the frames meeting every criterion given, in dataset order.

        ``elements``: frames made only of these elements (symbols or atomic
        numbers), e.g. ``["Si", "O"]`` keeps Si, O and SiO2 frames.
        ``energy_per_atom``: ``(low, high)`` in eV/atom, inclusive, either end
        ``None`` for open (frames with unknown energy are dropped).
        ``n_atoms``: ``(low, high)`` inclusive.  ``indices``: only among these frames.
        """
        from mlds.format.view import DatasetView

        n = len(self)
        keep = np.ones(n, dtype=bool)
        if indices is not None:
            only = np.zeros(n, dtype=bool)
            only[self._indices(indices)] = True
            keep &= only
        allowed = _element_mask(elements) if elements is not None else None
        for b0 in range(0, n, 65536):
            b1 = min(n, b0 + 65536)
            part = keep[b0:b1]
            if not part.any():
                continue
            counts = self.array("n_atoms", b0, b1)
            if n_atoms is not None:
                lo, hi = n_atoms
                part &= (counts >= (lo if lo is not None else 0)) & (counts <= (hi if hi is not None else np.iinfo(np.int64).max))
            if energy_per_atom is not None:
                lo, hi = energy_per_atom
                epa = self.array("energy", b0, b1) / np.maximum(counts, 1)
                ok = np.isfinite(epa)
                if lo is not None:
                    ok &= epa >= lo
                if hi is not None:
                    ok &= epa <= hi
                part &= ok
            if allowed is not None:
                foreign = ~allowed[self.array("numbers", b0, b1)]
                starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
                part &= ~(np.add.reduceat(foreign, starts) > 0) if foreign.size else True
        return DatasetView(self, np.flatnonzero(keep))

    # -- conversions and copies -----------------------------------------------------------

    def get_atoms(self, index: IndexLike = slice(None)) -> Any:
        """``ase.Atoms`` (or a list of them) with results on a SinglePointCalculator."""
        got = self[index]
        return [f.to_atoms() for f in got] if isinstance(got, list) else got.to_atoms()

    def iter_atoms(self) -> Iterator[Any]:
        """Every frame as ``ase.Atoms``, in order."""
        for f in self.iter_frames():
            yield f.to_atoms()

    def summary(self) -> dict[str, Any]:
        """Counts, elements, formulas, energy and force ranges (what ``mlds info`` shows)."""
        from mlds.format.summary import summarize

        return summarize(self)

    def copy_to(self, path: str | os.PathLike, **options: Any) -> Path:
        """Copy losslessly into a new dataset (HDF5 <-> Zarr by the target's suffix)."""
        from mlds.format.writer import create

        with create(path, self.metadata, **options) as w:
            w.append(self.iter_frames())
        return Path(path)

    def close(self) -> None:
        """Release file handles (a closed dataset re-opens on next use)."""

    def __enter__(self) -> "FramesAPI":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _element_mask(elements: Iterable[str | int]) -> np.ndarray:
    from mlds.elements import atomic_numbers

    allowed = np.zeros(256, dtype=bool)
    for el in elements:
        z = el if isinstance(el, (int, np.integer)) else atomic_numbers.get(str(el))
        if z is None or not 1 <= int(z) <= 118:
            raise ValueError(f"unknown element {el!r}")
        allowed[int(z)] = True
    return allowed


def frames_from_arrays(cols: dict[str, np.ndarray], counts: np.ndarray) -> Iterator[Frame]:
    """Frames from gathered arrays: per-frame rows and per-atom rows concatenated frame by frame."""
    counts_l = counts.tolist()
    ends = np.cumsum(counts).tolist()
    per_atom = [k for k in _PER_ATOM_FIELDS if k in cols]
    per_frame = [k for k in ("cell", "stress") if k in cols]
    floats = [(k, cols[k].tolist()) for k in ("energy", "energy_sigma0", "total_charge") if k in cols]
    ints = [(k, cols[k].tolist()) for k in ("source", "calculation") if k in cols]
    conv = cols["converged"].astype(bool).tolist() if "converged" in cols else None
    steps = cols["source_step"].tolist() if "source_step" in cols else None
    pbc = cols["pbc"].astype(bool) if "pbc" in cols else None
    # spec 1.1 labels -> Frame.info, decoded per column (None: not set for that frame)
    label_vals = [(k, [labels.info_value(k, v) for v in (cols[k] if k in labels.TEXT_LABELS else cols[k].tolist())])
                  for k in labels.NAMES if k in cols]
    trusted = Frame._trusted
    for j, (c, a1) in enumerate(zip(counts_l, ends)):
        a0 = a1 - c
        fields: dict[str, Any] = {k: cols[k][a0:a1] for k in per_atom}
        for k in per_frame:
            fields[k] = cols[k][j]
        if pbc is not None:
            fields["pbc"] = pbc[j]
        for k, vals in floats:
            fields[k] = vals[j]
        for k, vals in ints:
            fields[k] = vals[j]
        if conv is not None:
            fields["converged"] = conv[j]
        info: dict[str, Any] = {}
        if steps is not None and steps[j] >= 0:
            info["step"] = steps[j]
        for k, vals in label_vals:
            v = vals[j]
            if v is not None:
                info[k] = v
        if info:
            fields["info"] = info
        yield trusted(**fields)

