"""aenet XSF / generate.in reader and the aenet directory writer, against the real files."""

from __future__ import annotations

import math
import re
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlds.errors import FormatError
from mlds.format.frame import Frame
from mlds.io.aenet import AenetGenerateReader, AenetWriter, AenetXsfReader
from mlds.io.registry import detect
from tests.conftest import data_file as data_file

XSF = [
    "aenet-python/notebooks/TiO2-cell.xsf",
    "aenet-python/notebooks/xsf-TiO2/structure-001.xsf",
    "aenet-python/notebooks/xsf-TiO2/structure-002.xsf",
    "aenet-python/notebooks/xsf-TiO2/structure-008.xsf",
    "aenet/unittests/Cu-dimer-forces/dimer-x02.5.xsf",
]
GENERATE = "aenet/examples/example-chebyshev/01-generate/generate.in"
NUM = r"[-+]?\d*\.?\d+(?:[eE][-+]?\d+)?"


def tiny_parse(text: str) -> dict:
    """Independent regex parse of an XSF text: energy, cell, atom rows."""
    m = re.search(r"total energy\s*=\s*(" + NUM + ")", text)
    cell = re.search(r"PRIMVEC\s*\n" + (r"\s*(" + NUM + r")\s+(" + NUM + r")\s+(" + NUM + r")\s*\n") * 3, text)
    rows = re.findall(r"^\s*([A-Z][a-z]?)((?:\s+" + NUM + r")+)\s*$", text, re.M)
    return {
        "energy": float(m.group(1)) if m else math.nan,
        "cell": np.array([float(v) for v in cell.groups()]).reshape(3, 3) if cell else None,
        "sym": [r[0] for r in rows],
        "cols": np.array([[float(v) for v in r[1].split()] for r in rows]),
    }


def _read_one(path):
    frames = list(AenetXsfReader(path))
    assert len(frames) == 1
    return frames[0]


@pytest.mark.parametrize("rel", XSF)
def test_real_xsf_matches_file_text(rel):
    path = data_file(rel)
    ex = tiny_parse(path.read_text())
    fr = _read_one(path)
    assert fr.symbols == ex["sym"]
    np.testing.assert_allclose(fr.positions, ex["cols"][:, :3], rtol=1e-6, atol=0)
    if math.isnan(ex["energy"]):
        assert math.isnan(fr.energy)
    else:
        assert fr.energy == pytest.approx(ex["energy"], rel=1e-6)
    if ex["cols"].shape[1] == 6:
        np.testing.assert_allclose(fr.forces, ex["cols"][:, 3:], rtol=1e-6, atol=0)
    else:
        assert fr.forces is None
    if ex["cell"] is not None:
        assert fr.pbc.all()
        np.testing.assert_allclose(fr.cell, ex["cell"], rtol=1e-6, atol=0)
    else:
        assert not fr.pbc.any() and not fr.cell.any()


