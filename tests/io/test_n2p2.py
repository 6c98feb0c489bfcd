"""n2p2 input.data reader/writer against the real files (values parsed from the file text here)."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlds.errors import FormatError
from mlds.format.frame import Frame
from mlds.io.n2p2 import BOHR_ANGSTROM, HARTREE_EV, N2p2Reader, N2p2Writer, n2p2_unit_factors
from mlds.io.registry import detect
from tests.conftest import data_file as data_file

CU2S = "n2p2/examples/nnp-train/Cu2S_PBE/input.data"
H2O = "n2p2/examples/nnp-train/H2O_RPBE-D3/input.data"
DPDATA = "dpdata/tests/n2p2/input.data"
FILES = [(CU2S, "angstrom-ev"), (H2O, "bohr-hartree"), (DPDATA, "bohr-hartree")]


def tiny_parse(text: str) -> list[dict]:
    """Independent parser: split on begin/end, collect fields with regexes."""
    blocks = re.findall(r"^\s*begin\b.*?^\s*end\s*$", text, flags=re.S | re.M)
    out = []
    for b in blocks:
        lat = [[float(v) for v in m] for m in re.findall(r"^\s*lattice\s+(\S+)\s+(\S+)\s+(\S+)", b, re.M)]
        atoms = re.findall(r"^\s*atom\s+(\S+)\s+(\S+)\s+(\S+)\s+([A-Z][a-z]?)\s+(\S+)\s+\S+\s+(\S+)\s+(\S+)\s+(\S+)",
                           b, re.M)
        out.append({
            "lattice": np.array(lat) if lat else None,
            "pos": np.array([[float(a[i]) for i in (0, 1, 2)] for a in atoms]),
            "sym": [a[3] for a in atoms],
            "q": np.array([float(a[4]) for a in atoms]),
            "f": np.array([[float(a[i]) for i in (5, 6, 7)] for a in atoms]),
            "energy": float(re.search(r"^\s*energy\s+(\S+)", b, re.M).group(1)),
            "charge": float(re.search(r"^\s*charge\s+(\S+)", b, re.M).group(1)),
        })
    return out


def factors(units):
    return (BOHR_ANGSTROM, HARTREE_EV) if units == "bohr-hartree" else (1.0, 1.0)


@pytest.mark.parametrize("rel,units", FILES)
def test_real_files_match_file_text(rel, units):
    path = data_file(rel)
    expected = tiny_parse(path.read_text())
    frames = list(N2p2Reader(path, units=units))
    L, E = factors(units)
    assert len(frames) == len(expected) > 0
    for fr, ex in zip(frames, expected):
        assert fr.symbols == ex["sym"]
        np.testing.assert_allclose(fr.energy, ex["energy"] * E, rtol=1e-6)
        np.testing.assert_allclose(fr.positions, ex["pos"] * L, rtol=1e-6, atol=1e-12)
        np.testing.assert_allclose(fr.forces, ex["f"] * E / L, rtol=1e-6, atol=1e-12)
        assert fr.total_charge == ex["charge"]
        if ex["lattice"] is not None:
            assert fr.pbc.all()
            np.testing.assert_allclose(fr.cell, ex["lattice"] * L, rtol=1e-6, atol=1e-12)
        else:
            assert not fr.pbc.any()


def test_cu2s_angstrom_ev_last_energy_is_the_files_number():
    path = data_file(CU2S)
    last = re.findall(r"^\s*energy\s+(\S+)", path.read_text(), re.M)[-1]
    frames = list(N2p2Reader(path, units="angstrom-ev"))
    assert frames[-1].energy == float(last)       # -573.700369, not dpdata's -15611 (Bohr/Ha assumed)
    assert frames[-1].charges is None             # all-zero column = unused
    assert frames[0].info["comment"].startswith("source_file_name=")


def test_h2o_bohr_hartree_converted_with_codata2018_and_quirks():
    path = data_file(H2O)
    text = path.read_text()
    assert re.search(r"^ begin", text, re.M)       # leading-space begin lines
    ex = tiny_parse(text)
    frames = list(N2p2Reader(path, units="bohr-hartree"))
    lf, ef = n2p2_unit_factors("bohr-hartree")
    assert frames[-1].energy == pytest.approx(ex[-1]["energy"] / ef, rel=1e-12)
    np.testing.assert_allclose(frames[-1].forces, ex[-1]["f"] * lf / ef, rtol=1e-12)
    # mixed atom counts in one file (dpdata refuses this file)
    assert {f.n_atoms for f in frames} == {len(e["sym"]) for e in ex} == {48, 96, 192}
    # per-atom charges column
    np.testing.assert_array_equal(frames[0].charges, ex[0]["q"])


def test_dpdata_file_without_trailing_newline():
    path = data_file(DPDATA)
    text = path.read_text()
    assert not text.endswith("\n")
    frames = list(N2p2Reader(path, units="bohr-hartree"))
    assert len(frames) == 2
    assert frames[-1].energy == pytest.approx(float(re.findall(r"energy\s+(\S+)", text)[-1]) * HARTREE_EV)
    np.testing.assert_allclose(frames[0].cell, np.eye(3) * 18.897261 * BOHR_ANGSTROM)


def test_units_are_required():
    with pytest.raises(FormatError, match=re.escape("n2p2 files carry no units; pass units='angstrom-ev' or "
                                                    "'bohr-hartree' (--units)")):
        N2p2Reader("whatever/input.data")
    with pytest.raises(FormatError, match="unknown n2p2 unit system"):
        N2p2Reader("whatever/input.data", units="bohr")


def test_length_and_energy_units_are_independent():
    """n2p2's QM9 example mixes Å positions with Hartree energies; Cu2S read that way keeps its
    positions and scales energies by Hartree and forces by Hartree/Å."""
    path = data_file(CU2S)
    ex = tiny_parse(path.read_text())
    reader = N2p2Reader(path, length_unit="angstrom", energy_unit="hartree")
    frames = list(reader)
    assert len(frames) == len(ex)
    for fr, e in zip(frames, ex):
        np.testing.assert_array_equal(fr.positions, e["pos"])
        assert fr.energy == e["energy"] * HARTREE_EV
        np.testing.assert_array_equal(fr.forces, e["f"] * HARTREE_EV)
    assert reader.report.to_provenance()["units"] == {"length": "angstrom", "energy": "hartree"}
    # the preset spelling of the same, and a preset agreeing with a separate option, read the same
    again = list(N2p2Reader(path, units="angstrom-hartree", energy_unit="Hartree"))
    assert all(a.energy == b.energy for a, b in zip(frames, again))
    preset = N2p2Reader(path, units="bohr-hartree")
    assert preset.report.units == {"length": "bohr", "energy": "hartree"}


@pytest.mark.parametrize("options,message", [
    ({"length_unit": "angstrom"}, "energy unit is missing"),
    ({"energy_unit": "eV"}, "length unit is missing"),
    ({"units": "bohr-hartree", "length_unit": "angstrom"}, "contradicts"),
    ({"length_unit": "nm", "energy_unit": "eV"}, "unknown length unit"),
])
def test_unit_option_errors(options, message):
    with pytest.raises(FormatError, match=message):
        N2p2Reader("whatever/input.data", **options)


def test_writer_mixed_units_round_trip(tmp_path):
    frames = list(N2p2Reader(data_file(CU2S), units="angstrom-ev"))[:3]
    out = tmp_path / "input.data"
    N2p2Writer(out, length_unit="bohr", energy_unit="eV").write(frames)
    side = json.loads((tmp_path / "input.data.units.json").read_text())
    assert (side["units"], side["length"], side["energy"], side["force"]) == ("bohr-ev", "bohr", "eV", "eV/bohr")
    assert (side["length_per_angstrom"], side["energy_per_eV"]) == n2p2_unit_factors(length_unit="bohr",
                                                                                    energy_unit="eV")
    ex = tiny_parse(out.read_text())
    assert ex[0]["energy"] == frames[0].energy  # energies unscaled, lengths in Bohr
    np.testing.assert_allclose(ex[0]["pos"], frames[0].positions / BOHR_ANGSTROM, rtol=1e-15)
    again = list(N2p2Reader(out, length_unit="bohr", energy_unit="ev"))
    for a, b in zip(frames, again):
        _assert_same(a, b, exact=False)


def test_unit_factors():
    assert n2p2_unit_factors("angstrom-ev") == (1.0, 1.0)
    lf, ef = n2p2_unit_factors("bohr-hartree")
    assert lf == pytest.approx(1.8897261246, rel=1e-10)     # LAMMPS hdnnp cflength
    assert ef == pytest.approx(0.0367493222, rel=1e-9)      # LAMMPS hdnnp cfenergy


def test_detect_by_content():
    for rel, _ in FILES:
        assert detect(data_file(rel)).name == "n2p2"


# ---------------------------------------------------------------------------- reader errors

GOOD = """begin set=test
comment first
comment second
lattice 5.0 0.0 0.0
lattice 0.0 5.0 0.0
lattice 0.0 0.0 5.0
atom 0.0 0.0 0.0 H 0.1 0.0 1.0 2.0 3.0
atom 1.0 0.0 0.0 H -0.1 0.0 -1.0 -2.0 -3.0
energy -1.5
charge 0.0
end
begin
atom 0.0 0.0 0.0 O 0.0 0.0 0.0 0.0 0.0
energy -2.5
charge -1.0
end
"""


def _read(tmp_path, text):
    p = tmp_path / "input.data"
    p.write_text(text)
    return list(N2p2Reader(p, units="angstrom-ev"))


def test_small_file_periodic_and_molecule_mixed(tmp_path):
    a, b = _read(tmp_path, GOOD)
    assert a.info == {"set": "test", "comment": "first\nsecond"} and a.pbc.all()
    np.testing.assert_array_equal(a.charges, [0.1, -0.1])
    assert not b.pbc.any() and b.total_charge == -1.0 and b.info == {} and not b.cell.any()


@pytest.mark.parametrize("mutate,line,msg", [
    (lambda t: t.replace("lattice 0.0 5.0 0.0\nlattice 0.0 0.0 5.0\n", ""), 4, "1 lattice line"),
    (lambda t: t.replace("lattice 0.0 0.0 5.0\n", ""), 4, "2 lattice line"),
    (lambda t: t.replace("energy -2.5", "enrgy -2.5"), 14, "unknown keyword 'enrgy'"),
    (lambda t: t.replace("energy -1.5", "energy -1.5x"), 9, "bad number '-1.5x'"),
    (lambda t: t.replace("end\nbegin\n", "begin\n"), 11, "missing 'end'"),
    (lambda t: t[: t.index("energy -2.5")], 13, "missing 'end'"),
    (lambda t: t.replace("O 0.0 0.0 0.0 0.0 0.0", "Xx 0.0 0.0 0.0 0.0 0.0"), 13, "unknown element"),
    (lambda t: t.replace("H -0.1 0.0 -1.0 -2.0 -3.0", "H -0.1 0.0 -1.0 -2.0"), 8, "9 fields"),
])
def test_errors_carry_line_numbers(tmp_path, mutate, line, msg):
    with pytest.raises(FormatError, match=re.escape(msg)) as err:
        _read(tmp_path, mutate(GOOD))
    assert err.value.line == line
    assert f"input.data:{line}:" in str(err.value)


def test_truncated_real_file_reports_line(tmp_path):
    text = data_file(CU2S).read_text()
    cut = "\n".join(text.splitlines()[:300])
    with pytest.raises(FormatError, match="missing 'end'") as err:
        _read(tmp_path, cut)
    assert err.value.line == 300


# ---------------------------------------------------------------------------- writer

def _frame(energy=-3.0, pbc=True, forces=True, **kw):
    return Frame(numbers=[8, 1], positions=[[0.0, 0.1, 0.2], [1.0, 1.1, 1.2]],
                 cell=np.eye(3) * 4.0 if pbc else np.zeros((3, 3)), pbc=[pbc] * 3, energy=energy,
                 forces=[[0.1, 0.2, 0.3], [-0.1, -0.2, -0.3]] if forces else None, **kw)


def test_writer_missing_energy_names_frame_and_leaves_nothing(tmp_path):
    out = tmp_path / "sub" / "input.data"
    with pytest.raises(FormatError, match="frame 1 has no energy"):
        N2p2Writer(out).write([_frame(), _frame(energy=float("nan")), _frame()])
    with pytest.raises(FormatError, match="frame 0 has no .*forces"):
        N2p2Writer(out).write([_frame(forces=False)])
    assert list((tmp_path / "sub").iterdir()) == []


def test_writer_mixed_pbc_and_charged_periodic_are_errors(tmp_path):
    f = _frame()
    f.pbc = np.array([True, True, False])
    with pytest.raises(FormatError, match="frame 0 has mixed periodicity"):
        N2p2Writer(tmp_path / "a.data").write([f])
    with pytest.raises(FormatError, match="frame 0 is periodic with total charge"):
        N2p2Writer(tmp_path / "a.data").write([_frame(total_charge=1.0)])
    assert list(tmp_path.iterdir()) == []


def test_writer_layout_sidecar_and_split(tmp_path):
    out = tmp_path / "input.data"
    frames = [_frame(), _frame(pbc=False, total_charge=-1.0), _frame(info={"set": "test"})]
    n = N2p2Writer(out, units="bohr-hartree", split={"train": [0], "test": [1]}).write(frames)
    assert n == 3
    text = out.read_text()
    assert text.count("lattice") == 6
    assert re.findall(r"^begin.*$", text, re.M) == ["begin set=train", "begin set=test", "begin set=test"]
    ex = tiny_parse(text)
    lf, ef = n2p2_unit_factors("bohr-hartree")
    assert ex[0]["energy"] == pytest.approx(-3.0 * ef, rel=1e-15)
    np.testing.assert_allclose(ex[0]["lattice"], np.eye(3) * 4.0 * lf, rtol=1e-15)
    assert ex[0]["q"].tolist() == [0.0, 0.0] and ex[0]["charge"] == 0.0 and ex[1]["charge"] == -1.0
    side = json.loads((tmp_path / "input.data.units.json").read_text())
    assert side["length"] == "bohr" and side["energy"] == "hartree" and side["codata"] == "2018"
    assert (side["length_per_angstrom"], side["energy_per_eV"]) == (lf, ef)
    N2p2Writer(tmp_path / "b.data").write([_frame()])
    assert json.loads((tmp_path / "b.data.units.json").read_text())["length"] == "angstrom"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.data", "b.data.units.json", "input.data",
                                                          "input.data.units.json"]


def test_real_file_round_trip_is_exact(tmp_path):
    frames = list(N2p2Reader(data_file(H2O), units="bohr-hartree"))
    N2p2Writer(tmp_path / "x.data").write(frames)
    again = list(N2p2Reader(tmp_path / "x.data", units="angstrom-ev"))
    assert len(again) == len(frames)
    for a, b in zip(frames, again):
        _assert_same(a, b, exact=True)


# ---------------------------------------------------------------------------- hypothesis round trip

finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)


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
            cell[0] = -cell[0]                      # left-handed as often as right-handed
    charges = None
    if draw(st.booleans()):
        charges = np.array(draw(st.lists(st.floats(-2, 2, allow_nan=False), min_size=n, max_size=n)))
        if not charges.any():
            charges = None
    info = {}
    if draw(st.booleans()):
        info["set"] = draw(st.sampled_from(["train", "test"]))
    if draw(st.booleans()):
        info["comment"] = draw(st.from_regex(r"[A-Za-z0-9_=.]+( [A-Za-z0-9_=.]+)?", fullmatch=True))
    qtot = 0.0 if periodic else draw(st.sampled_from([0.0, -1.0, 2.0]))
    return Frame(numbers=numbers, positions=pos, cell=cell, pbc=[periodic] * 3, energy=draw(finite),
                 forces=forces, charges=charges, total_charge=qtot, info=info)


def _assert_same(a: Frame, b: Frame, exact: bool):
    cmp = np.testing.assert_array_equal if exact else (lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-14,
                                                                                             atol=1e-300))
    assert a.numbers.tolist() == b.numbers.tolist()
    assert a.pbc.tolist() == b.pbc.tolist()
    cmp(a.positions, b.positions)
    cmp(a.forces, b.forces)
    cmp(a.cell, b.cell)
    cmp(np.array([a.energy]), np.array([b.energy]))
    assert (a.charges is None) == (b.charges is None)
    if a.charges is not None:
        np.testing.assert_array_equal(a.charges, b.charges)
    assert b.total_charge == (0.0 if math.isnan(a.total_charge) else a.total_charge)
    assert a.info == b.info


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frames=st.lists(frames_strategy(), min_size=1, max_size=4), units=st.sampled_from(["angstrom-ev",
                                                                                          "bohr-hartree"]))
def test_round_trip_hypothesis(tmp_path, frames, units):
    out = tmp_path / "rt.data"
    assert N2p2Writer(out, units=units).write(frames) == len(frames)
    again = list(N2p2Reader(out, units=units))
    assert len(again) == len(frames)
    for a, b in zip(frames, again):
        _assert_same(a, b, exact=units == "angstrom-ev")
