"""Tests for the Quantum ESPRESSO data-file-schema.xml reader (mlds.io.qe_xml).

Expected values come from the XML text via small regexes, in Hartree atomic
units, converted here with CODATA 2018.  The aiida fixtures ship the text
output of the same runs, which must agree with the XML.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from mlds.errors import FormatError
from mlds.io.qe_pw import QEPwReader
from mlds.io.qe_xml import QEXmlReader
from mlds.io.registry import detect
from tests.conftest import data_file as data_file

BOHR = 0.529177210903
HA = 27.211386245988

FIX = "aiida-quantumespresso/tests/parsers/fixtures/pw"
XMLS = [f"{FIX}/default/data-file-schema.xml", f"{FIX}/relax_success/data-file-schema.xml"]


def read(path, **kw):
    r = QEXmlReader(path, **kw)
    return list(r), r.report


def _output_block(text: str) -> str:
    return re.search(r"<output>(.*)</output>", text, re.S).group(1)


def _vec(block: str, tag: str) -> np.ndarray:
    return np.array(re.search(rf"<{tag}>([^<]*)</{tag}>", block).group(1).split(), dtype=float)


@pytest.mark.parametrize("rel", XMLS)
def test_every_xml_matches_text(rel):
    path = data_file(rel)
    text = path.read_text()
    out = _output_block(text)
    frames, rep = read(path)
    n_steps = len(re.findall(r"<step\b", text))
    # relax_success: its single <step> repeats <output> -> de-duplicated
    assert len(frames) == 1
    assert n_steps in (0, 1)
    f = frames[-1]
    assert f.energy == pytest.approx(float(_vec(out, "etot")[0]) * HA, rel=1e-12)
    cell = np.array([_vec(out, f"a{i}") for i in (1, 2, 3)]) * BOHR
    np.testing.assert_allclose(f.cell, cell, rtol=1e-12)
    atoms = re.findall(r'<atom name="(\w+)" index="\d+">([^<]*)</atom>', out)
    np.testing.assert_allclose(f.positions, np.array([a[1].split() for a in atoms], dtype=float) * BOHR)
    assert f.symbols == [a[0] for a in atoms]
    fm = re.search(r"<forces[^>]*>([^<]*)</forces>", out)
    if fm:
        np.testing.assert_allclose(f.forces, np.array(fm.group(1).split(), dtype=float).reshape(-1, 3) * HA / BOHR)
    else:
        assert f.forces is None
    assert f.stress is None  # not computed in these runs
    assert f.converged and f.pbc.all()
    assert rep.code == "Quantum ESPRESSO" and not rep.dropped and not rep.warnings
    assert detect(path) is QEXmlReader


@pytest.mark.parametrize("run", ["default", "relax_success"])
def test_xml_agrees_with_text_output_of_same_run(run):
    """Hartree XML vs Rydberg text: same energy (text has 8 decimals in Ry),
    same cell/positions (text prints alat with 6 decimals, axes with 6)."""
    xf, xrep = read(data_file(f"{FIX}/{run}/data-file-schema.xml"))
    tr = QEPwReader(data_file(f"{FIX}/{run}/aiida.out"))
    tf = list(tr)
    assert len(xf) == len(tf) == 1
    a, b = xf[-1], tf[-1]
    assert a.energy == pytest.approx(b.energy, abs=1e-7)  # 5e-9 Ry print precision
    np.testing.assert_allclose(a.cell, b.cell, atol=2e-6)
    np.testing.assert_allclose(a.positions, b.positions, atol=2e-6)
    assert a.symbols == b.symbols
    if b.forces is not None:
        np.testing.assert_allclose(a.forces, b.forces, atol=1e-6)
    s, t = xrep.settings, tr.report.settings
    for key in ("code", "code_version", "functional", "spin_polarized", "smearing"):
        assert s[key] == t[key]
    assert s["plane_wave_cutoff_eV"] == pytest.approx(t["plane_wave_cutoff_eV"], rel=1e-12)
    assert s["extra"]["ecutrho_eV"] == pytest.approx(t["extra"]["ecutrho_eV"], rel=1e-12)
    assert s["extra"]["calculation"] == t["extra"]["calculation"] == ("scf" if run == "default" else "relax")


def test_settings():
    _, rep = read(data_file(XMLS[1]))
    s = rep.settings
    assert s["code_version"] == "6.6" and s["functional"] == "PBE"
    assert s["kpoints"] == {"mesh": [2, 2, 2], "shift": [0, 0, 0]}
    assert s["smearing"] == {"method": "none"}  # occupations fixed
    assert s["plane_wave_cutoff_eV"] == pytest.approx(15.0 * HA)
    assert s["pseudopotentials"] == [{"element": "Si", "name": "Si.pbe-n-rrkjus_psl.1.0.0.UPF"}]
    assert s["spin_polarized"] is False


def _multi_step(tmp_path: Path) -> Path:
    """SYNTHETIC: relax_success XML with an extra first <step> whose geometry and
    energy differ (atom 2 moved, etot shifted), as a 2-step relax would write."""
    text = data_file(XMLS[1]).read_text()
    step = re.search(r"  <step n_step=\"1\">.*?</step>\n", text, re.S).group(0)
    first = (step.replace('n_step="1"', 'n_step="1"')
             .replace("2.565303203030099e0 2.565303203030099e0 2.565303203030099e0",
                      "2.600000000000000e0 2.565303203030099e0 2.565303203030099e0")
             .replace("<etot>-1.132585254046164e1</etot>", "<etot>-1.132500000000000E+001</etot>")
             .replace("""      0.000000000000000e0 0.000000000000000e0 0.000000000000000e0
      0.000000000000000e0 0.000000000000000e0 0.000000000000000e0
