"""One labelled configuration, the unit every reader yields and every writer takes.

Arrays follow the units and sign conventions of ``spec/format-v1.md``: positions
and cell in Å (cell rows are lattice vectors), energies in eV, forces in eV/Å,
stress in eV/Å³ with the ASE sign (positive = tensile).  Missing optional
values are ``None`` (whole array absent) or NaN (value unknown).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(repr=False)
class Frame:
    """One labelled atomic configuration (spec/format-v1.md §2 units and signs).

    Attributes (n = number of atoms):

    - ``numbers``: (n,) uint8 atomic numbers Z.
    - ``positions``: (n, 3) float64 Cartesian positions in Å (not necessarily wrapped).
    - ``cell``: (3, 3) float64 in Å; **rows** are the lattice vectors a, b, c
      (all zeros for a non-periodic frame).  ``pbc``: (3,) bool.
    - ``energy``: float, eV: the total energy consistent with the forces (for
      smeared occupations the free energy, VASP ``TOTEN``); not per atom, no +PV.
      NaN when unknown.
    - ``forces``: (n, 3) float64 in eV/Å, F = -dE/dr; None when absent.
    - ``stress``: (3, 3) float64 in eV/Å³, ASE sign: **positive = tensile**; the
      pressure is -trace/3 (VASP/QE print -stress in kbar).  Virial = -stress x volume.
    - ``energy_sigma0``: eV, VASP ``energy(sigma->0)`` when known (NaN otherwise).
    - ``charges``: (n,) partial charges in e; ``magmoms``: (n,) collinear moments in μB.
    - ``total_charge``: net charge of the frame in e (NaN unknown).
    - ``converged``: SCF converged for this step.
    - ``source`` / ``calculation``: indices into the dataset's ``metadata["sources"]``
      / ``metadata["calculations"]`` tables (-1 unknown).
    - ``info``: reader extras, e.g. ``{"step": k}`` (ionic step in the source file).

    ``Frame.from_atoms(atoms)`` and ``frame.to_atoms()`` convert to and from
    ``ase.Atoms`` (results on a SinglePointCalculator; stress in Voigt order).
    """

    numbers: np.ndarray                     # (n,) uint8 atomic numbers
    positions: np.ndarray                   # (n, 3) float64, Å, Cartesian
    cell: np.ndarray = field(default_factory=lambda: np.zeros((3, 3)))  # (3, 3) Å
    pbc: np.ndarray = field(default_factory=lambda: np.zeros(3, dtype=bool))
    energy: float = float("nan")            # eV, consistent with forces
    forces: np.ndarray | None = None        # (n, 3) eV/Å
    stress: np.ndarray | None = None        # (3, 3) eV/Å³, ASE sign
    energy_sigma0: float = float("nan")     # eV, VASP energy(sigma->0) when known
    charges: np.ndarray | None = None       # (n,) e
    magmoms: np.ndarray | None = None       # (n,) μB
    total_charge: float = float("nan")      # e
    converged: bool = True                  # SCF converged for this step
    source: int = -1                        # index into the provenance table (-1: unknown)
    calculation: int = -1                   # index into the calculation-settings table (-1: unknown)
    info: dict[str, Any] = field(default_factory=dict)  # reader extras (step index, ...)

    def __post_init__(self) -> None:
        self.numbers = np.asarray(self.numbers, dtype=np.uint8).reshape(-1)
        n = self.numbers.shape[0]
        self.positions = np.asarray(self.positions, dtype=np.float64).reshape(n, 3)
        self.cell = np.asarray(self.cell, dtype=np.float64).reshape(3, 3)
        self.pbc = np.asarray(self.pbc, dtype=bool).reshape(3)
        self.energy = float(self.energy)
        self.energy_sigma0 = float(self.energy_sigma0)
        self.total_charge = float(self.total_charge)
        if self.forces is not None:
            self.forces = np.asarray(self.forces, dtype=np.float64).reshape(n, 3)
        if self.stress is not None:
            self.stress = _as_stress_matrix(self.stress)
        if self.charges is not None:
            self.charges = np.asarray(self.charges, dtype=np.float64).reshape(n)
        if self.magmoms is not None:
            self.magmoms = np.asarray(self.magmoms, dtype=np.float64).reshape(n)

    @classmethod
    def _trusted(cls, **fields: Any) -> "Frame":
        """Build without conversions, for readers whose arrays already have spec dtypes.

        ``__post_init__`` costs ~10 µs per frame; on the hot path of reading a
        dataset that is most of the time, so the dataset reader skips it.
        """
        frame = object.__new__(cls)
        frame.__dict__.update(_DEFAULTS)
        frame.__dict__["info"] = {}
        frame.__dict__.update(fields)
        return frame

    @classmethod
    def _adopt(cls, fields: dict[str, Any]) -> "Frame":
        """Like :meth:`_trusted`, taking ownership of a dict made by :func:`blank_fields` (no copies)."""
        frame = object.__new__(cls)
        frame.__dict__ = fields
        return frame

    @property
    def n_atoms(self) -> int:
        """Number of atoms."""
        return int(self.numbers.shape[0])

    @property
    def formula(self) -> str:
        """Hill formula, e.g. ``"O2Si"`` or ``"CH4"``."""
        from mlds.format.summary import hill_formula

        return hill_formula(self.numbers)

    def __repr__(self) -> str:
        parts = [f"{self.formula} ({self.n_atoms} atoms)"]
        parts.append("E=unknown" if np.isnan(self.energy) else f"E={self.energy:.6g} eV")
        labels = [k for k in ("forces", "stress", "charges", "magmoms") if getattr(self, k) is not None]
        if labels:
            parts.append("+" + ",".join(labels))
        parts.append("pbc=" + "".join("T" if p else "F" for p in np.asarray(self.pbc).reshape(-1)))
        if not self.converged:
            parts.append("unconverged")
        return f"<mlds.Frame {' '.join(parts)}>"

    @property
    def symbols(self) -> list[str]:
        """Chemical symbols, one per atom."""
        from mlds.elements import chemical_symbols

        return [chemical_symbols[z] for z in self.numbers]

    def to_atoms(self):
        """An ``ase.Atoms`` with energy/forces/stress on a SinglePointCalculator."""
        from mlds.format.ase_bridge import frame_to_atoms

        return frame_to_atoms(self)

    @classmethod
    def from_atoms(cls, atoms, **kw: Any) -> "Frame":
        from mlds.format.ase_bridge import atoms_to_frame

        return atoms_to_frame(atoms, **kw)


_DEFAULTS: dict[str, Any] = dict(
    energy=float("nan"), forces=None, stress=None, energy_sigma0=float("nan"), charges=None,
    magmoms=None, total_charge=float("nan"), converged=True, source=-1, calculation=-1,
)


def blank_fields() -> dict[str, Any]:
    """Every field at its default, for readers that fill in what they have and :meth:`Frame._adopt` it."""
    fields = _DEFAULTS.copy()
    fields["info"] = {}
    return fields


def _as_stress_matrix(value: Any) -> np.ndarray:
    """Accept a 3x3 matrix or ASE's Voigt 6-vector (xx, yy, zz, yz, xz, xy)."""
    arr = np.asarray(value, dtype=np.float64)
    if arr.shape == (6,):
        xx, yy, zz, yz, xz, xy = arr
        arr = np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])
    return arr.reshape(3, 3)


