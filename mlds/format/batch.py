"""A minibatch of frames as arrays, in the two layouts MLIP training code uses.

*Concatenated* (the default; PyTorch Geometric, MACE, NequIP, SchNetPack):
per-atom arrays of all frames end to end, with ``ptr`` (frame j's atoms are
rows ``ptr[j]:ptr[j+1]``) and ``batch`` (frame of each atom).  *Padded*
(``pad=True``; dense models, JAX): per-atom arrays shaped ``(B, max_atoms,
...)`` filled with zeros past each frame's atoms, and a boolean ``mask``.
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping

import numpy as np

from mlds.format import spec

DEFAULT_ARRAYS = ("numbers", "positions", "cell", "pbc", "energy", "forces", "stress")


def default_batch_arrays(ds: Any) -> list[str]:
    """The arrays a batch loads unless told: numbers, positions, cell, pbc, energy, forces/stress if stored."""
    return [n for n in DEFAULT_ARRAYS if ds.has(n)]


class Batch(Mapping[str, np.ndarray]):
    """Arrays for a minibatch (a read-only mapping; keys are also attributes: ``b.positions``).

    Always present: ``indices`` (B,) the dataset frames, in the order asked;
    ``n_atoms`` (B,); the requested spec arrays (units of spec §2: Å, eV,
    eV/Å, eV/Å³ with positive = tensile; ``pbc`` as bool).  Concatenated layout
    adds ``ptr`` (B+1,) and ``batch`` (N,); padded adds ``mask`` (B, max_atoms).
    """

    def __init__(self, arrays: dict[str, np.ndarray], padded: bool) -> None:
        self._arrays = arrays
        self.padded = padded

    @classmethod
    def build(cls, indices: np.ndarray, got: dict[str, np.ndarray], counts: np.ndarray, *, pad: bool) -> "Batch":
        counts = np.asarray(counts, dtype=np.int64)
        out: dict[str, np.ndarray] = {"indices": indices, "n_atoms": counts}
        per_atom = [k for k in got if spec.BY_NAME[k].group == spec.ATOMS]
        for k, v in got.items():
            if k not in per_atom:
                out[k] = v.astype(bool) if k in ("pbc", "converged") else v
        if not pad:
            ptr = np.zeros(counts.size + 1, dtype=np.int64)
            np.cumsum(counts, out=ptr[1:])
            out["ptr"] = ptr
            out["batch"] = np.repeat(np.arange(counts.size, dtype=np.int64), counts)
            for k in per_atom:
                out[k] = got[k]
        else:
            width = int(counts.max()) if counts.size else 0
            mask = np.arange(width)[None, :] < counts[:, None]
            out["mask"] = mask
            for k in per_atom:
                v = got[k]
                dense = np.zeros((counts.size, width, *v.shape[1:]), dtype=v.dtype)
                dense[mask] = v
                out[k] = dense
        return cls(out, pad)

    def __getitem__(self, key: str) -> np.ndarray:
        return self._arrays[key]

    def __getattr__(self, key: str) -> np.ndarray:
        try:
            return self.__dict__["_arrays"][key]
        except KeyError:
            raise AttributeError(key) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._arrays)

    def __len__(self) -> int:
        return len(self._arrays)

    @property
    def n_frames(self) -> int:
        """Number of frames in the batch (B)."""
        return int(self._arrays["indices"].size)

    def __repr__(self) -> str:
        layout = "padded" if self.padded else "concatenated"
        shapes = ", ".join(f"{k}{tuple(v.shape)}" for k, v in self._arrays.items() if k not in ("indices",))
        return f"<mlds.Batch {self.n_frames} frames, {int(self._arrays['n_atoms'].sum())} atoms, {layout}: {shapes}>"
