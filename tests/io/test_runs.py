"""One source per calculation (mlds.io.runs) on real run files."""

from __future__ import annotations

import shutil

from mlds.io.runs import group_runs, pick_sources
from tests.conftest import data_file


def test_vasp_pair_in_one_folder_reads_outcar_only(tmp_path):
    run = tmp_path / "run1"
    run.mkdir()
    shutil.copy(data_file("dpdata/tests/poscars/OUTCAR.h2o.md.10"), run / "OUTCAR")
    shutil.copy(data_file("dpdata/tests/poscars/vasprun.h2o.md.10.xml"), run / "vasprun.xml")
    chosen, skipped = pick_sources([run / "vasprun.xml", run / "OUTCAR"])
    assert chosen == [run / "OUTCAR"]
    assert [p for p, _ in skipped] == [run / "vasprun.xml"]
    assert "OUTCAR" in skipped[0][1]


def test_different_runs_side_by_side_are_all_kept(tmp_path):
    # archive folders keep files of different calculations together: names alone must not pair them
    for name in ("OUTCAR.ch4.1step", "vasprun.h2o.md.10.xml", "OUTCAR.Ge.vdw"):
        shutil.copy(data_file(f"dpdata/tests/poscars/{name}"), tmp_path / name)
    files = sorted(tmp_path.iterdir())
    chosen, skipped = pick_sources(files)
    assert chosen == files and skipped == []


def test_same_run_in_different_folders_is_not_paired(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    shutil.copy(data_file("dpdata/tests/poscars/OUTCAR.Ge.vdw"), tmp_path / "a" / "OUTCAR")
    shutil.copy(data_file("dpdata/tests/poscars/vasprun.Ge.vdw.xml"), tmp_path / "b" / "vasprun.xml")
    chosen, skipped = pick_sources([tmp_path / "a" / "OUTCAR", tmp_path / "b" / "vasprun.xml"])
    assert len(chosen) == 2 and skipped == []


def test_qe_output_and_xml_under_save_folder(tmp_path):
    src = data_file("aiida-quantumespresso/tests/parsers/fixtures/pw/relax_success/aiida.out")
    (tmp_path / "aiida.save").mkdir()
    shutil.copy(src, tmp_path / "aiida.out")
    shutil.copy(src.parent / "data-file-schema.xml", tmp_path / "aiida.save" / "data-file-schema.xml")
    groups = group_runs([tmp_path / "aiida.save" / "data-file-schema.xml", tmp_path / "aiida.out"])
    assert [g.chosen for g in groups] == [tmp_path / "aiida.out"]
    assert groups[0].fmt == "qe-pw"
    assert groups[0].duplicates == [(tmp_path / "aiida.save" / "data-file-schema.xml", "qe-xml")]


def test_files_that_yield_no_frame_are_kept_for_the_reader_to_report(tmp_path):
    folder = data_file("custodian/tests/files/large_cell_real_optlay/OUTCAR").parent
    chosen, skipped = pick_sources([folder / "OUTCAR", folder / "vasprun.xml"])
    assert len(chosen) == 2 and skipped == []
