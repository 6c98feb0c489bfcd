"""What every readable collection of frames offers, written once.

:class:`~mlds.format.dataset.Dataset` (one file) and
:class:`~mlds.format.concat.ConcatDataset` (a store version's shards) supply
``__len__``, ``frame``, ``iter_frames``, ``array``, ``metadata`` and
``arrays_present``; indexing, ASE conversion, summaries and copies follow.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from mlds.format.frame import Frame


class FramesAPI:
    metadata: dict[str, Any]
    _present: set[str]  # names of the spec arrays this collection holds

    def __len__(self) -> int:
        raise NotImplementedError

    def frame(self, i: int) -> Frame:
        raise NotImplementedError

    def iter_frames(self, start: int = 0, stop: int | None = None) -> Iterator[Frame]:
        raise NotImplementedError

    def array(self, name: str, start: int | None = None, stop: int | None = None) -> np.ndarray:
        raise NotImplementedError

    @property
    def arrays_present(self) -> list[str]:
        """Present arrays, in the spec's order."""
        from mlds.format import spec

        return [a.name for a in spec.ARRAYS if a.name in self._present]

    def has(self, name: str) -> bool:
        return name in self._present

    def __getitem__(self, index: int | slice | Sequence[int] | np.ndarray) -> Frame | list[Frame]:
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step == 1:
                return list(self.iter_frames(start, stop))
            return [self.frame(i) for i in range(start, stop, step)]
        if isinstance(index, (int, np.integer)):
            return self.frame(int(index))
        return [self.frame(int(i)) for i in np.asarray(index).reshape(-1)]

    def __iter__(self) -> Iterator[Frame]:
        return self.iter_frames()

    def arrays(self, names: Sequence[str] | None = None, start: int | None = None, stop: int | None = None) -> dict[str, np.ndarray]:
        """Several arrays for one frame range (all present ones when ``names`` is None)."""
        names = self.arrays_present if names is None else list(names)
        return {n: self.array(n, start, stop) for n in names}

    def get_atoms(self, index: int | slice = slice(None)):
        """``ase.Atoms`` (or a list of them) with results on a SinglePointCalculator."""
        got = self[index]
        return [f.to_atoms() for f in got] if isinstance(got, list) else got.to_atoms()

    def iter_atoms(self) -> Iterator[Any]:
        for f in self.iter_frames():
            yield f.to_atoms()

    def summary(self) -> dict[str, Any]:
        from mlds.format.summary import summarize

        return summarize(self)

    def copy_to(self, path: str | os.PathLike, **options: Any) -> Path:
        """Copy losslessly into a new dataset (HDF5 <-> Zarr by the target's suffix)."""
        from mlds.format.writer import create

        with create(path, self.metadata, **options) as w:
            w.append(self.iter_frames())
        return Path(path)

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
