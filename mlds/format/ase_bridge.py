"""Conversion between :class:`Frame` and ``ase.Atoms``.

Energy, forces and stress travel on a ``SinglePointCalculator`` so that
``atoms.get_potential_energy()`` and friends work as ASE users expect.  Our
``energy`` is the force-consistent one (VASP TOTEN), so it is given to ASE as
both ``energy`` and ``free_energy``; ``energy_sigma0`` goes to ``atoms.info``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mlds.format.frame import Frame

_VOIGT = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))


def stress_to_voigt(stress: np.ndarray) -> np.ndarray:
    """3x3 stress to ASE's Voigt order (xx, yy, zz, yz, xz, xy)."""
    return np.array([stress[i, j] for i, j in _VOIGT])


def frame_to_atoms(frame: Frame):
    """An ``ase.Atoms`` for ``frame``: energy, forces and stress (Voigt) on a SinglePointCalculator."""
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator

    atoms = Atoms(numbers=frame.numbers.astype(int), positions=frame.positions, cell=frame.cell, pbc=frame.pbc)
    if frame.charges is not None:
        atoms.set_initial_charges(frame.charges)
    if frame.magmoms is not None:
        atoms.set_initial_magnetic_moments(frame.magmoms)
    results: dict[str, Any] = {}
    if not math.isnan(frame.energy):
        results["energy"] = frame.energy
        results["free_energy"] = frame.energy
    if frame.forces is not None and not np.isnan(frame.forces).all():
        results["forces"] = frame.forces.copy()
    if frame.stress is not None and not np.isnan(frame.stress).all():
        results["stress"] = stress_to_voigt(frame.stress)
    if results:
        atoms.calc = SinglePointCalculator(atoms, **results)
    if not math.isnan(frame.energy_sigma0):
        atoms.info["energy_sigma0"] = frame.energy_sigma0
    if not math.isnan(frame.total_charge):
        atoms.info["total_charge"] = frame.total_charge
    if not frame.converged:
        atoms.info["converged"] = False
    for key, value in frame.info.items():
        atoms.info.setdefault(key, value)
    return atoms


def atoms_to_frame(atoms, **overrides: Any) -> Frame:
    """Read results from the attached calculator when present (no recomputation)."""
    results: dict[str, Any] = {}
    calc = atoms.calc
    if calc is not None:
        results = dict(getattr(calc, "results", {}) or {})
    energy = results.get("free_energy", results.get("energy", float("nan")))
    forces = results.get("forces")
    stress = results.get("stress")
    charges = atoms.get_initial_charges() if atoms.has("initial_charges") else None
    # collinear moments: set on the atoms, or computed (an extxyz `magmoms` column lands on the calculator)
    magmoms = atoms.get_initial_magnetic_moments() if atoms.has("initial_magmoms") else results.get("magmoms")
    if magmoms is not None and np.ndim(magmoms) != 1:
        magmoms = None  # non-collinear (n, 3): not representable in the spec's collinear array
    info = dict(atoms.info)
    kw: dict[str, Any] = dict(
        numbers=atoms.numbers,
        positions=atoms.positions,
        cell=np.asarray(atoms.cell),
        pbc=atoms.pbc,
        energy=float("nan") if energy is None else energy,
        forces=forces,
        stress=stress,
        charges=charges,
        magmoms=magmoms,
        energy_sigma0=info.pop("energy_sigma0", float("nan")),
        total_charge=info.pop("total_charge", float("nan")),
        converged=bool(info.pop("converged", True)),
        info=info,
    )
    kw.update(overrides)
    return Frame(**kw)
