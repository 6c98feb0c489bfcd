"""VASP OUTCAR reader on the real shared test files.

Expected values are extracted in each test from the file text with small,
independent regular expressions (never typed in from MANIFEST.md).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from mlds.errors import FormatError
from mlds.io.registry import READERS
from mlds.io.vasp_outcar import VaspOutcarReader
from tests.conftest import data_file as tf

P = "dpdata/tests/poscars/"
C = "custodian/tests/files/"
OUTCARS = [
    P + "OUTCAR.h2o.md.10",
    P + "OUTCAR.ch4.1step",
    P + "OUTCAR.ch4.unconverged",
    P + "6362_OUTCAR",
    P + "OUTCAR.Ge.vdw",
    P + "Ti-O-Ti-v6/OUTCAR",
    C + "potim/OUTCAR",
    C + "npt_common/OUTCAR",
    C + "large_cell_real_optlay/OUTCAR",
]
KB = 0.1 / 160.2176634  # 1 kB in eV/Å³ with the spec's CODATA 2018 constants (e = 1.602176634e-19 C)


# ----------------------------------------------------------------------------- independent extraction
def ref_steps(text: str) -> list[dict]:
    """One dict per 'free  energy   TOTEN' block (ab-initio ionic step), straight from the text."""
    lines = text.splitlines()
    nions = int(re.search(r"NIONS\s*=\s*(\d+)", text).group(1))
    nelm = int(re.search(r"NELM\s*=\s*(\d+);", text).group(1))
    steps, cur = [], {"iters": [], "kb": None, "forces": None, "cell": None}
    cell = None
    i = 0
    while i < len(lines):
        ln = lines[i]
        m = re.search(r"Iteration\s*\d+\(\s*(\d+)\)", ln)
        if m:
            cur["iters"].append(int(m.group(1)))
        elif ln.strip().startswith("in kB"):
            cur["kb"] = [float(x) for x in ln.split()[2:8]]
        elif "direct lattice vectors" in ln:
            cell = np.array([[float(x) for x in lines[i + k].split()[:3]] for k in (1, 2, 3)])
        elif "TOTAL-FORCE" in ln:
            rows = [[float(x) for x in lines[i + 2 + k].split()[:6]] for k in range(nions)]
            cur["forces"] = np.array(rows)
            cur["cell"] = cell
        elif "free  energy   TOTEN" in ln:
            cur["toten"] = float(ln.split("=")[1].split()[0])
            sig = re.search(r"energy\(sigma->0\) =\s*(\S+)", lines[i + 2])
            cur["sigma0"] = float(sig.group(1))
            cur["converged"] = max(cur["iters"] or [0]) < nelm
            steps.append(cur)
            cur = {"iters": [], "kb": None, "forces": None, "cell": None}
        i += 1
    return steps


def kb_to_sigma(kb):
    xx, yy, zz, xy, yz, zx = kb
    return -np.array([[xx, xy, zx], [xy, yy, yz], [zx, yz, zz]]) * KB


def read(path, **kw):
    r = VaspOutcarReader(path, **kw)
    frames = list(r)
    return frames, r.report


# ----------------------------------------------------------------------------- every file
@pytest.mark.parametrize("rel", OUTCARS)
def test_every_outcar_matches_file_text(rel):
    path = tf(rel)
    text = path.read_text(errors="replace")
    ref = ref_steps(text)
    frames, rep = read(path)
    n_conv = sum(s["converged"] for s in ref)
    assert len(frames) == n_conv
    assert rep.kept == n_conv
    assert sum(rep.dropped.values()) == len(ref) - n_conv
    assert rep.code == "VASP"
    for fr in frames:
        s = ref[fr.info["step"]]
        assert fr.energy == pytest.approx(s["toten"], rel=1e-6)
        assert fr.energy_sigma0 == pytest.approx(s["sigma0"], rel=1e-6)
        np.testing.assert_allclose(fr.positions, s["forces"][:, :3], rtol=1e-6, atol=1e-12)
        np.testing.assert_allclose(fr.forces, s["forces"][:, 3:], rtol=1e-6, atol=1e-12)
        np.testing.assert_allclose(fr.cell, s["cell"], rtol=1e-6, atol=1e-12)
        np.testing.assert_allclose(fr.stress, kb_to_sigma(s["kb"]), rtol=1e-6, atol=1e-15)
        assert fr.pbc.all() and fr.converged
    if frames:  # the last kept frame against the LAST TOTAL-FORCE block / TOTEN line of the file
        last_toten = float(re.findall(r"free  energy   TOTEN\s*=\s*(\S+)", text)[-1])
        last_conv = [s for s in ref if s["converged"]][-1]
        if last_conv is ref[-1]:
            assert frames[-1].energy == pytest.approx(last_toten, rel=1e-6)
    # species from the header, in POSCAR order
    ipt = [int(x) for x in re.search(r"ions per type =(.*)", text).group(1).split()]
    if frames:
        assert len(frames[0].numbers) == sum(ipt)


def test_settings_h2o():
    _, rep = read(tf(P + "OUTCAR.h2o.md.10"))
    st = rep.settings
    text = tf(P + "OUTCAR.h2o.md.10").read_text()
    assert st["code"] == "VASP"
    assert st["code_version"] == re.search(r"vasp\.(\d+\.\d+\.\d+)", text).group(1)
    assert st["functional"] == "PBE"
    assert st["plane_wave_cutoff_eV"] == float(re.search(r"ENCUT\s*=\s*(\S+)", text).group(1))
    assert st["kpoints"]["mesh"] == [int(x) for x in re.search(r"generate k-points for:(.*)", text).group(1).split()]
    assert st["smearing"] == {"method": "gaussian", "width_eV": 0.05}
    assert st["spin_polarized"] is False
    assert [p["element"] for p in st["pseudopotentials"]] == ["O", "H"]
    assert st["pseudopotentials"][0]["name"] == "PAW_PBE O 08Apr2002"
    assert st["extra"]["NELM"] == 60 and st["extra"]["IBRION"] == 0 and st["extra"]["EDIFF"] == 1e-6


def test_kpoint_shift_monkhorst_pack_even_mesh():
    """ch4: 2x2x2 Monkhorst-Pack; VASP 5 prints no shift line, the first k-point (1/4) gives s = 1/2."""
    path = tf(P + "OUTCAR.ch4.unconverged")
    text = path.read_text()
    first = [float(x) for x in text.split("Following reciprocal coordinates:")[1].splitlines()[2].split()[:3]]
    _, rep = read(path)
    mesh = rep.settings["kpoints"]["mesh"]
    assert rep.settings["kpoints"]["shift"] == pytest.approx([(k * n) % 1 for k, n in zip(first, mesh)])
    assert rep.settings["kpoints"]["shift"] == [0.5, 0.5, 0.5]


def test_settings_vasp6_and_mp_smearing():
    _, rep = read(tf(P + "Ti-O-Ti-v6/OUTCAR"))
    st = rep.settings
    assert st["code_version"] == "6.3.0"
    assert st["smearing"] == {"method": "methfessel-paxton", "order": 1, "width_eV": 0.2}
    # VASP 6 prints no TITEL: species from the per-type POTCAR: lines (3 types: Ti O Ti)
    assert [p["element"] for p in st["pseudopotentials"]] == ["Ti", "O", "Ti"]


# ----------------------------------------------------------------------------- quirks
def test_vdw_columns_ignored():
    """OUTCAR.Ge.vdw: 'w/o vdW' extra columns on energy and TOTAL-FORCE lines (ASE 3.29 crashes)."""
    path = tf(P + "OUTCAR.Ge.vdw")
    text = path.read_text()
    frames, rep = read(path)
    assert len(frames) == 1
    line = re.search(r"free  energy   TOTEN\s*=.*", text).group(0)
    assert "w/o vdW" in line
    assert frames[0].energy == pytest.approx(float(line.split("=")[1].split()[0]), rel=1e-12)
    i = text.index("FORCE-w/o vdW")
    rows = text[i:].splitlines()[2:2 + 8]
    assert len(rows[0].split()) == 9  # 3 positions + 3 forces + 3 forces w/o vdW
    np.testing.assert_allclose(frames[0].forces, [[float(x) for x in r.split()[3:6]] for r in rows])
    assert np.isfinite(frames[0].forces).all()  # the w/o vdW columns contain a NaN, ignored
    assert rep.settings["extra"]["vdw_correction"] is True
    import ase.io

    with pytest.raises(Exception):
        ase.io.read(path, ":", format="vasp-out")


def test_nelm_unconverged_dropped_and_counted():
    path = tf(P + "OUTCAR.ch4.unconverged")
    ref = ref_steps(path.read_text())
    frames, rep = read(path)
    bad = [k for k, s in enumerate(ref) if not s["converged"]]
    assert len(bad) == 2
    assert rep.dropped == {"scf-unconverged": 2}
    assert [f.info["step"] for f in frames] == [k for k in range(len(ref)) if k not in bad]
    frames1, rep1 = read(tf(P + "OUTCAR.ch4.1step"))  # NELM=1: the only step is garbage
    assert frames1 == [] and rep1.dropped == {"scf-unconverged": 1}


def test_keep_unconverged_flag():
    path = tf(P + "OUTCAR.ch4.unconverged")
    ref = ref_steps(path.read_text())
    frames, rep = read(path, keep_unconverged=True)
    assert len(frames) == len(ref) and rep.dropped == {}
    assert [f.converged for f in frames] == [s["converged"] for s in ref]
    for f, s in zip(frames, ref):
        assert f.energy == pytest.approx(s["toten"], rel=1e-6)


def test_npt_cell_changes_per_step():
    path = tf(C + "npt_common/OUTCAR")
    ref = ref_steps(path.read_text())
    frames, _ = read(path)
    assert len(frames) == len(ref) == 10
    vols = [abs(np.linalg.det(f.cell)) for f in frames]
    assert len(set(np.round(vols, 6))) == len(frames)  # a new cell every step
    for f, s in zip(frames, ref):
        np.testing.assert_allclose(f.cell, s["cell"], rtol=1e-9)


def test_spin_polarised_magmoms():
    path = tf(C + "potim/OUTCAR")
    text = path.read_text()
    frames, rep = read(path)
    assert rep.settings["spin_polarized"] is True
    nions = int(re.search(r"NIONS\s*=\s*(\d+)", text).group(1))
    blocks = [m.start() for m in re.finditer(r"magnetization \(x\)", text)]
    assert len(blocks) == len(frames)
    for f, start in zip(frames, blocks):
        rows = text[start:].splitlines()[4:4 + nions]
        np.testing.assert_allclose(f.magmoms, [float(r.split()[-1]) for r in rows])
    nospin, _ = read(tf(P + "OUTCAR.h2o.md.10"))
    assert all(f.magmoms is None for f in nospin)


def test_truncated_real_file_keeps_complete_steps():
    """potim/OUTCAR stops inside the SCF of ionic step 4: 3 steps and a warning."""
    path = tf(C + "potim/OUTCAR")
    frames, rep = read(path)
    assert len(frames) == len(ref_steps(path.read_text())) == 3
    assert any("ends inside ionic step 3" in w for w in rep.warnings)


def test_truncated_mid_force_block(tmp_path):
    src = tf(P + "OUTCAR.h2o.md.10")
    lines = src.read_text().splitlines(keepends=True)
    force_lines = [i for i, ln in enumerate(lines) if "TOTAL-FORCE" in ln]
    cut = tmp_path / "OUTCAR"
    cut.write_text("".join(lines[: force_lines[4] + 4]))  # inside the 5th step's force table
    frames, rep = read(cut)
    assert len(frames) == 4
    assert rep.warnings and "ends inside ionic step 4" in rep.warnings[0]


def test_zero_step_file_warns_not_raises():
    frames, rep = read(tf(C + "large_cell_real_optlay/OUTCAR"))
    assert frames == [] and rep.kept == 0
    assert any("no complete ionic step" in w for w in rep.warnings)
    assert rep.settings["smearing"]["method"] == "tetrahedron"


def _modified_copy(tmp_path, rel, pick, new):
    lines = tf(rel).read_text().splitlines(keepends=True)
    idx = next(i for i, ln in enumerate(lines) if pick(ln))
    lines[idx] = new(lines[idx])
    out = tmp_path / "OUTCAR"
    out.write_text("".join(lines))
    return out, idx + 1


def test_header_inconsistency_is_format_error(tmp_path):
    path, lineno = _modified_copy(tmp_path, P + "OUTCAR.h2o.md.10", lambda ln: "ions per type" in ln,
                                  lambda ln: ln.replace("2   4", "2   5"))
    with pytest.raises(FormatError) as exc:
        read(path)
    assert exc.value.line == lineno
    assert "NIONS" in exc.value.message and f":{lineno}:" in str(exc.value)


def test_corrupt_number_is_format_error(tmp_path):
    text = tf(P + "OUTCAR.h2o.md.10").read_text()
    target = text.splitlines()[text[: text.index("TOTAL-FORCE")].count("\n") + 3]  # 2nd atom row of 1st block
    tok = target.split()[4]
    path, lineno = _modified_copy(tmp_path, P + "OUTCAR.h2o.md.10", lambda ln: ln == target + "\n",
                                  lambda ln: ln.replace(tok, tok[:3] + "x" + tok[4:]))
    with pytest.raises(FormatError) as exc:
        read(path)
    assert exc.value.line == lineno
    assert "corrupt number" in exc.value.message


def test_corrupt_energy_is_format_error(tmp_path):
    path, lineno = _modified_copy(tmp_path, P + "OUTCAR.h2o.md.10", lambda ln: "free  energy   TOTEN" in ln,
                                  lambda ln: ln.replace("-28.", "-2*."))
    with pytest.raises(FormatError) as exc:
        read(path)
    assert exc.value.line == lineno


def test_glued_fixed_format_numbers(tmp_path):
    """Fortran overflow glues a negative number to the previous one: '-1.234567-12.345678' is two numbers."""
    src = tf(P + "OUTCAR.h2o.md.10").read_text()
    ref = ref_steps(src)
    kb_line = next(ln for ln in src.splitlines() if ln.strip().startswith("in kB"))
    glued = re.sub(r"(\d)\s+(-\d)", r"\1\2", kb_line)  # every negative value glued to its predecessor
    assert len(glued.split()) < len(kb_line.split())
    path = tmp_path / "OUTCAR"
    path.write_text(src.replace(kb_line, glued, 1))
    frames, _ = read(path)
    np.testing.assert_allclose(frames[0].stress, kb_to_sigma(ref[0]["kb"]))


@pytest.mark.parametrize("chunk", [1 << 19, 1500])  # 1500 bytes: chunk ends between every ML line and the next
@pytest.mark.parametrize("where", ["between-steps", "inside-step"])
def test_ml_predicted_steps_dropped(tmp_path, monkeypatch, where, chunk):
    """No real MLFF OUTCAR is available: this builds a SYNTHETIC one.

    Starting from the real OUTCAR.h2o.md.10, an ML-predicted ionic step is inserted
    after every ab-initio step, written with the markers formats.md §3.1 lists for
    VASP >= 6.3 on-the-fly runs (``ML FORCE on cell``, ``TOTAL-FORCE (eV/Angst) (ML)``,
    ``ML FREE ENERGIE OF THE ION-ELECTRON SYSTEM``, ``free  energy ML TOTEN``,
    ``ML energy(sigma->0)``) and no SCF iterations.  The ML blocks carry deliberately
    wrong labels (+1 eV, forces x0.9) so any leak into the frames would show.
    ``inside-step`` puts the ML block between an ab-initio step's forces and its
    energy block (the ab-initio step must still be kept).
    """
    src = tf(P + "OUTCAR.h2o.md.10").read_text()
    ref = ref_steps(src)
    lines = src.splitlines(keepends=True)
    out = []
    k = 0
    for i, ln in enumerate(lines):
        if where == "between-steps":
            out.append(ln)
            hit = "energy(sigma->0)" in ln and "free  energy   TOTEN" in lines[i - 2]
        else:
            hit = "FREE ENERGIE OF THE ION-ELECTRON SYSTEM" in ln
        if hit:
            out += _ml_block(ref[k])
            k += 1
        if where == "inside-step":
            out.append(ln)
    path = tmp_path / "OUTCAR"
    path.write_text("".join(out))
    from mlds.io import vasp_outcar

    monkeypatch.setattr(vasp_outcar, "_CHUNK", chunk)
    frames, rep = read(path)
    assert rep.dropped == {"ml-predicted": len(ref)}
    assert len(frames) == len(ref)
    for f, s in zip(frames, ref):
        assert f.energy == pytest.approx(s["toten"], rel=1e-9)
        np.testing.assert_allclose(f.forces, s["forces"][:, 3:])
        np.testing.assert_allclose(f.cell, s["cell"])
        np.testing.assert_allclose(f.stress, kb_to_sigma(s["kb"]))
    # ab-initio steps are every other energy block
    first = 0 if where == "between-steps" else 1
    assert [f.info["step"] for f in frames] == list(range(first, 2 * len(ref), 2))


def _ml_block(s: dict) -> list[str]:
    """An ML-predicted step in the VASP 6.3 layout, with deliberately wrong labels."""
    ml = ["\n  ML FORCE on cell =-STRESS in cart. coord.  units (eV):\n",
          "  Direction    XX          YY          ZZ          XY          YZ          ZX\n",
          "  " + "-" * 86 + "\n",
          "  Total        1.00000     1.00000     1.00000     0.00000     0.00000     0.00000\n",
          "  in kB       99.00000    99.00000    99.00000     0.00000     0.00000     0.00000\n\n",
          "  volume of cell :     1000.00\n",
          "      direct lattice vectors                 reciprocal lattice vectors\n"]
    ml += ["    %12.9f %12.9f %12.9f    0.1 0.0 0.0\n" % tuple(r * 1.01) for r in s["cell"]]
    ml += ["\n POSITION                                       TOTAL-FORCE (eV/Angst) (ML)\n", " " + "-" * 83 + "\n"]
    ml += ["%13.5f%13.5f%13.5f   %14.6f%14.6f%14.6f\n" % (*r[:3], *(r[3:] * 0.9)) for r in s["forces"]]
    ml += [" " + "-" * 83 + "\n", "    total drift:      0.0 0.0 0.0\n\n",
           "  ML FREE ENERGIE OF THE ION-ELECTRON SYSTEM (eV)\n",
           "  ---------------------------------------------------\n",
           "  free  energy ML TOTEN  = %18.8f eV\n\n" % (s["toten"] + 1.0),
           "  ML energy  without entropy=%18.8f  ML energy(sigma->0) =%18.8f\n\n" % (s["toten"] + 1.0, s["toten"] + 1.0)]
    return ml


def test_missing_forces_step_dropped(tmp_path):
    """NWRITE-style step without the POSITION/TOTAL-FORCE block: dropped as 'no-forces'."""
    lines = tf(P + "OUTCAR.h2o.md.10").read_text().splitlines(keepends=True)
    i = [k for k, ln in enumerate(lines) if "TOTAL-FORCE" in ln][2]
    end = i + 2 + 6 + 1
    path = tmp_path / "OUTCAR"
    path.write_text("".join(lines[:i] + lines[end:]))
    frames, rep = read(path)
    assert len(frames) == 9 and rep.dropped == {"no-forces": 1}
    assert 2 not in [f.info["step"] for f in frames]


# ----------------------------------------------------------------------------- ASE agreement
def test_sign_conventions_match_ase():
    """Where ASE 3.29 is right (h2o.md.10): positions, forces, stress sign/order, energies."""
    import ase.io
    import ase.units

    path = tf(P + "OUTCAR.h2o.md.10")
    frames, _ = read(path)
    images = ase.io.read(path, ":", format="vasp-out")
    assert len(images) == len(frames)
    for f, a in zip(frames, images):
        assert list(a.numbers) == list(f.numbers)
        np.testing.assert_allclose(f.positions, a.positions, atol=1e-12)
        np.testing.assert_allclose(f.forces, a.get_forces(), atol=1e-12)
        np.testing.assert_allclose(f.cell, a.cell[:], atol=1e-12)
        # same sign and order; ASE converts kB with CODATA 2014 (ase.units.GPa), mlds with the spec's 2018
        codata = ase.units.GPa * 160.2176634
        assert codata != 1.0 and abs(codata - 1.0) < 1e-7
        np.testing.assert_allclose(f.stress, a.get_stress(voigt=False) / codata, rtol=1e-12, atol=1e-15)
        assert f.energy == pytest.approx(a.get_potential_energy(force_consistent=True), rel=1e-12)
        assert f.energy_sigma0 == pytest.approx(a.get_potential_energy(), rel=1e-12)


def test_unconverged_ase_keeps_mlds_drops():
    import ase.io

    path = tf(P + "OUTCAR.ch4.1step")
    assert len(ase.io.read(path, ":", format="vasp-out")) == 1
    assert read(path)[0] == []


# ----------------------------------------------------------------------------- registry / sniff
def test_registered_and_sniff():
    assert READERS["vasp-outcar"] is VaspOutcarReader
    head = tf(P + "OUTCAR.h2o.md.10").read_bytes()[:65536]
    assert VaspOutcarReader.sniff(Path("whatever.txt"), head)
    xml_head = tf(P + "vasprun.h2o.md.10.xml").read_bytes()[:65536]
    assert not VaspOutcarReader.sniff(Path("OUTCAR"), xml_head)
    assert not VaspOutcarReader.sniff(Path("OUTCAR"), b"hello world\n")


def test_header_without_ions_per_type_is_format_error(tmp_path):
    lines = tf(P + "OUTCAR.h2o.md.10").read_text().splitlines(keepends=True)
    lines = [ln for ln in lines if "ions per type" not in ln]
    first_iter = next(i for i, ln in enumerate(lines) if "Iteration" in ln) + 1
    path = tmp_path / "OUTCAR"
    path.write_text("".join(lines))
    with pytest.raises(FormatError) as exc:
        read(path)
    assert exc.value.line == first_iter


def test_file_cut_inside_header_warns(tmp_path):
    lines = tf(P + "OUTCAR.h2o.md.10").read_text().splitlines(keepends=True)
    path = tmp_path / "OUTCAR"
    path.write_text("".join(lines[:100]))
    frames, rep = read(path)
    assert frames == [] and rep.warnings


def test_too_few_potcars_is_format_error(tmp_path):
    """ions per type lists 3 types but the header has only 2 POTCARs (TITEL and POTCAR: lines)."""
    path, lineno = _modified_copy(tmp_path, P + "OUTCAR.h2o.md.10", lambda ln: "ions per type" in ln,
                                  lambda ln: ln.replace("2   4", "2   3   1"))
    with pytest.raises(FormatError) as exc:
        read(path)
    assert exc.value.line == lineno and "POTCAR" in exc.value.message


def test_too_few_potcars_vasp6_is_format_error(tmp_path):
    """Same for a VASP 6 header (no TITEL lines, species from the POTCAR: lines)."""
    path, lineno = _modified_copy(tmp_path, P + "Ti-O-Ti-v6/OUTCAR", lambda ln: "ions per type" in ln,
                                  lambda ln: ln.replace("3   2   3", "3   2   2   1"))
    with pytest.raises(FormatError) as exc:
        read(path)
    assert exc.value.line == lineno and "POTCAR" in exc.value.message


def test_agrees_with_dpdata_where_dpdata_is_right():
    """dpdata 1.1.0: energy = TOTEN and virial = -σ·V (dpdata rotates cells, so compare eigenvalues)."""
    dpdata = pytest.importorskip("dpdata")
    path = tf(P + "OUTCAR.h2o.md.10")
    frames, _ = read(path)
    s = dpdata.LabeledSystem(str(path), fmt="vasp/outcar")
    assert len(s) == len(frames)
    for k, f in enumerate(frames):
        assert f.energy == pytest.approx(float(s["energies"][k]), rel=1e-12)
        vol = abs(np.linalg.det(f.cell))
        np.testing.assert_allclose(np.linalg.eigvalsh(s["virials"][k]), np.linalg.eigvalsh(-f.stress * vol), atol=1e-6)
        np.testing.assert_allclose(np.linalg.norm(s["forces"][k], axis=1), np.linalg.norm(f.forces, axis=1), atol=1e-9)


# ----------------------------------------------------------------------------- VASP <= 6.3: >10 species
def _longit_like(tmp_path, keep: int):
    """SYNTHETIC, from the real OUTCAR.h2o.md.10: its 'ions per type' line cut to ``keep`` counts and
    followed by a garbled second 'Dimension of arrays' block with NIONS = 3, as VASP <= 6.3 writes for
    runs with more than 10 species (dpdata's outcar.longit: 16 POTCARs, 10 counts, a second block
    claiming NIONS = 3; that file is not in the shared test data)."""
    text = tf(P + "OUTCAR.h2o.md.10").read_text()
    m = re.search(r"^(\s*ions per type =\s+)(\d+(?:\s+\d+)*)\s*$", text, re.M)
    counts = [int(c) for c in m.group(2).split()]
    nions_line = next(i for i, ln in enumerate(text.splitlines(), 1) if "NIONS =" in ln)
    garbled = (m.group(1) + "   ".join(str(c) for c in counts[:keep]) + "\n\n\n\n Dimension of arrays:\n"
               "   k-points           NKPTS =      2   k-points in BZ     NKDIM =      1   number of bands    NBANDS=  1\n"
               "   number of dos      NEDOS =      3   number of ions     NIONS =      3\n")
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "OUTCAR").write_text(text[:m.start()] + garbled + text[m.end() + 1:])
    ipt_line = text[:m.start()].count("\n") + 1
    return folder, counts, nions_line, ipt_line


def test_too_few_ion_counts_cites_the_real_nions_line(tmp_path):
    folder, counts, nions_line, ipt_line = _longit_like(tmp_path, keep=1)
    with pytest.raises(FormatError) as exc:
        read(folder / "OUTCAR")
    msg = str(exc.value)
    assert exc.value.line == ipt_line
    assert f"NIONS = {sum(counts)} (line {nions_line})" in msg and "NIONS = 3" not in msg
    assert "POSCAR" in msg and "vasprun.xml" in msg and "\n" not in msg


def test_too_few_ion_counts_recovered_from_vasprun_beside(tmp_path):
    """The real vasprun.xml of the same run beside the OUTCAR gives the counts; frames as from the intact file."""
    import shutil

    folder, counts, _, _ = _longit_like(tmp_path, keep=1)
    shutil.copy(tf(P + "vasprun.h2o.md.10.xml"), folder / "vasprun.xml")
    frames, rep = read(folder / "OUTCAR")
    intact, _ = read(tf(P + "OUTCAR.h2o.md.10"))
    assert len(frames) == len(intact) == 10
    for a, b in zip(frames, intact):
        assert np.array_equal(a.numbers, b.numbers) and np.array_equal(a.forces, b.forces) and a.energy == b.energy
    assert any("vasprun.xml beside it" in w and str(counts) in w for w in rep.warnings)


def test_too_few_ion_counts_recovered_from_poscar_or_refused(tmp_path):
    folder, counts, _, _ = _longit_like(tmp_path, keep=1)
    symbols = [m.group(1) for m in re.finditer(r"TITEL\s*=\s*\S+\s+([A-Z][a-z]?)", tf(P + "OUTCAR.h2o.md.10").read_text())]
    head = "h2o\n1.0\n10 0 0\n0 10 0\n0 0 10\n"
    poscar = folder / "POSCAR"
    poscar.write_text(head + " ".join(symbols) + "\n" + " ".join(str(c + 1) for c in counts) + "\nCartesian\n")
    with pytest.raises(FormatError, match="POSCAR lists .* which does not match"):
        read(folder / "OUTCAR")
    poscar.write_text(head + " ".join(str(c) for c in counts) + "\nCartesian\n")  # VASP 4 style: counts only
    frames, rep = read(folder / "OUTCAR")
    assert len(frames) == 10 and any("POSCAR beside it" in w for w in rep.warnings)


# ----------------------------------------------------------------------------- files larger than a chunk
def _long_outcar(tmp_path, repeats: int):
    """SYNTHETIC: the real npt_common OUTCAR with its 10 ionic steps repeated ``repeats`` times
    (header and end-of-job summary once): many read chunks, tables across chunk ends."""
    text = tf(C + "npt_common/OUTCAR").read_text()
    starts = [m.start() for m in re.finditer(r"^-+ Iteration\s+\d+\(\s*1\)", text, re.M)]
    end = text.index("\n", text.rfind("LOOP+")) + 1
    steps = [text[a:b] for a, b in zip(starts, starts[1:] + [end])]
    path = tmp_path / "OUTCAR"
    path.write_text(text[:starts[0]] + "".join(steps * repeats) + text[end:])
    return path, len(steps)


def test_long_file_frames_repeat_the_source_exactly(tmp_path):
    path, n = _long_outcar(tmp_path, 12)  # ~6 MB: a dozen chunks
    frames, rep = read(path)
    src, _ = read(tf(C + "npt_common/OUTCAR"))
    assert len(frames) == 12 * n and rep.warnings == []
    for k, f in enumerate(frames):
        s = src[k % n]
        assert np.array_equal(f.positions, s.positions) and np.array_equal(f.forces, s.forces)
        assert np.array_equal(f.cell, s.cell) and np.array_equal(f.stress, s.stress) and f.energy == s.energy


def test_long_file_error_names_its_line(tmp_path):
    path, _ = _long_outcar(tmp_path, 12)
    lines = path.read_text().splitlines(keepends=True)
    forces = [i for i, ln in enumerate(lines) if "TOTAL-FORCE" in ln]
    target = forces[100] + 2 + 40  # row 41 of the 101st table, far past the first chunk
    lines[target] = lines[target].replace(".", "x", 1)
    path.write_text("".join(lines))
    with pytest.raises(FormatError) as exc:
        read(path)
    assert exc.value.line == target + 1 and "corrupt number" in exc.value.message


@pytest.mark.parametrize("chunk", [3000, 1 << 19])
def test_nan_step_warning_names_its_line_whatever_the_chunks(tmp_path, monkeypatch, chunk):
    """Tiny chunks put chunk ends everywhere (inside tables, between an energy and the end of its
    step): frames and the dropped step's line number must not depend on them."""
    from mlds.io import vasp_outcar

    path, n = _long_outcar(tmp_path, 3)
    lines = path.read_text().splitlines(keepends=True)
    totens = [i for i, ln in enumerate(lines) if "free  energy   TOTEN" in ln]
    bad = totens[17]
    lines[bad] = re.sub(r"=\s*(-?\d+\.\d+)", "= NaN", lines[bad], count=1)
    path.write_text("".join(lines))
    monkeypatch.setattr(vasp_outcar, "_CHUNK", chunk)
    frames, rep = read(path)
    src, _ = read(tf(C + "npt_common/OUTCAR"))
    assert len(frames) == 3 * n - 1 and rep.dropped == {"non-finite": 1}
    assert [f.energy for f in frames] == [s.energy for k, s in enumerate(src * 3) if k != 17]
    assert any(f"step 17 (line {bad + 1})" in w for w in rep.warnings), rep.warnings