class FrameBatch(list):
    """Frames a reader made together, with the arrays they were cut from (issue 12: convert hashes
    them from these in a few whole-array steps instead of gathering them frame by frame again).

    A list of :class:`Frame`; a consumer that does not know batches iterates it.  Frame ``k`` is
    exactly ``numbers``, ``positions[k]``, ``cells[k]``, ``energies[k]``, ``forces[k]`` and
    ``stresses[k]`` (those two None when the frames have none) with pbc all True."""

    __slots__ = ("numbers", "positions", "cells", "energies", "forces", "stresses")

    def __init__(self, frames: list, numbers: np.ndarray, positions: np.ndarray, cells: np.ndarray,
                 energies: list, forces: np.ndarray | None, stresses: np.ndarray | None) -> None:
        super().__init__(frames)
        self.numbers, self.positions, self.cells, self.energies = numbers, positions, cells, energies
        self.forces, self.stresses = forces, stresses

    def digests(self) -> list:
        """``bytes.fromhex(frame_hash(f))`` of each frame (None where the caller must hash it)."""
        from mlds.format.framehash import array_digests

        k = len(self)
        n = self.numbers.shape[0]
        return array_digests(np.broadcast_to(self.numbers, (k, n)), self.positions.reshape(k, 3 * n),
                             self.cells.reshape(k, 9), self.energies, np.ones((k, 3), dtype=bool),
                             None if self.forces is None else self.forces.reshape(k, 3 * n),
                             None if self.stresses is None else self.stresses.reshape(k, 9))