@pytest.mark.parametrize("rel", XSF[:4])
def test_forces_not_scaled_like_ase(rel):
    import ase.io

    path = data_file(rel)
    fr = _read_one(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        atoms = ase.io.read(path, format="xsf")
    ase_f = atoms.get_forces()
    # ASE follows the XCrySDen spec (Hartree/Å) and multiplies by 27.211; aenet writes eV/Å
    np.testing.assert_allclose(ase_f, fr.forces * 27.211386245988, rtol=1e-6, atol=1e-12)
    assert np.abs(fr.forces).max() == pytest.approx(np.abs(tiny_parse(path.read_text())["cols"][:, 3:]).max())
    assert np.abs(ase_f).max() > 20 * np.abs(fr.forces).max()
    # and ASE has no energy at all
    assert atoms.calc is None or "energy" not in atoms.calc.results


def test_structure_008_exact_zero_forces():
    fr = _read_one(data_file("aenet-python/notebooks/xsf-TiO2/structure-008.xsf"))
    assert fr.symbols[:2] == ["Ti", "Ti"]
    assert (fr.forces[:2] == 0.0).all() and (fr.forces[2:] != 0.0).all()
    assert (fr.positions[1] == 0.0).all()


def test_molecule_xsf_without_energy_or_forces():
    fr = _read_one(data_file("aenet/unittests/Cu-dimer-forces/dimer-x02.5.xsf"))
    assert math.isnan(fr.energy) and fr.forces is None
    assert not fr.pbc.any()
    assert fr.info["comment"] == "lowest energy structure till MC step number 192"
    np.testing.assert_array_equal(fr.positions, [[0, 0, 0], [2.5, 0, 0]])


def test_detect_by_content():
    for rel in XSF:
        assert detect(data_file(rel)).name == "aenet-xsf"
    assert detect(data_file(GENERATE)).name == "aenet-generate"


def test_generate_in_missing_file_names_file_and_line():
    path = data_file(GENERATE)
    lines = path.read_text().splitlines()
    first = next(i for i, l in enumerate(lines, 1) if l.strip().endswith(".xsf"))
    with pytest.raises(FormatError, match=re.escape(lines[first - 1].strip())) as err:
        list(AenetGenerateReader(path))
    assert err.value.line == first


def test_generate_in_reads_listed_files(tmp_path):
    paths = [data_file(r) for r in XSF[1:4]]
    (tmp_path / "generate.in").write_text(
        "OUTPUT x.train\n\nTYPES\n2\nTi -1626.6 | eV\nO -433.2 ! eV\n\nSETUPS\nTi Ti.stp\nO O.stp\n\nFILES\n3\n"
        + "\n".join(str(p) for p in paths) + "\n")
    frames = list(AenetGenerateReader(tmp_path / "generate.in"))
    assert [f.n_atoms for f in frames] == [len(tiny_parse(p.read_text())["sym"]) for p in paths]
    assert [f.energy for f in frames] == [tiny_parse(p.read_text())["energy"] for p in paths]


def test_xsf_errors(tmp_path):
    p = tmp_path / "bad.xsf"
    p.write_text("# total energy = -1.0 eV\nCRYSTAL\nPRIMVEC\n1 0 0\n0 1 0\nPRIMCOORD\n1 1\nH 0 0 0 0 0 0\n")
    with pytest.raises(FormatError, match="PRIMVEC needs 3 lattice vectors") as err:
        _read_one(p)
    assert err.value.line == 6
    p.write_text("# total energy = -1.0 Ry\nATOMS\nH 0 0 0\n")
    with pytest.raises(FormatError, match="must be eV"):
        _read_one(p)
    p.write_text("CRYSTAL\nPRIMVEC\n1 0 0\n0 1 0\n0 0 1\nPRIMCOORD\n2 1\nH 0 0 0 0 0 0\n")
    with pytest.raises(FormatError, match="truncated"):
        _read_one(p)


# ---------------------------------------------------------------------------- writer

def _frame(energy=-3.0, pbc=True, forces=True):
    return Frame(numbers=[22, 8], positions=[[0.0, 0.1, 0.2], [1.0, 1.1, 1.2]],
                 cell=np.eye(3) * 4.0 if pbc else np.zeros((3, 3)), pbc=[pbc] * 3, energy=energy,
                 forces=[[0.1, 0.2, 0.3], [-0.1, -0.2, -0.3]] if forces else None)


def test_writer_layout(tmp_path):
    out = tmp_path / "aenet"
    assert AenetWriter(out, atomic_energies={"O": -433.5}).write([_frame(), _frame(pbc=False, energy=-1.0)]) == 2
    assert sorted(p.name for p in out.iterdir()) == ["generate.in", "structure-000001.xsf", "structure-000002.xsf"]
    assert (out / "generate.in").read_text() == (
        "OUTPUT refdata.train\n\nTYPES\n2\nO -433.5\nTi 0.0\n\nSETUPS\nO O.fingerprint.stp\nTi Ti.fingerprint.stp\n"
        "\nFILES\n2\nstructure-000001.xsf\nstructure-000002.xsf\n")
    first = (out / "structure-000001.xsf").read_text()
    assert first.startswith("# total energy = -3.0 eV\n") and "PRIMCOORD\n2 1\n" in first
    second = (out / "structure-000002.xsf").read_text()
    assert "ATOMS\n" in second and "PRIMVEC" not in second
    frames = list(AenetGenerateReader(out / "generate.in"))
    assert [f.energy for f in frames] == [-3.0, -1.0]


@pytest.mark.parametrize("bad,msg", [(dict(energy=float("nan")), "frame 1 has no energy"),
                                     (dict(forces=False), "frame 1 has no .*forces")])
def test_writer_missing_data_names_frame_and_leaves_nothing(tmp_path, bad, msg):
    out = tmp_path / "aenet"
    with pytest.raises(FormatError, match=msg):
        AenetWriter(out).write([_frame(), _frame(**bad), _frame()])
    assert list(tmp_path.iterdir()) == []


def test_writer_mixed_pbc(tmp_path):
    f = _frame()
    f.pbc = np.array([True, False, True])
    with pytest.raises(FormatError, match="frame 0 has mixed periodicity"):
        AenetWriter(tmp_path / "d").write([f])
    assert list(tmp_path.iterdir()) == []


def test_real_files_round_trip(tmp_path):
    frames = [_read_one(data_file(r)) for r in XSF[:4]]
    AenetWriter(tmp_path / "d").write(frames)
    again = list(AenetGenerateReader(tmp_path / "d" / "generate.in"))
    for a, b in zip(frames, again):
        _assert_same(a, b)


# ---------------------------------------------------------------------------- hypothesis round trip

finite = st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False)


@st.composite
def frames_strategy(draw):
    n = draw(st.integers(1, 5))
    periodic = draw(st.booleans())
    numbers = draw(st.lists(st.integers(1, 94), min_size=n, max_size=n))
    pos = np.array(draw(st.lists(finite, min_size=3 * n, max_size=3 * n))).reshape(n, 3)
    forces = np.array(draw(st.lists(finite, min_size=3 * n, max_size=3 * n))).reshape(n, 3)
    cell = np.zeros((3, 3))
    if periodic:
        cell = np.array(draw(st.lists(st.floats(-20, 20, allow_nan=False), min_size=9, max_size=9))).reshape(3, 3)
        if draw(st.booleans()):
            cell[0] = -cell[0]
    return Frame(numbers=numbers, positions=pos, cell=cell, pbc=[periodic] * 3, energy=draw(finite), forces=forces)


def _assert_same(a: Frame, b: Frame):
    assert a.numbers.tolist() == b.numbers.tolist()
    assert a.pbc.tolist() == b.pbc.tolist()
    np.testing.assert_array_equal(a.positions, b.positions)
    np.testing.assert_array_equal(a.forces, b.forces)
    np.testing.assert_array_equal(a.cell, b.cell)
    assert a.energy == b.energy


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frames=st.lists(frames_strategy(), min_size=1, max_size=4))
def test_round_trip_hypothesis(tmp_path, frames):
    out = tmp_path / "rt"
    assert AenetWriter(out).write(frames) == len(frames)
    again = list(AenetGenerateReader(out / "generate.in"))
    assert len(again) == len(frames)
    for a, b in zip(frames, again):
        _assert_same(a, b)
