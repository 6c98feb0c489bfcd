"""The chemical elements' symbols, by atomic number (index 0: the placeholder "X", as ``ase.data``).

The same table as ``ase.data.chemical_symbols``, kept here (and used by all of mlds) so that code which
only needs symbols and numbers (readers, summaries) does not import the ``ase`` package: importing ``ase.data`` runs
``ase/__init__`` (Atoms, Cell, units ...), tens of milliseconds of every ``mlds convert`` process
(issue 12).  tests/io/test_elements.py checks it against ASE's.
"""

from __future__ import annotations

chemical_symbols = (
    "X", "H", "He", "Li", "Be", "B", "C", "N", "O", "F", "Ne", "Na", "Mg", "Al", "Si", "P", "S", "Cl", "Ar",
    "K", "Ca", "Sc", "Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu", "Zn", "Ga", "Ge", "As", "Se", "Br", "Kr",
    "Rb", "Sr", "Y", "Zr", "Nb", "Mo", "Tc", "Ru", "Rh", "Pd", "Ag", "Cd", "In", "Sn", "Sb", "Te", "I", "Xe",
    "Cs", "Ba", "La", "Ce", "Pr", "Nd", "Pm", "Sm", "Eu", "Gd", "Tb", "Dy", "Ho", "Er", "Tm", "Yb", "Lu", "Hf",
    "Ta", "W", "Re", "Os", "Ir", "Pt", "Au", "Hg", "Tl", "Pb", "Bi", "Po", "At", "Rn", "Fr", "Ra", "Ac", "Th",
    "Pa", "U", "Np", "Pu", "Am", "Cm", "Bk", "Cf", "Es", "Fm", "Md", "No", "Lr", "Rf", "Db", "Sg", "Bh", "Hs",
    "Mt", "Ds", "Rg", "Cn", "Nh", "Fl", "Mc", "Lv", "Ts", "Og",
)
atomic_numbers = {s: z for z, s in enumerate(chemical_symbols)}
