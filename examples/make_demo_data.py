"""Regenerate the small demo datasets bundled in ``mlds/examples/``.

They are labelled with ASE's EMT potential, not DFT: tiny, fast to make, and
honest about it (the metadata says code "ASE-EMT").  Real DFT data enters
through the converters (`mlds convert`).
"""

from pathlib import Path

import numpy as np
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.io import write

OUT = Path(__file__).resolve().parent.parent / "mlds" / "examples"


def frames(symbols_cell, n, seed):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        atoms = symbols_cell()
        strain = np.eye(3) + rng.normal(scale=0.01, size=(3, 3))
        atoms.set_cell(atoms.cell @ strain, scale_atoms=True)
        atoms.rattle(0.05, seed=int(rng.integers(1 << 30)))
        atoms.calc = EMT()
        atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
        out.append(atoms)
    return out


def cu3au():
    a = bulk("Cu", "fcc", a=3.75, cubic=True) * (2, 2, 2)
    a.numbers[::4] = 79
    return a


def nial():
    a = bulk("NiAl", "cesiumchloride", a=2.88) * (3, 3, 2)
    return a


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    write(OUT / "cu3au_emt.extxyz", frames(cu3au, 24, 1), format="extxyz")
    write(OUT / "nial_emt.extxyz", frames(nial, 16, 2), format="extxyz")
    print("wrote", sorted(p.name for p in OUT.glob("*.extxyz")))
