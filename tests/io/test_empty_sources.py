"""Sources that give no frame say why (``SourceReport.empty_reason``).

The zero-frame files are the real ones listed in the shared MANIFEST.md: an aborted VASP run
(OUTCAR and its truncated vasprun.xml), a pw.x relax killed during its first SCF, and a VASP MD
whose only step did not converge.
"""

from __future__ import annotations

import pytest

from mlds.io.registry import open_reader
from tests.conftest import data_file as tf

ABORTED = "custodian/tests/files/large_cell_real_optlay/"
KILLED_QE = "aiida-quantumespresso/tests/parsers/fixtures/pw/failed_interrupted_relax/aiida.out"
ONE_UNCONVERGED = "dpdata/tests/poscars/OUTCAR.ch4.1step"


def _read(path, **options):
    reader = open_reader(path, **options)
    frames = list(reader)
    return frames, reader.report


@pytest.mark.parametrize("rel,words", [
    (ABORTED + "OUTCAR", ("stopped before its first ionic step",)),
    (ABORTED + "vasprun.xml", ("truncated", "<calculation>")),
    (KILLED_QE, ("interrupted", "first SCF")),
    (ONE_UNCONVERGED, ("unconverged SCF", "keep_unconverged")),
])
def test_real_zero_frame_files_give_the_reason(rel, words):
    frames, rep = _read(tf(rel))
    assert frames == [] and rep.kept == 0
    assert rep.empty_reason and all(w in rep.empty_reason for w in words), rep.empty_reason
    assert "\n" not in rep.empty_reason
    assert rep.to_provenance()["empty_reason"] == rep.empty_reason


def test_reason_cleared_when_frames_come_out():
    frames, rep = _read(tf(ONE_UNCONVERGED), keep_unconverged=True)
    assert len(frames) == 1 and rep.empty_reason is None and "empty_reason" not in rep.to_provenance()
    frames, rep = _read(tf("dpdata/tests/poscars/OUTCAR.ch4.unconverged"))  # 2 of 3 steps dropped, 1 kept
    assert len(frames) == 1 and rep.empty_reason is None


def test_outcar_cut_inside_its_first_step(tmp_path):
    text = tf("dpdata/tests/poscars/OUTCAR.h2o.md.10").read_text()
    cut = tmp_path / "OUTCAR"
    cut.write_text(text[: text.index("TOTAL-FORCE")])
    frames, rep = _read(cut)
    assert frames == [] and "ends inside the first ionic step" in rep.empty_reason


@pytest.mark.parametrize("name,fmt,options", [("input.data", "n2p2", {"units": "angstrom-ev"}),
                                              ("empty.xyz", "extxyz", {})])
def test_empty_files(tmp_path, name, fmt, options):
    path = tmp_path / name
    path.write_text("")
    frames, rep = _read(path, fmt=fmt, **options)
    assert frames == [] and rep.empty_reason
