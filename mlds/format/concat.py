"""Several datasets (a store version's shards) read as one."""

from __future__ import annotations

from typing import Any, Iterator, Sequence

import numpy as np

from mlds.format import columns as colmod
from mlds.format import spec
from mlds.format.dataset import Dataset
from mlds.format.frame import Frame
from mlds.format.frames_api import FramesAPI


class ConcatDataset(FramesAPI):
    """The read API of :class:`Dataset` over a list of datasets, end to end.

    Optional arrays present in only some parts read as the spec's missing
    value for the others, exactly as if the parts had been one file.
    """

    def __init__(self, parts: Sequence[Dataset], metadata: dict[str, Any] | None = None) -> None:
        self.parts = list(parts)
        self._metadata = metadata if metadata is not None else (self.parts[0].metadata if self.parts else {})
        self._starts = np.cumsum([0] + [len(p) for p in self.parts])
        self._present = set().union(*(set(p.arrays_present) for p in self.parts)) if self.parts else {a.name for a in spec.REQUIRED}

    def __len__(self) -> int:
        return int(self._starts[-1])

    @property
    def metadata(self) -> dict[str, Any]:
        """The version's metadata (from the manifest: the shards carry no provenance tables)."""
        return self._metadata

    @property
    def n_atoms_total(self) -> int:
        """Number of atoms over all parts."""
        return sum(p.n_atoms_total for p in self.parts)

    def _locate(self, i: int) -> tuple[Dataset, int]:
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"frame {i} out of range for a dataset of {n} frames")
        k = int(np.searchsorted(self._starts, i, side="right") - 1)
        return self.parts[k], i - int(self._starts[k])

    def frame(self, i: int) -> Frame:
        """Frame ``i`` of the concatenation (negative counts from the end)."""
        part, j = self._locate(i)
        return part.frame(j)

    def iter_frames(self, start: int = 0, stop: int | None = None, **kw: Any) -> Iterator[Frame]:
        """Frames ``start:stop`` in order, each part read in blocks."""
        stop = len(self) if stop is None else min(stop, len(self))
        for k, part in enumerate(self.parts):
            p0, p1 = int(self._starts[k]), int(self._starts[k + 1])
            lo, hi = max(start, p0), min(stop, p1)
            if lo < hi:
                yield from part.iter_frames(lo - p0, hi - p0, **kw)

    def array(self, name: str, start: int | None = None, stop: int | None = None) -> np.ndarray:
        """Array ``name`` for frames ``start:stop``; parts lacking an optional array give its missing value."""
        a = spec.BY_NAME[name]
        if name not in self._present:
            raise KeyError(f"array {name!r} is not present")
        start, stop, _ = slice(start, stop).indices(len(self))
        pieces = []
        for k, part in enumerate(self.parts):
            p0, p1 = int(self._starts[k]), int(self._starts[k + 1])
            lo, hi = max(start, p0), min(stop, p1)
            if lo >= hi:
                continue
            if part.has(name):
                piece = part.array(name, lo - p0, hi - p0)
            else:
                rows = hi - lo if a.group == spec.FRAMES else int(part.array("n_atoms", lo - p0, hi - p0).sum())
                piece = np.full((rows, *a.tail), a.missing, dtype=a.dtype)
            if name == "atom_offset":  # offsets count from the start of the whole concatenation
                piece = piece + sum(p.n_atoms_total for p in self.parts[:k])
            pieces.append(piece)
        if not pieces:
            return np.empty((0, *a.tail), dtype=a.dtype)
        return np.concatenate(pieces)

    def _gather(self, names: Sequence[str], idx: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Each part gathers its own frames; the pieces are put back in the order of ``idx``."""
        which = np.searchsorted(self._starts, idx, side="right") - 1 if idx.size else idx
        groups = [(int(k), np.flatnonzero(which == k)) for k in np.unique(which)]
        pieces = []
        counts = np.empty(idx.size, dtype=np.int64)
        for k, grp in groups:
            part = self.parts[k]
            have = [n for n in names if part.has(n)]
            got, c = part._gather(have, idx[grp] - int(self._starts[k]))
            counts[grp] = c
            pieces.append((k, grp, got, c))
        ptr = np.concatenate([[0], np.cumsum(counts)])
        out: dict[str, np.ndarray] = {}
        for name in names:
            a = spec.BY_NAME[name]
            size = idx.size if a.group == spec.FRAMES else int(ptr[-1])
            res = np.full((size, *a.tail), a.missing, dtype=a.dtype)
            for k, grp, got, c in pieces:
                piece = got.get(name)
                if piece is None:
                    continue  # not stored in this part: the spec's missing value
                if name == "atom_offset":
                    piece = piece + sum(p.n_atoms_total for p in self.parts[:k])
                if a.group == spec.FRAMES:
                    res[grp] = piece
                else:
                    res[colmod.ranges_to_rows(ptr[grp], c)] = piece
            out[name] = res
        return out, counts

    def close(self) -> None:
        """Close every part."""
        for p in self.parts:
            p.close()

    def __repr__(self) -> str:
        return f"<mlds.ConcatDataset {len(self.parts)} parts: {len(self):,} frames, arrays {', '.join(self.arrays_present)}>"
