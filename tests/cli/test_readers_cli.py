"""Reader items of issue 8 as a user meets them on the command line: a truncated-counts OUTCAR header,
n2p2 units given separately, VASP stress with the spec's CODATA 2018 constant.

Expected numbers come from the files' own text, never typed in.
"""

from __future__ import annotations

import re
import shutil

import numpy as np

import mlds
from tests.cli.conftest import no_traceback
from tests.conftest import data_file
from tests.io.test_vasp_outcar import _longit_like

KB = 0.1 / 160.2176634   # 1 kB in eV/Å³ with the spec's CODATA 2018 e (ase.units.GPa is CODATA 2014)
CU2S = "n2p2/examples/nnp-train/Cu2S_PBE/input.data"
H2O = "dpdata/tests/poscars/"


def test_reader_refusals_units_and_stress_through_the_cli(mlds_many, tmp_path):
    folder, counts, nions_line, _ = _longit_like(tmp_path, keep=1)      # header cut to fewer counts than types
    recover = tmp_path / "recover"
    shutil.copytree(folder, recover)
    shutil.copy(data_file(H2O + "vasprun.h2o.md.10.xml"), recover / "vasprun.xml")
    cu2s = data_file(CU2S)
    outcar = data_file(H2O + "OUTCAR.h2o.md.10")
    refused, recovered, no_units, half_units, mixed, vasp = mlds_many(
        ["import", folder / "OUTCAR", "-o", "refused.h5"],
        ["import", recover / "OUTCAR", "-o", "recovered.h5", "-q"],
        ["import", cu2s, "-o", "none.h5"],
        ["import", cu2s, "-o", "half.h5", "--length-unit", "angstrom"],
        ["import", cu2s, "-o", "mixed.h5", "--length-unit", "angstrom", "--energy-unit", "hartree", "-q"],
        ["import", outcar, "-o", "vasp.h5", "-q"],
    )
    # the refusal cites the real NIONS line and says how to recover; the recovery reads vasprun.xml beside it
    assert refused.code == 2 and no_traceback(refused) and len(refused.err_lines) == 1, refused
    assert f"NIONS = {sum(counts)} (line {nions_line})" in refused.err and "NIONS = 3" not in refused.err
    assert "vasprun.xml" in refused.err and "POSCAR" in refused.err
    assert recovered.code == 0, recovered
    with mlds.open(tmp_path / "recovered.h5") as ds, mlds.open(tmp_path / "vasp.h5") as intact:
        assert len(ds) == len(intact) > 0
        np.testing.assert_array_equal(ds.array("forces"), intact.array("forces"))
    # n2p2: units are never guessed; length and energy may be given separately and are recorded
    for r, what in ((no_units, "n2p2 files carry no units"), (half_units, "energy unit is missing")):
        assert r.code == 2 and what in r.err and len(r.err_lines) == 1 and no_traceback(r), r
    assert not (tmp_path / "none.h5").exists() and not (tmp_path / "half.h5").exists()
    assert mixed.code == 0, mixed
    with mlds.open(tmp_path / "mixed.h5") as ds:
        assert ds.metadata["sources"][0]["units"] == {"length": "angstrom", "energy": "hartree"}
    # VASP stress: -(kB line) x 0.1 GPa with the spec's constant, ASE sign
    assert vasp.code == 0, vasp
    kb = [[float(x) for x in m.group(1).split()] for m in re.finditer(r"^\s*in kB\s+(.*)$", outcar.read_text(), re.M)]
    xx, yy, zz, xy, yz, zx = np.array(kb).T
    expected = -np.stack([np.stack([xx, xy, zx], -1), np.stack([xy, yy, yz], -1), np.stack([zx, yz, zz], -1)], -2) * KB
    with mlds.open(tmp_path / "vasp.h5") as ds:
        stress = ds.array("stress")
    assert len(stress) == len(expected)
    np.testing.assert_allclose(stress, expected, rtol=1e-14, atol=0)
