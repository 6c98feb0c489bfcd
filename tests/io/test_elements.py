"""mlds.elements: the element table the VASP readers use instead of importing ase (issue 12)."""

from __future__ import annotations

import subprocess
import sys

from ase.data import atomic_numbers, chemical_symbols

from mlds.elements import atomic_numbers as our_numbers
from mlds.elements import chemical_symbols as our_symbols


def test_same_table_as_ase():
    assert list(our_symbols) == list(chemical_symbols)
    assert our_numbers == atomic_numbers


def test_outcar_reader_does_not_import_ase():
    code = ("import sys, mlds.io.vasp_outcar, mlds.io._vasp_common; "
            "print(sorted(m for m in sys.modules if m == 'ase' or m.startswith('ase.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
