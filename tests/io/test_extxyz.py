"""extxyz reader/writer (through ASE) against the real QUIP/GAP-style files."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlds.errors import FormatError
from mlds.format.frame import Frame
from mlds.io.extxyz import ExtxyzReader, ExtxyzWriter
from mlds.io.registry import detect
from tests.conftest import data_file as data_file

FILES = ["dpdata/tests/xyz/xyz_unittest.xyz", "dpdata/tests/xyz/xyz_B5C7_novirials.xyz"]


def tiny_parse(text: str) -> list[dict]:
    """Independent parse: count line, comment line, then rows species x y z Z fx fy fz."""
    lines = text.splitlines()
    out, i = [], 0
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        n = int(lines[i])
        head = lines[i + 1]
        rows = [l.split() for l in lines[i + 2: i + 2 + n]]
        i += 2 + n
        vir = re.search(r'virial="([^"]+)"', head)
        out.append({
            "energy": float(re.search(r"energy=(\S+)", head).group(1)),
            "cell": np.array([float(v) for v in re.search(r'Lattice="([^"]+)"', head).group(1).split()]).reshape(3, 3),
            "virial": np.array([float(v) for v in vir.group(1).split()]).reshape(3, 3) if vir else None,
            "sym": [r[0] for r in rows],
            "pos": np.array([[float(v) for v in r[1:4]] for r in rows]),
            "force": np.array([[float(v) for v in r[5:8]] for r in rows]),
        })
    return out


@pytest.mark.parametrize("rel", FILES)
def test_real_files_match_file_text(rel):
    path = data_file(rel)
    ex = tiny_parse(path.read_text())
    frames = list(ExtxyzReader(path))
    assert len(frames) == len(ex) > 0
    for fr, e in zip(frames, ex):
        assert fr.symbols == e["sym"]
        assert fr.energy == pytest.approx(e["energy"], rel=1e-6)
        np.testing.assert_allclose(fr.positions, e["pos"], rtol=1e-6)
        np.testing.assert_allclose(fr.forces, e["force"], rtol=1e-6)
        np.testing.assert_allclose(fr.cell, e["cell"], rtol=1e-6)
        if e["virial"] is None:
            assert fr.stress is None
        else:
            vol = abs(np.linalg.det(e["cell"]))
            np.testing.assert_allclose(fr.stress, -e["virial"] / vol, rtol=1e-6, atol=1e-15)
        assert "virial" not in fr.info


def test_species_column_wins_over_contradicting_z_column():
    import ase.io

    path = data_file(FILES[0])
    ex = tiny_parse(path.read_text())
    reader = ExtxyzReader(path)
    frames = list(reader)
    assert frames[2].symbols == ex[2]["sym"] == ["B"] + ["C"] * 9
    assert ase.io.read(path, index=2, format="extxyz").get_chemical_symbols() == ["B"] * 5 + ["C"] * 5
    assert reader.report.warnings == ["frame 2: species and Z columns disagree on 4 atom(s); species used"]


def test_force_and_virial_spellings_that_ase_leaves_unused():
    import ase.io

    path = data_file(FILES[0])
    head = path.read_text().splitlines()[1]
    assert "force:R:3" in head and "virial=" in head
    atoms = ase.io.read(path, index=0, format="extxyz")
    assert "forces" not in atoms.calc.results and "stress" not in atoms.calc.results   # ASE: arrays/info only
    fr = next(iter(ExtxyzReader(path)))
    assert fr.forces is not None and fr.stress is not None
    # sign: virial W = -stress * V; dpdata's pressure for this file is -3.3158 GPa on the last frame
    last = list(ExtxyzReader(path))[-1]
    p_gpa = -np.trace(last.stress) / 3 * 160.2176634
    assert p_gpa == pytest.approx(-3.3158, abs=1e-3)


def test_ref_keys_win_and_other_spellings(tmp_path):
    p = tmp_path / "ref.xyz"
    p.write_text(
        '1\nREF_energy=-2.5 energy=9.0 REF_stress="1 0 0 0 2 0 0 0 3" virial="7 7 7 7 7 7 7 7 7" '
        'Lattice="2 0 0 0 2 0 0 0 2" Properties=species:S:1:pos:R:3:forces:R:3:REF_forces:R:3 info_x=5\n'
        "H 0 0 0 9 9 9 1 2 3\n"
        '1\nEnergy=-1.5 REF_virial="8 0 0 0 8 0 0 0 8" Lattice="2 0 0 0 2 0 0 0 2" '
        "Properties=species:S:1:pos:R:3:force:R:3\nH 0 0 0 4 5 6\n"
        '1\nenergy=-0.5 virial="1 0 0 0 1 0 0 0 1" pbc="F F F" Properties=species:S:1:pos:R:3\nH 0 0 0\n')
    reader = ExtxyzReader(p)
    a, b, c = list(reader)
    assert a.energy == -2.5
    np.testing.assert_array_equal(a.forces, [[1, 2, 3]])
    np.testing.assert_array_equal(a.stress, np.diag([1.0, 2.0, 3.0]))
    assert a.info == {"info_x": 5}
    assert b.energy == -1.5
    np.testing.assert_array_equal(b.forces, [[4, 5, 6]])
    np.testing.assert_allclose(b.stress, -np.eye(3), rtol=1e-14)  # -W / V, V = 8
    assert c.energy == -0.5 and c.stress is None and c.forces is None
    assert any("no cell volume" in w for w in reader.report.warnings)


def test_detect_and_bad_file(tmp_path):
    for rel in FILES:
        assert detect(data_file(rel)).name == "extxyz"
    p = tmp_path / "bad.xyz"
    p.write_text("2\nenergy=1 Properties=species:S:1:pos:R:3\nH 0 0 0\n")
    with pytest.raises(FormatError, match="frame 0"):
        list(ExtxyzReader(p))


# ---------------------------------------------------------------------------- writer

def test_writer_output_is_read_by_ase(tmp_path):
    import ase.io

    frames = list(ExtxyzReader(data_file(FILES[0])))
    out = tmp_path / "o.xyz"
    assert ExtxyzWriter(out).write(frames) == 3
    images = ase.io.read(out, index=":", format="extxyz")
    for fr, at in zip(frames, images):
        assert at.get_potential_energy() == fr.energy
        np.testing.assert_allclose(at.get_forces(), fr.forces, atol=5e-9)
        np.testing.assert_array_equal(at.get_stress(voigt=False), fr.stress)


def test_writer_keeps_every_float64_bit(tmp_path):
    """ase.io.write would round these per-atom values to 8 decimals; ours must not."""
    import ase.io

    f = Frame(numbers=[1], positions=[[0.123456789012, 0, 0]], energy=-1.234567890123456,
              forces=[[1e-10, 0, 0]])
    ExtxyzWriter(tmp_path / "p.xyz").write([f])
    g = next(iter(ExtxyzReader(tmp_path / "p.xyz")))
    assert g.positions[0, 0] == 0.123456789012
    assert g.forces[0, 0] == 1e-10
    assert g.energy == f.energy
    atoms = ase.io.read(tmp_path / "p.xyz")  # and plain ASE reads it, results on the calculator
    assert atoms.get_potential_energy() == f.energy and atoms.get_forces()[0, 0] == 1e-10


def test_writer_failure_leaves_nothing(tmp_path):
    def frames():
        yield Frame(numbers=[1], positions=[[0, 0, 0]], energy=1.0)
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        ExtxyzWriter(tmp_path / "o.xyz").write(frames())
    assert list(tmp_path.iterdir()) == []


finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)


@st.composite
def frames_strategy(draw):
    n = draw(st.integers(1, 5))
    periodic = draw(st.booleans())
    numbers = draw(st.lists(st.integers(1, 94), min_size=n, max_size=n))
    pos = np.array(draw(st.lists(finite, min_size=3 * n, max_size=3 * n))).reshape(n, 3)
    forces = np.array(draw(st.lists(finite, min_size=3 * n, max_size=3 * n))).reshape(n, 3)
    cell, stress = np.zeros((3, 3)), None
    if periodic:
        cell = np.array(draw(st.lists(st.floats(-20, 20, allow_nan=False), min_size=9, max_size=9))).reshape(3, 3)
        if draw(st.booleans()):
            cell[0] = -cell[0]
        if draw(st.booleans()):
            s = np.array(draw(st.lists(st.floats(-1, 1, allow_nan=False), min_size=9, max_size=9))).reshape(3, 3)
            stress = np.triu(s) + np.triu(s, 1).T        # symmetric (extxyz stores Voigt)
    energy = draw(st.one_of(finite, st.just(math.nan)))
    return Frame(numbers=numbers, positions=pos, cell=cell, pbc=[periodic] * 3, energy=energy,
                 forces=forces if draw(st.booleans()) else None, stress=stress)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frames=st.lists(frames_strategy(), min_size=1, max_size=4))
def test_round_trip_hypothesis(tmp_path, frames):
    out = tmp_path / "rt.xyz"
    assert ExtxyzWriter(out).write(frames) == len(frames)
    again = list(ExtxyzReader(out))
    assert len(again) == len(frames)
    for a, b in zip(frames, again):
        assert a.numbers.tolist() == b.numbers.tolist()
        assert a.pbc.tolist() == b.pbc.tolist()
        np.testing.assert_array_equal(a.cell, b.cell)                     # Lattice: repr, exact
        np.testing.assert_array_equal(b.positions, a.positions)
        assert (a.energy == b.energy) or (math.isnan(a.energy) and math.isnan(b.energy))
        assert (a.forces is None) == (b.forces is None)
        if a.forces is not None:
            np.testing.assert_array_equal(b.forces, a.forces)
        assert (a.stress is None) == (b.stress is None)
        if a.stress is not None:
            np.testing.assert_array_equal(a.stress, b.stress)


@pytest.mark.parametrize("column", ["magmoms", "initial_magmoms", "REF_magmoms"])
def test_training_labels_and_magmoms_reach_the_frame(tmp_path, column):
    """config_type / config_weight / set (MACE, GAP, n2p2 split) stay in Frame.info; per-atom
    moments become Frame.magmoms whichever column name carries them."""
    p = tmp_path / "labels.xyz"
    p.write_text(
        f'2\nLattice="5 0 0 0 5 0 0 0 5" Properties=species:S:1:pos:R:3:forces:R:3:{column}:R:1 energy=-1.5 '
        'config_type=bulk_fcc config_weight=2.5 set=test pbc="T T T"\n'
        "Fe 0 0 0 0.1 0.2 0.3 2.25\nFe 1 1 1 -0.1 -0.2 -0.3 -2.125\n")
    fr = next(iter(ExtxyzReader(p)))
    assert fr.info["config_type"] == "bulk_fcc" and fr.info["config_weight"] == 2.5 and fr.info["set"] == "test"
    assert fr.magmoms.tolist() == [2.25, -2.125]
    assert fr.energy == -1.5 and fr.forces[1].tolist() == [-0.1, -0.2, -0.3]