@pytest.mark.parametrize("chunk", [45000, 46500, 67500, 3000, 1 << 19])
def test_chunk_ends_do_not_change_irregular_tables(tmp_path, monkeypatch, chunk):
    """A table whose first row is longer than the others (so the fixed-format path declines and its
    span is overestimated) just before a chunk end that held the next table back for the next chunk
    (_hold_back): the buffer is extended with the held bytes first.  Same frames at any chunk size."""
    from mlds.io import vasp_outcar

    text = tf(C + "npt_common/OUTCAR").read_bytes()
    marks = [m.start() for m in re.finditer(rb"TOTAL-FORCE", text)]
    out = bytearray(text)
    for q in reversed(marks):  # 2000 blanks at the end of each table's first row
        first = out.index(b"\n", out.index(b"\n", q) + 1) + 1
        end = out.index(b"\n", first)
        out[end:end] = b" " * 2000
    path = tmp_path / "OUTCAR"
    path.write_bytes(bytes(out))
    ref, _ = read(path)
    monkeypatch.setattr(vasp_outcar, "_CHUNK", chunk)
    frames, rep = read(path)
    assert len(frames) == len(ref) == 10 and rep.warnings == []
    for f, r in zip(frames, ref):
        assert np.array_equal(f.positions, r.positions) and np.array_equal(f.forces, r.forces) and f.energy == r.energy
