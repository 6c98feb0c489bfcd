"""Tests for the Quantum ESPRESSO pw.x text-output reader (mlds.io.qe_pw).

Expected values are extracted in each test from the file text with small
independent regexes (not typed from the MANIFEST) and converted with the
CODATA 2018 constants written out here.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from mlds.errors import FormatError
from mlds.io.qe_pw import QEPwReader
from mlds.io.registry import detect
from tests.conftest import data_file as data_file

BOHR = 0.529177210903
RY = 27.211386245988 / 2

QE_OUTPUTS = [
    "q-e/test-suite/pw_scf/scf.benchmark.out",
    "q-e/test-suite/pw_lsda/lsda.benchmark.out",
    "q-e/test-suite/pw_md/md.benchmark.out",
    "q-e/test-suite/pw_relax/relax2.benchmark.out",
    "q-e/test-suite/pw_vc-relax/vc-md1.benchmark.out",
    "dpdata/tests/qe.scf/02.out",
    "dpdata/tests/qe.scf/Al.out",
    "dpdata/tests/qe.scf/na.out",
    "aiida-quantumespresso/tests/parsers/fixtures/pw/default/aiida.out",
    "aiida-quantumespresso/tests/parsers/fixtures/pw/relax_success/aiida.out",
]


# ----------------------------------------------------------- independent regexes
def _nat(text: str) -> int:
    return int(re.search(r"number of atoms/cell\s*=\s*(\d+)", text).group(1))


def _alat(text: str) -> float:
    return float(re.search(r"celldm\(1\)=\s*(\S+)", text).group(1))


def expected_energies_ry(text: str) -> list[float]:
    """Last '!' line before each 'convergence has been achieved'."""
    out, last = [], None
    for line in text.splitlines():
        m = re.match(r"^!{1,2}\s+total energy\s+=\s+(\S+)", line)
        if m:
            last = float(m.group(1))
        elif "convergence has been achieved" in line:
            out.append(last)
    return out


def expected_forces_ry(text: str) -> list[np.ndarray]:
    nat = _nat(text)
    blocks = []
    for m in re.finditer(r"Forces acting on atoms.*\n", text):
        rows = re.findall(r"atom\s+\d+\s+type\s+\d+\s+force =\s+(\S+)\s+(\S+)\s+(\S+)", text[m.end():])[:nat]
        blocks.append(np.array(rows, dtype=float))
    return blocks


def expected_stress_ry(text: str) -> list[np.ndarray]:
    blocks = []
    for m in re.finditer(r"total\s+stress\s+\(Ry/bohr\*\*3\).*\n((?:.*\n){3})", text):
        blocks.append(np.array([ln.split()[:3] for ln in m.group(1).splitlines()], dtype=float))
    return blocks


def expected_header_cell_ang(text: str) -> np.ndarray:
    rows = re.findall(r"a\(\d\) = \(\s*(\S+)\s+(\S+)\s+(\S+)\s*\)", text)[:3]
    return np.array(rows, dtype=float) * _alat(text) * BOHR


def read(path, **kw):
    r = QEPwReader(path, **kw)
    return list(r), r.report


# ------------------------------------------------------------------ every file
@pytest.mark.parametrize("rel", QE_OUTPUTS)
def test_every_file_matches_text(rel):
    path = data_file(rel)
    text = path.read_text()
    frames, rep = read(path)
    e_ry = expected_energies_ry(text)
    assert len(frames) == len(e_ry) > 0
    assert rep.code == "Quantum ESPRESSO" and not rep.dropped
    np.testing.assert_allclose([f.energy for f in frames], np.array(e_ry) * RY, rtol=1e-12)
    assert [f.info["step"] for f in frames] == list(range(len(frames)))
    forces = expected_forces_ry(text)
    if forces:
        assert len(forces) == len(frames)
        for f, ref in zip(frames, forces):
            np.testing.assert_allclose(f.forces, ref * RY / BOHR, rtol=1e-6, atol=1e-12)
    else:
        assert all(f.forces is None for f in frames)
    stress = expected_stress_ry(text)
    if stress:
        assert len(stress) == len(frames)
        for f, ref in zip(frames, stress):
            np.testing.assert_allclose(f.stress, -ref * RY / BOHR**3, rtol=1e-6, atol=1e-15)
    else:
        assert all(f.stress is None for f in frames)
    # first frame: header cell (crystal axes × celldm(1))
    np.testing.assert_allclose(frames[0].cell, expected_header_cell_ang(text), rtol=1e-6, atol=1e-9)
    assert all(f.converged for f in frames)
    assert all(f.pbc.all() for f in frames)
    assert detect(path) is QEPwReader


def test_settings_md():
    _, rep = read(data_file("q-e/test-suite/pw_md/md.benchmark.out"))
    s = rep.settings
    assert s["code"] == "Quantum ESPRESSO" and s["code_version"] == "7.4"
    assert s["functional"] == "LDA"  # SLA PZ NOGX NOGC
    assert s["plane_wave_cutoff_eV"] == pytest.approx(8.0 * RY)
    assert s["extra"]["ecutrho_eV"] == pytest.approx(32.0 * RY)
    assert s["extra"]["calculation"] == "md"
    assert s["kpoints"] == {"n_kpoints": 1}
    assert s["smearing"] == {"method": "none"}
    assert s["spin_polarized"] is False
    assert s["pseudopotentials"] == [
        {"element": "Si", "name": "Si.pz-vbc.UPF", "md5": "9f25e6ff280f3123e9b3a84715b2e9c9"}]


def test_settings_smearing_and_pbe():
    _, rep = read(data_file("dpdata/tests/qe.scf/Al.out"))
    s = rep.settings
    assert s["functional"] == "PBE" and s["code_version"] == "6.7MaX"
    assert s["smearing"] == {"method": "fermi-dirac", "width_eV": pytest.approx(0.001 * RY)}
    assert s["kpoints"] == {"n_kpoints": 8}
    assert s["extra"]["calculation"] == "scf"
    _, rep = read(data_file("q-e/test-suite/pw_relax/relax2.benchmark.out"))
    assert rep.settings["smearing"] == {"method": "methfessel-paxton", "order": 1,
                                        "width_eV": pytest.approx(0.05 * RY)}


# ------------------------------------------------------------------------ quirks
def test_al_iprint_takes_converged_energy_not_first():
    """Al.out (iprint) prints '!' on all 6 SCF iterations; the last is converged.
    ASE takes the first one (-21.76174003 Ry), 0.24 meV off."""
    path = data_file("dpdata/tests/qe.scf/Al.out")
    text = path.read_text()
    bangs = [float(x) for x in re.findall(r"^!\s+total energy\s+=\s+(\S+)", text, re.M)]
    assert len(bangs) == 6
    frames, _ = read(path)
    assert len(frames) == 1
    assert frames[0].energy == pytest.approx(bangs[-1] * RY, rel=1e-12)
    import ase.io

    ase_e = ase.io.read(path, format="espresso-out").get_potential_energy()
    assert ase_e == pytest.approx(bangs[0] * RY, rel=1e-6)  # ASE: first '!'
    diff = frames[0].energy - ase_e
    assert -0.3e-3 < diff < -0.2e-3  # ~ -0.24 meV


def _exx_excerpt(tmp_path: Path) -> Path:
    """SYNTHETIC: no real hybrid-functional output is available in the test data.
    Built from the real relax_success/aiida.out by replacing its single '!' line
    with an EXX outer loop as printed by electrons.f90: inner '!' lines, 'EXX: now
    go back to refine exchange calculation', 'est. exchange err', then the
    EXX-converged '!!' line (values invented)."""
    src = data_file("aiida-quantumespresso/tests/parsers/fixtures/pw/relax_success/aiida.out").read_text()
    exx = (
        "!    total energy              =     -22.65170508 Ry\n"
        "     convergence has been achieved in   6 iterations\n\n"
        "     EXX: now go back to refine exchange calculation\n\n"
        "     total energy              =     -22.70000000 Ry\n"
        "!    total energy              =     -22.71234567 Ry\n"
        "     est. exchange err (dexx)  =       0.00012345 Ry\n"
        "     convergence has been achieved in   4 iterations\n\n"
        "     EXX: now go back to refine exchange calculation\n\n"
        "!    total energy              =     -22.71300000 Ry\n"
        "     convergence has been achieved in   3 iterations\n\n"
        "!!   total energy              =     -22.71311111 Ry\n"
        "     est. exchange err (dexx)  =       0.00000001 Ry\n"
    )
    pat = re.compile(r"^!    total energy.*\n(?:.*\n)*?     convergence has been achieved.*\n", re.M)
    assert len(pat.findall(src)) == 1
    p = tmp_path / "exx.out"
    p.write_text(pat.sub(exx, src))
    return p


def test_exx_double_bang_energy(tmp_path):
    frames, _ = read(_exx_excerpt(tmp_path))
    assert len(frames) == 1
    assert frames[0].energy == pytest.approx(-22.71311111 * RY, rel=1e-12)
    assert frames[0].converged and frames[0].forces is not None


def test_exx_without_double_bang_is_unconverged(tmp_path):
    """SYNTHETIC (see _exx_excerpt): EXX loop started but '!!' never printed."""
    p = _exx_excerpt(tmp_path)
    p.write_text(p.read_text().replace("!!   total energy", "     total energy"))
    frames, rep = read(p)
    assert frames == [] and rep.dropped == {"scf-unconverged": 1}


def test_vc_md_cell_per_step():
    path = data_file("q-e/test-suite/pw_vc-relax/vc-md1.benchmark.out")
    text = path.read_text()
    frames, rep = read(path)
    blocks = re.findall(r"CELL_PARAMETERS \(alat=\s*(\S+)\)\n((?:.*\n){3})", text)
    assert len(frames) == 10 and len(blocks) == 10
    for k in range(1, 10):  # cell printed after step k-1 belongs to step k
        alat, rows = blocks[k - 1]
        ref = np.array([r.split() for r in rows.splitlines()], dtype=float) * float(alat) * BOHR
        np.testing.assert_allclose(frames[k].cell, ref, rtol=1e-12)
    vols = [abs(np.linalg.det(f.cell)) for f in frames]
    assert len(set(np.round(vols, 6))) == 10  # cell changes every step
    # positions (crystal) printed after step k-1, Cartesian with the new cell
    pos = re.findall(r"ATOMIC_POSITIONS \(crystal\)\n((?:.*\n){2})", text)
    for k in range(1, 10):
        frac = np.array([r.split()[1:4] for r in pos[k - 1].splitlines()], dtype=float)
        np.testing.assert_allclose(frames[k].positions, frac @ frames[k].cell, rtol=1e-10, atol=1e-12)
    assert rep.settings["extra"]["calculation"] == "vc-md"


def test_vc_md_stress_matches_ase():
    import ase.io

    path = data_file("q-e/test-suite/pw_vc-relax/vc-md1.benchmark.out")
    frames, _ = read(path)
    ase_frames = ase.io.read(path, index=":", format="espresso-out")
    assert len(ase_frames) == len(frames)
    for f, a in zip(frames, ase_frames):
        np.testing.assert_allclose(f.stress, a.get_stress(voigt=False), rtol=1e-6, atol=1e-10)
        np.testing.assert_allclose(f.cell, a.cell[:], rtol=1e-6)


def _ibrav_cell(ibrav: int, celldm: list[float]) -> np.ndarray:
    a = celldm[0] * BOHR
    if ibrav == 2:
        return a / 2 * np.array([[-1, 0, 1], [0, 1, 1], [-1, 1, 0]])
    if ibrav == 6:
        return a * np.array([[1, 0, 0], [0, 1, 0], [0, 0, celldm[2]]])
    raise NotImplementedError


@pytest.mark.parametrize("rel,ibrav", [
    ("q-e/test-suite/pw_scf/scf.benchmark.out", 2),
    ("q-e/test-suite/pw_md/md.benchmark.out", 2),
    ("q-e/test-suite/pw_relax/relax2.benchmark.out", 6),
])
def test_ibrav_cells(rel, ibrav):
    path = data_file(rel)
    text = path.read_text()
    assert int(re.search(r"bravais-lattice index\s*=\s*(\d+)", text).group(1)) == ibrav
    celldm = [float(x) for x in re.findall(r"celldm\(\d\)=\s*(\S+)", text)]
    frames, _ = read(path)
    for f in frames:  # fixed cell: every frame
        np.testing.assert_allclose(f.cell, _ibrav_cell(ibrav, celldm), rtol=1e-6, atol=1e-9)


def test_relax2_positions_per_step():
    path = data_file("q-e/test-suite/pw_relax/relax2.benchmark.out")
    text = path.read_text()
    frames, rep = read(path)
    assert len(frames) == 15 and rep.settings["extra"]["calculation"] == "relax"
    blocks = re.findall(r"ATOMIC_POSITIONS \(alat\)\n((?:.*\n){7})", text)
    assert len(blocks) == 15  # 14 new geometries + the final-coordinates repeat
    for k in range(1, 15):
        ref = np.array([r.split()[1:4] for r in blocks[k - 1].splitlines()], dtype=float) * _alat(text) * BOHR
        np.testing.assert_allclose(frames[k].positions, ref, rtol=1e-12)
    np.testing.assert_allclose(frames[-1].positions, frames[-1].positions)


def test_md_matches_ase_forces_positions():
    """ASE is right on md.benchmark.out (one '!' per step): same signs and values
    up to the CODATA 2006/2018 factor (~1e-7)."""
    import ase.io

    path = data_file("q-e/test-suite/pw_md/md.benchmark.out")
    frames, _ = read(path)
    ase_frames = ase.io.read(path, index=":", format="espresso-out")
    assert len(frames) == len(ase_frames) == 50
    for f, a in zip(frames, ase_frames):
        np.testing.assert_allclose(f.positions, a.positions, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(f.forces, a.get_forces(), rtol=1e-6, atol=1e-9)
        assert f.energy == pytest.approx(a.get_potential_energy(), rel=1e-6)
        assert f.symbols == a.get_chemical_symbols()
    # the CODATA difference is visible: 8.7e-8 relative
    rel = frames[0].energy / ase_frames[0].get_potential_energy() - 1
    assert 5e-8 < abs(rel) < 1.2e-7


def _convert_positions(tmp_path: Path, unit: str) -> tuple[Path, Path]:
    """SYNTHETIC edit of md.benchmark.out: every ATOMIC_POSITIONS (alat) block
    rewritten in another unit (same geometry)."""
    src = data_file("q-e/test-suite/pw_md/md.benchmark.out")
    text = src.read_text()
    alat = _alat(text)
    cell = expected_header_cell_ang(text)  # fixed cell (md)

    def repl(m):
        out = [f"ATOMIC_POSITIONS ({unit})"]
        for ln in m.group(1).splitlines():
            lab, *xyz = ln.split()
            v = np.array(xyz, dtype=float) * alat  # bohr
            if unit == "angstrom":
                v = v * BOHR
            elif unit == "crystal":
                v = np.linalg.solve(cell.T, v * BOHR)
            out.append(f"{lab} " + " ".join(f"{x:.12f}" for x in v))
        return "\n".join(out) + "\n"

    new = re.sub(r"ATOMIC_POSITIONS \(alat\)\n((?:\S+\s+\S+\s+\S+\s+\S+\n){2})", repl, text)
    assert new != text
    p = tmp_path / f"md_{unit}.out"
    p.write_text(new)
    return src, p


@pytest.mark.parametrize("unit", ["bohr", "angstrom", "crystal"])
def test_positions_units(tmp_path, unit):
    src, p = _convert_positions(tmp_path, unit)
    ref, _ = read(src)  # alat
    got, _ = read(p)
    assert len(ref) == len(got) == 50
    for a, b in zip(ref, got):
        np.testing.assert_allclose(b.positions, a.positions, rtol=0, atol=1e-9)


def test_left_handed_cell_kept(tmp_path):
    """SYNTHETIC: scf.benchmark.out with a(1) negated (left-handed cell)."""
    src = data_file("q-e/test-suite/pw_scf/scf.benchmark.out").read_text()
    m = re.search(r"a\(1\) = \(\s*(\S+)\s+(\S+)\s+(\S+)\s*\)", src)
    neg = "a(1) = ( " + "  ".join(f"{-float(x):10.6f}" for x in m.groups()) + " )"
    p = tmp_path / "left.out"
    p.write_text(src[:m.start()] + neg + src[m.end():])
    ref, _ = read(data_file("q-e/test-suite/pw_scf/scf.benchmark.out"))
    got, _ = read(p)
    assert np.linalg.det(ref[0].cell) > 0 > np.linalg.det(got[0].cell)
    np.testing.assert_allclose(got[0].cell[0], -ref[0].cell[0])
    np.testing.assert_allclose(got[0].cell[1:], ref[0].cell[1:])
    np.testing.assert_allclose(got[0].positions, ref[0].positions)  # no rotation


def test_spin_lsda():
    path = data_file("q-e/test-suite/pw_lsda/lsda.benchmark.out")
    text = path.read_text()
    frames, rep = read(path)
    assert rep.settings["spin_polarized"] is True
    last_magn = float(re.findall(r"magn:\s+(\S+)", text)[-1])
    assert frames[0].magmoms is not None
    np.testing.assert_allclose(frames[0].magmoms, [last_magn])
    assert frames[0].symbols == ["Ni"]


def test_non_spin_has_no_magmoms():
    frames, rep = read(data_file("q-e/test-suite/pw_md/md.benchmark.out"))
    assert all(f.magmoms is None for f in frames) and rep.settings["spin_polarized"] is False


def test_interrupted_relax_zero_frames_warns():
    path = data_file("aiida-quantumespresso/tests/parsers/fixtures/pw/failed_interrupted_relax/aiida.out")
    frames, rep = read(path)
    assert frames == []
    assert rep.warnings and any("0 frames" in w for w in rep.warnings)
    assert detect(path) is QEPwReader


def test_step_cut_before_forces_is_dropped(tmp_path):
    """SYNTHETIC: md.benchmark.out cut just before the 3rd 'Forces acting' line
    (energy printed, forces not yet): the 2 complete steps are kept, the 3rd is
    dropped as 'incomplete-step' (its labels would be partial)."""
    text = data_file("q-e/test-suite/pw_md/md.benchmark.out").read_text()
    idx = [m.start() for m in re.finditer(r"^\s+Forces acting", text, re.M)][2]
    p = tmp_path / "cut.out"
    p.write_text(text[:idx])
    frames, rep = read(p)
    assert len(frames) == 2 and rep.dropped == {"incomplete-step": 1}
    assert rep.warnings


def test_cut_mid_line_is_truncation_not_corruption(tmp_path):
    """SYNTHETIC: cut in the middle of a force line (no trailing newline)."""
    text = data_file("q-e/test-suite/pw_md/md.benchmark.out").read_text()
    idx = [m.start() for m in re.finditer(r"^\s+atom\s+2 type  1   force", text, re.M)][2]
    p = tmp_path / "cut.out"
    p.write_text(text[:text.index("\n", idx) - 5])  # inside the last number
    frames, rep = read(p)
    assert len(frames) == 2 and rep.dropped == {"incomplete-step": 1}
    assert any("middle of line" in w for w in rep.warnings)


def test_step_cut_inside_forces_is_dropped(tmp_path):
    """SYNTHETIC: cut after the first force line of step 3."""
    text = data_file("q-e/test-suite/pw_md/md.benchmark.out").read_text()
    idx = [m.end() for m in re.finditer(r"^\s+atom\s+1 type  1   force.*\n", text, re.M)][2]
    p = tmp_path / "cut.out"
    p.write_text(text[:idx])
    frames, rep = read(p)
    assert len(frames) == 2 and rep.dropped == {"incomplete-step": 1}


def _unconverged(tmp_path: Path) -> Path:
    """SYNTHETIC: scf.benchmark.out with its SCF marked not converged (as pw.x
    prints it: no '!' on the energy, 'convergence NOT achieved')."""
    text = data_file("q-e/test-suite/pw_scf/scf.benchmark.out").read_text()
    text = re.sub(r"^!(\s+total energy)", r" \1", text, flags=re.M)
    text = re.sub(r"convergence has been achieved in\s+\d+ iterations",
                  "convergence NOT achieved after 100 iterations: stopping", text)
    p = tmp_path / "unconv.out"
    p.write_text(text)
    return p


def test_unconverged_dropped_by_default(tmp_path):
    frames, rep = read(_unconverged(tmp_path))
    assert frames == [] and rep.dropped == {"scf-unconverged": 1}


def test_unconverged_kept_on_request(tmp_path):
    p = _unconverged(tmp_path)
    text = p.read_text()
    last = float(re.findall(r"total energy\s+=\s+(\S+) Ry", text)[-1])
    frames, rep = read(p, keep_unconverged=True)
    assert len(frames) == 1 and frames[0].converged is False and not rep.dropped
    assert frames[0].energy == pytest.approx(last * RY, rel=1e-12)


def test_corrupt_number_reports_line(tmp_path):
    """SYNTHETIC: one force value of md.benchmark.out corrupted."""
    lines = data_file("q-e/test-suite/pw_md/md.benchmark.out").read_text().splitlines(keepends=True)
    n = next(i for i, ln in enumerate(lines) if "force =" in ln)
    lines[n] = lines[n].replace("-0.02329809", "-0.023x9809")
    p = tmp_path / "bad.out"
    p.write_text("".join(lines))
    with pytest.raises(FormatError) as ei:
        read(p)
    assert ei.value.line == n + 1
    assert f"bad.out:{n + 1}" in str(ei.value)


def test_corrupt_energy_reports_line(tmp_path):
    lines = data_file("dpdata/tests/qe.scf/Al.out").read_text().splitlines(keepends=True)
    n = next(i for i, ln in enumerate(lines) if ln.startswith("!"))
    lines[n] = lines[n].replace("-21.76174003", "-21.7617A003")
    p = tmp_path / "bad.out"
    p.write_text("".join(lines))
    with pytest.raises(FormatError) as ei:
        read(p)
    assert ei.value.line == n + 1


def test_sniff_by_content(tmp_path):
    src = data_file("q-e/test-suite/pw_scf/scf.benchmark.out")
    p = tmp_path / "no_extension"
    p.write_bytes(src.read_bytes())
    assert detect(p) is QEPwReader
    assert not QEPwReader.sniff(p, b"<qes:espresso ...>")


@pytest.mark.parametrize("rel", [
    "q-e/test-suite/pw_vc-relax/vc-md1.benchmark.out",
    "q-e/test-suite/pw_relax/relax2.benchmark.out",
])
def test_truncated_anywhere_gives_prefix_of_full_run(tmp_path, rel):
    """SYNTHETIC cuts at 60 positions: never an exception; the frames are a
    prefix of the complete run's frames, identical in value."""
    text = data_file(rel).read_text()
    full, _ = read(data_file(rel))
    p = tmp_path / "cut.out"
    for cut in np.linspace(0, len(text) - 1, 60).astype(int):
        p.write_text(text[:cut])
        got, rep = read(p)
        assert len(got) <= len(full)
        for a, b in zip(got, full):
            assert a.energy == b.energy
            np.testing.assert_array_equal(a.positions, b.positions)
            np.testing.assert_array_equal(a.cell, b.cell)
            np.testing.assert_array_equal(a.forces, b.forces)
        if not got:
            assert rep.warnings


def test_spin_qe7_magnetic_moment_format(tmp_path):
    """SYNTHETIC: lsda.benchmark.out with its per-site lines rewritten in the
    QE >= 6.6 layout ('atom 1 (R=0.200) charge= ... magn= ...')."""
    text = data_file("q-e/test-suite/pw_lsda/lsda.benchmark.out").read_text()
    new = re.sub(r"atom:\s+(\d+)\s+charge:\s+(\S+)\s+magn:\s+(\S+)\s+constr:\s+\S+",
                 r"atom    \1 (R=0.200)  charge=  \2  magn=  \3", text)
    assert new != text
    p = tmp_path / "lsda7.out"
    p.write_text(new)
    frames, rep = read(p)
    last = float(re.findall(r"magn=\s+(\S+)", new)[-1])
    np.testing.assert_allclose(frames[0].magmoms, [last])
    assert rep.settings["spin_polarized"] is True
