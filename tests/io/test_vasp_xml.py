"""VASP vasprun.xml reader on the real shared test files.

Expected values come from small, independent regular expressions on the file
text; OUTCAR/vasprun pairs of the same run must agree.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from mlds.errors import FormatError
from mlds.io.registry import READERS
from mlds.io.vasp_outcar import VaspOutcarReader
from mlds.io.vasp_xml import VaspXmlReader
from tests.conftest import data_file as tf

P = "dpdata/tests/poscars/"
C = "custodian/tests/files/"
XMLS = [
    P + "vasprun.h2o.md.10.xml",
    P + "vasprun.h2o.md.tribox.xml",
    P + "vasprun.h2o.md.novirial.xml",
    P + "vasprun.Ge.vdw.xml",
    P + "Ti-O-Ti-v6/vasprun.xml",
    C + "large_cell_real_optlay/vasprun.xml",
]
PAIRS = [
    (P + "OUTCAR.h2o.md.10", P + "vasprun.h2o.md.10.xml"),
    (P + "OUTCAR.Ge.vdw", P + "vasprun.Ge.vdw.xml"),
    (P + "Ti-O-Ti-v6/OUTCAR", P + "Ti-O-Ti-v6/vasprun.xml"),
]
KB = 0.1 / 160.2176634  # 1 kB in eV/Å³ with the spec's CODATA 2018 constants (e = 1.602176634e-19 C)


def _varray(chunk: str, name: str) -> np.ndarray | None:
    m = re.search(r'<varray name="%s" >(.*?)</varray>' % name, chunk, re.S)
    if not m:
        return None
    return np.array([[float(x) for x in v.split()] for v in re.findall(r"<v>(.*?)</v>", m.group(1))])


def ref_calcs(text: str) -> list[dict]:
    out = []
    for chunk in re.findall(r"<calculation>(.*?)</calculation>", text, re.S):
        energies = re.findall(r"<energy>(.*?)</energy>", chunk, re.S)
        calc_e = energies[-1]  # calculation-level <energy> comes last
        last_sc = energies[-2]
        g = lambda blk, k: float(re.search(r'name="%s">\s*(\S+)' % k, blk).group(1))  # noqa: E731
        out.append({
            "n_sc": chunk.count("<scstep>"),
            "e_fr": g(calc_e, "e_fr_energy"),
            "sigma0": g(calc_e, "e_fr_energy") + g(last_sc, "e_0_energy") - g(last_sc, "e_fr_energy"),
            "cell": _varray(chunk, "basis"),
            "frac": _varray(chunk, "positions"),
            "forces": _varray(chunk, "forces"),
            "stress": _varray(chunk, "stress"),
        })
    return out


def read(path, **kw):
    r = VaspXmlReader(path, **kw)
    frames = list(r)
    return frames, r.report


@pytest.mark.parametrize("rel", XMLS)
def test_every_vasprun_matches_file_text(rel):
    path = tf(rel)
    text = path.read_text(encoding="latin-1")
    ref = ref_calcs(text)
    nelm = int(re.search(r'name="NELM">\s*(\d+)', text).group(1))
    frames, rep = read(path)
    keep = [c for c in ref if c["n_sc"] < nelm]
    assert len(frames) == len(keep) and rep.kept == len(keep)
    assert rep.code == "VASP"
    for f in frames:
        c = ref[f.info["step"]]
        assert f.energy == pytest.approx(c["e_fr"], rel=1e-6)
        assert f.energy_sigma0 == pytest.approx(c["sigma0"], rel=1e-6)
        np.testing.assert_allclose(f.cell, c["cell"], rtol=1e-6)
        np.testing.assert_allclose(f.positions, c["frac"] @ c["cell"], rtol=1e-6, atol=1e-12)
        np.testing.assert_allclose(f.forces, c["forces"], rtol=1e-6)
        if c["stress"] is None:
            assert f.stress is None
        else:
            np.testing.assert_allclose(f.stress, -0.5 * (c["stress"] + c["stress"].T) * KB, rtol=1e-6, atol=1e-15)
    if ref:  # last frame against the last <calculation>'s values
        assert frames[-1].energy == pytest.approx(ref[-1]["e_fr"], rel=1e-6)


def test_tribox_stress_symmetrised():
    path = tf(P + "vasprun.h2o.md.tribox.xml")
    ref = ref_calcs(path.read_text())
    s = ref[0]["stress"]
    assert np.abs(s - s.T).max() > 1e-3  # the file really is asymmetric (6.6e-3 kB in step 0)
    frames, _ = read(path)
    np.testing.assert_allclose(frames[0].stress, frames[0].stress.T, atol=0)
    np.testing.assert_allclose(frames[0].stress, -(s + s.T) / 2 * KB, rtol=1e-9)


def test_e0_energy_bug_worked_around():
    """calculation/energy/e_0_energy is 0.0 in this file; sigma->0 comes from the last scstep."""
    path = tf(P + "vasprun.h2o.md.10.xml")
    text = path.read_text()
    calc_e0 = re.findall(r"</varray>\s*<energy>.*?e_0_energy\">\s*(\S+)", text, re.S)
    assert float(calc_e0[0]) == 0.0
    frames, _ = read(path)
    assert frames[0].energy_sigma0 == pytest.approx(ref_calcs(text)[0]["sigma0"], rel=1e-9)
    assert frames[0].energy_sigma0 != 0.0


@pytest.mark.parametrize("outcar,xml", PAIRS)
def test_outcar_and_vasprun_of_same_run_agree(outcar, xml):
    fo = list(VaspOutcarReader(tf(outcar)))
    rx = VaspXmlReader(tf(xml))
    fx = list(rx)
    assert len(fo) == len(fx) > 0
    for a, b in zip(fo, fx):
        assert list(a.numbers) == list(b.numbers)
        assert a.energy == pytest.approx(b.energy, abs=1e-7)
        assert a.energy_sigma0 == pytest.approx(b.energy_sigma0, abs=1e-7)
        np.testing.assert_allclose(a.cell, b.cell, atol=1e-7)
        np.testing.assert_allclose(a.positions, b.positions, atol=2e-5)  # OUTCAR prints 5 decimals
        np.testing.assert_allclose(a.forces, b.forces, atol=2e-6)  # OUTCAR prints 6 decimals
        np.testing.assert_allclose(a.stress, b.stress, atol=1e-5 * KB)  # 'in kB' has 5 decimals
    ro = VaspOutcarReader(tf(outcar))
    list(ro)
    for key in ("code_version", "functional", "plane_wave_cutoff_eV", "smearing", "spin_polarized",
                "pseudopotentials"):
        assert ro.report.settings[key] == rx.report.settings[key], key
    assert ro.report.settings["kpoints"]["mesh"] == rx.report.settings["kpoints"]["mesh"]


def test_truncated_real_file():
    """custodian large_cell_real_optlay/vasprun.xml ends after </parameters>: 0 frames, warning, no error."""
    frames, rep = read(tf(C + "large_cell_real_optlay/vasprun.xml"))
    assert frames == []
    assert any("truncated" in w for w in rep.warnings)
    assert rep.settings["code_version"] == "5.3.5"
    # EDIFF=1e-10 (OUTCAR) is printed "0.00000000" in vasprun: omitted rather than recorded as 0
    assert "EDIFF" not in rep.settings["extra"] and rep.settings["extra"]["NELM"] == 60


def test_truncated_mid_calculation(tmp_path):
    text = tf(P + "vasprun.h2o.md.10.xml").read_bytes()
    starts = [m.start() for m in re.finditer(rb"<calculation>", text)]
    cut = tmp_path / "vasprun.xml"
    cut.write_bytes(text[: starts[4] + 3000])
    frames, rep = read(cut)
    assert len(frames) == 4
    assert any("kept the 4 complete" in w for w in rep.warnings)


def _copy(tmp_path, rel, fn) -> Path:
    out = tmp_path / "vasprun.xml"
    out.write_text(fn(tf(rel).read_text(encoding="latin-1")), encoding="latin-1")
    return out


@pytest.mark.parametrize("placeholder", ["X ", "r "])
def test_placeholder_element_from_pseudopotential(tmp_path, placeholder):
    """Real vasprun files write 'X ' for Xe; the element comes from the pseudopotential column then."""
    path = _copy(tmp_path, P + "vasprun.Ge.vdw.xml", lambda t: t.replace("<c>Ge</c>", f"<c>{placeholder}</c>"))
    assert "<c>Ge</c>" not in path.read_text()
    frames, rep = read(path)
    assert frames[0].symbols == ["Ge"] * 8
    assert rep.settings["pseudopotentials"] == [{"element": "Ge", "name": "PAW_PBE Ge 05Jan2001"}]


def test_nelm_unconverged_dropped_counted_and_kept(tmp_path):
    """NELM lowered to 8 in a copy: calculations with >= 8 <scstep> are unconverged."""
    def lower(t):
        return re.sub(r'(<i type="int" name="NELM">)\s*60(</i>)', r"\g<1>     8\2", t, count=1)

    path = _copy(tmp_path, P + "vasprun.h2o.md.10.xml", lower)
    ref = ref_calcs(path.read_text())
    bad = [k for k, c in enumerate(ref) if c["n_sc"] >= 8]
    assert 0 < len(bad) < len(ref)
    frames, rep = read(path)
    assert rep.dropped == {"scf-unconverged": len(bad)}
    assert [f.info["step"] for f in frames] == [k for k in range(len(ref)) if k not in bad]
    frames_all, rep_all = read(path, keep_unconverged=True)
    assert len(frames_all) == len(ref) and rep_all.dropped == {}
    assert [not f.converged for f in frames_all] == [k in bad for k in range(len(ref))]


def test_corrupt_number_is_format_error(tmp_path):
    text = tf(P + "vasprun.h2o.md.10.xml").read_text()
    target = "-0.57372915"
    lineno = text[: text.index(target)].count("\n") + 1
    path = _copy(tmp_path, P + "vasprun.h2o.md.10.xml", lambda t: t.replace(target, "-0.57x72915", 1))
    with pytest.raises(FormatError) as exc:
        read(path)
    assert exc.value.line == lineno and "corrupt number" in exc.value.message


def test_malformed_xml_mid_file_is_format_error(tmp_path):
    text = tf(P + "vasprun.h2o.md.10.xml").read_text()
    i = text.index("</scstep>", text.index("<calculation>"))
    lineno = text[:i].count("\n") + 1
    path = _copy(tmp_path, P + "vasprun.h2o.md.10.xml", lambda t: t[:i] + "</scstepX>" + t[i + 9:])
    with pytest.raises(FormatError) as exc:
        read(path)
    assert exc.value.line == lineno


def _nth(text: str, needle: str, n: int, start: int = 0) -> int:
    i = start - 1
    for _ in range(n):
        i = text.index(needle, i + 1)
    return i


@pytest.mark.parametrize("where", ["scstep of calculation 7", "eigenvalues of the last calculation"])
def test_malformed_xml_after_fast_blocks_reports_its_line(tmp_path, where):
    """Blocks read on the fast path never reach the streaming parser; an error later in the file is
    located again in the file, so it still names its own line."""
    text = tf(P + "vasprun.h2o.md.10.xml").read_text()
    if where.startswith("scstep"):
        i = text.index("</scstep>", _nth(text, "<calculation>", 7))
        bad, size = "</scstepX>", len("</scstep>")
    else:
        i = text.index("</r>", text.index("<eigenvalues>", _nth(text, "<calculation>", 10)))
        bad, size = "</rX>", len("</r>")
    lineno = text[:i].count("\n") + 1
    path = _copy(tmp_path, P + "vasprun.h2o.md.10.xml", lambda t: t[:i] + bad + t[i + size:])
    with pytest.raises(FormatError) as exc:
        read(path)
    assert exc.value.line == lineno


@pytest.mark.parametrize("insert", ["<!-- note -->", '<varray name="stress" ><v> 1 2 3 </v></varray>'])
def test_unusual_tail_takes_the_element_tree_path(tmp_path, insert):
    """A comment after the last calculation's DOS, or a stress array there, is not skipped unread:
    the block is parsed by ElementTree, with the same frames (the real file has its stress first,
    so a second one changes nothing)."""
    text = tf(P + "vasprun.h2o.md.10.xml").read_text()
    i = text.index("</dos>", _nth(text, "<calculation>", 10)) + len("</dos>")
    path = _copy(tmp_path, P + "vasprun.h2o.md.10.xml", lambda t: t[:i] + insert + t[i:])
    frames, _ = read(path)
    ref, _ = read(tf(P + "vasprun.h2o.md.10.xml"))
    assert len(frames) == len(ref) == 10
    for a, b in zip(frames, ref):
        assert np.array_equal(a.positions, b.positions) and np.array_equal(a.stress, b.stress)
        assert a.energy == b.energy and a.energy_sigma0 == b.energy_sigma0


def test_atominfo_inconsistent_is_format_error(tmp_path):
    path = _copy(tmp_path, P + "vasprun.h2o.md.10.xml",
                 lambda t: t.replace("<rc><c>   4</c><c>H </c>", "<rc><c>   5</c><c>H </c>", 1))
    with pytest.raises(FormatError) as exc:
        read(path)
    assert exc.value.line is not None


def test_pstress_pv_term_removed(tmp_path):
    """calculation/energy/e_fr_energy includes PSTRESS*V; mlds subtracts it (OUTCAR TOTEN has no PV)."""
    path = _copy(tmp_path, P + "vasprun.Ge.vdw.xml",
                 lambda t: re.sub(r'(<i name="PSTRESS">)\s*0\.00000000', r"\g<1>     10.00000000", t))
    ref = ref_calcs(path.read_text())[0]
    frames, _ = read(path)
    vol = abs(np.linalg.det(ref["cell"]))
    assert frames[0].energy == pytest.approx(ref["e_fr"] - 10 * KB * vol, rel=1e-9)


def test_sign_conventions_match_ase():
    import ase.io

    path = tf(P + "vasprun.h2o.md.10.xml")
    frames, _ = read(path)
    images = ase.io.read(path, ":", format="vasp-xml")
    assert len(images) == len(frames)
    for f, a in zip(frames, images):
        np.testing.assert_allclose(f.positions, a.positions, atol=1e-10)
        np.testing.assert_allclose(f.forces, a.get_forces(), atol=1e-12)
        # ASE keeps the upper triangle; the file's asymmetry here is ~1e-6 kB
        np.testing.assert_allclose(f.stress, a.get_stress(voigt=False), atol=1e-5 * KB)
        assert f.energy == pytest.approx(a.get_potential_energy(force_consistent=True), rel=1e-12)
        assert f.energy_sigma0 == pytest.approx(a.get_potential_energy(), rel=1e-12)


def test_registered_and_sniff():
    assert READERS["vasp-xml"] is VaspXmlReader
    head = tf(P + "vasprun.h2o.md.10.xml").read_bytes()[:65536]
    assert VaspXmlReader.sniff(Path("anything"), head)
    assert not VaspXmlReader.sniff(Path("vasprun.xml"), tf(P + "OUTCAR.h2o.md.10").read_bytes()[:65536])
    assert not VaspXmlReader.sniff(Path("vasprun.xml"), b"<?xml version='1.0'?><root/>")


def test_frame_batches_are_the_frames_and_hash_as_frame_hash(tmp_path):
    """A long run of plain blocks comes from iter_batches as FrameBatch lists (convert hashes them
    from their arrays): the same frames as iterating, and digests equal to frame_hash."""
    from mlds.format.frame import FrameBatch
    from mlds.format.framehash import frame_hash

    text = tf(P + "vasprun.h2o.md.10.xml").read_text()
    first = text.rindex("\n", 0, text.index("<calculation>")) + 1
    last = text.index("\n", text.rindex("</calculation>")) + 1
    blocks = [b + "</calculation>\n" for b in text[first:last].split("</calculation>\n") if b.strip()]
    plain = [b for b in blocks if "<dos>" not in b and "<eigenvalues>" not in b]
    path = tmp_path / "vasprun.xml"
    path.write_text(text[:first] + "".join(plain * 40) + text[last:])  # repeats: duplicates for convert
    frames, rep = read(path)
    items = list(VaspXmlReader(path).iter_batches())
    batches = [i for i in items if type(i) is FrameBatch]
    assert batches and len(frames) == len(plain) * 40 == rep.kept
    flat = [f for i in items for f in (i if type(i) is FrameBatch else [i])]
    assert [frame_hash(f) for f in flat] == [frame_hash(f) for f in frames]
    assert [f.info for f in flat] == [f.info for f in frames]
    for b in batches:
        assert b.digests() == [bytes.fromhex(frame_hash(f)) for f in b]

    from mlds.convert import convert

    res = convert([path], tmp_path / "out.h5")
    assert res.n_frames == len({frame_hash(f) for f in frames}) and res.duplicates == len(frames) - res.n_frames
