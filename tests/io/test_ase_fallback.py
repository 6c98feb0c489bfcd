"""The ASE fallback reader: whatever ase.io.iread returns, via atoms_to_frame; never auto-detected."""

from __future__ import annotations

import re
import warnings

import numpy as np

from mlds.io.ase_fallback import AseReader
from mlds.io.registry import detect, get_reader, open_reader
from tests.conftest import data_file as data_file

XYZ = "dpdata/tests/xyz/xyz_B5C7_novirials.xyz"
OUTCAR = "dpdata/tests/poscars/OUTCAR.h2o.md.10"


def test_sniff_is_always_false():
    path = data_file(XYZ)
    assert AseReader.sniff(path, path.read_bytes()[:65536]) is False
    assert detect(path).name != "ase"


def test_explicit_use_through_registry_reads_extxyz():
    path = data_file(XYZ)
    assert get_reader("ase") is AseReader
    frames = list(open_reader(path, "ase"))
    text = path.read_text()
    assert len(frames) == 1
    assert frames[0].energy == float(re.search(r"energy=(\S+)", text).group(1))
    assert frames[0].n_atoms == int(text.splitlines()[0])
    assert frames[0].forces is None         # ASE leaves the 'force' column in arrays: no format-specific fixes here


def test_reads_vasp_outcar_all_frames_with_ase_format_option():
    path = data_file(OUTCAR)
    reader = AseReader(path, ase_format="vasp-out")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frames = list(reader)
    text = path.read_text()
    toten = [float(v) for v in re.findall(r"free  energy\s+TOTEN\s+=\s+(\S+)", text)]
    assert len(frames) == 10 == reader.report.kept
    # atoms_to_frame prefers free_energy (= TOTEN) on the calculator
    np.testing.assert_allclose([f.energy for f in frames], toten[-len(frames):], rtol=1e-9)
    assert all(f.forces is not None and f.pbc.all() for f in frames)


def test_index_option():
    path = data_file(OUTCAR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frames = list(AseReader(path, ase_format="vasp-out", index="-1"))
    assert len(frames) == 1