""", """      1.000000000000000e-3 0.000000000000000e0 0.000000000000000e0
      -1.000000000000000e-3 0.000000000000000e0 0.000000000000000e0
"""))
    second = step.replace('n_step="1"', 'n_step="2"')
    p = tmp_path / "multi.xml"
    p.write_text(text.replace(step, first + second))
    return p


def test_steps_become_frames_and_final_is_deduplicated(tmp_path):
    frames, rep = read(_multi_step(tmp_path))
    assert len(frames) == 2  # step 1, then output (== step 2, de-duplicated)
    assert [f.info["step"] for f in frames] == [0, 1]
    assert frames[0].info["source"] == "step" and frames[1].info["source"] == "output"
    assert frames[0].energy == pytest.approx(-11.325 * HA, rel=1e-12)  # E+001 format
    assert frames[0].positions[1, 0] == pytest.approx(2.6 * BOHR)
    np.testing.assert_allclose(frames[0].forces[:, 0], np.array([1e-3, -1e-3]) * HA / BOHR)
    assert frames[1].energy == pytest.approx(-11.32585254046164 * HA, rel=1e-12)


def test_stress_sign(tmp_path):
    """SYNTHETIC: a <stress> (as written with tstress) added to <output>;
    QE stores the pressure-like tensor (P = tr/3), so sigma_ASE = -stored."""
    text = data_file(XMLS[0]).read_text()
    stored = np.array([[1e-4, 2e-5, 0], [2e-5, 1e-4, 0], [0, 0, 3e-4]])
    block = '    <stress rank="2" dims="           3           3">\n' + " ".join(
        f"{x:.15e}" for x in stored.ravel()) + "\n    </stress>\n"
    p = tmp_path / "stress.xml"
    p.write_text(text.replace("  </output>", block + "  </output>"))
    frames, _ = read(p)
    np.testing.assert_allclose(frames[0].stress, -stored * HA / BOHR**3, rtol=1e-12)
    assert -np.trace(frames[0].stress) / 3 > 0  # positive pressure, as QE's P


def test_unconverged_dropped(tmp_path):
    """SYNTHETIC: scf_conv set to false in <output>."""
    text = data_file(XMLS[0]).read_text()
    out = _output_block(text)
    p = tmp_path / "unconv.xml"
    p.write_text(text.replace(out, out.replace("<convergence_achieved>true", "<convergence_achieved>false", 1)))
    frames, rep = read(p)
    assert frames == [] and rep.dropped == {"scf-unconverged": 1}
    frames, rep = read(p, keep_unconverged=True)
    assert len(frames) == 1 and frames[0].converged is False


def test_truncated_keeps_complete_steps(tmp_path):
    """SYNTHETIC: multi-step file cut inside <output> (killed while writing)."""
    text = _multi_step(tmp_path).read_text()
    p = tmp_path / "cut.xml"
    p.write_text(text[: text.index("<output>") + 200])
    frames, rep = read(p)
    assert len(frames) == 2  # both steps; the output never completed
    assert any("truncated" in w for w in rep.warnings)


def test_corrupt_number_reports_line(tmp_path):
    lines = data_file(XMLS[0]).read_text().splitlines(keepends=True)
    n = max(i for i, ln in enumerate(lines) if "<etot>" in ln)
    lines[n] = lines[n].replace("e1<", "x1<")
    p = tmp_path / "bad.xml"
    p.write_text("".join(lines))
    with pytest.raises(FormatError) as ei:
        read(p)
    assert ei.value.line == n + 1


def test_malformed_xml_is_format_error(tmp_path):
    text = data_file(XMLS[0]).read_text()
    p = tmp_path / "bad.xml"
    p.write_text(text.replace("</general_info>", "</general_inf>", 1))
    with pytest.raises(FormatError) as ei:
        read(p)
    assert ei.value.line is not None


def test_sniff():
    p = data_file(XMLS[0])
    assert QEXmlReader.sniff(p, p.read_bytes()[:4096])
    assert not QEXmlReader.sniff(p, b"<?xml version='1.0'?><modeling>")


def test_truncated_anywhere(tmp_path):
    """SYNTHETIC cuts at 40 positions of a 2-step file: complete steps only."""
    text = _multi_step(tmp_path).read_text()
    full, _ = read(_multi_step(tmp_path))
    p = tmp_path / "cut.xml"
    for cut in np.linspace(len(text) // 10, len(text) - 20, 40).astype(int):
        p.write_text(text[:cut])
        got, rep = read(p)
        assert len(got) <= len(full)
        for a, b in zip(got, full):
            assert a.energy == b.energy
            # a step cut before its <output> copy is read from the <step>
            np.testing.assert_allclose(a.positions, b.positions, rtol=0, atol=1e-12)
        assert any("truncated" in w for w in rep.warnings)
