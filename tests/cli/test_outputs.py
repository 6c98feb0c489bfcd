"""Outputs: the format comes from the name, and nothing existing is deleted or replaced without --force.

Issue 13's cases (each destroyed data on the old main): `export --to extxyz -o proj` with
`proj/notes.txt` present, `import -o dir.h5` onto a folder, `convert --to n2p2|aenet -o dir`.
"""

from __future__ import annotations

import hashlib
import zipfile

import pytest

from mlds.demo import example_path
from tests.cli.conftest import no_traceback


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def dataset(tmp_path):
    from mlds.convert import convert

    convert([example_path("cu3au_emt.extxyz")], tmp_path / "a.mlds.h5")
    return tmp_path / "a.mlds.h5"


def test_existing_outputs_are_refused_without_force(mlds_many, tmp_path, dataset):
    before = _digest(dataset)
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "notes.txt").write_text("mine\n")
    (tmp_path / "dir.h5").mkdir()
    (tmp_path / "dir.h5" / "keep.txt").write_text("mine\n")
    nial = example_path("nial_emt.extxyz")
    file_refused, *folders, forced = mlds_many(
        ["import", nial, "-o", dataset.name],
        # a user's folder in place of the output: never replaced, not even with --force (issue 13)
        ["export", dataset.name, "--to", "extxyz", "-o", "proj", "--force"],
        ["import", nial, "-o", "dir.h5", "--force"],
        ["convert", dataset.name, "--to", "n2p2", "-o", "proj"],
        ["import", nial, "-o", dataset.name, "--force", "-q"],
    )
    assert file_refused.code == 2 and "already exists" in file_refused.err and "--force" in file_refused.err
    assert len(file_refused.err_lines) == 1, file_refused
    for r in folders:
        assert r.code == 2 and no_traceback(r) and len(r.err_lines) == 1, r
    assert sorted(p.name for p in proj.iterdir()) == ["notes.txt"] and (proj / "notes.txt").read_text() == "mine\n"
    assert (tmp_path / "dir.h5" / "keep.txt").read_text() == "mine\n"
    assert forced.code == 0, forced
    assert _digest(dataset) != before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]  # no staging left behind


def test_aenet_export_into_a_folder_writes_only_its_own_files(mlds_many, tmp_path, dataset):
    run = tmp_path / "train"
    run.mkdir()
    (run / "train.in").write_text("TRAININGSET refdata.train\n")
    (run / "Cu.fingerprint.stp").write_text("my setup\n")
    argv = ["export", dataset.name, "--to", "aenet", "-o", "train", "-q"]
    first, again, forced = mlds_many(argv, argv, [*argv, "--force"])
    assert first.code == 0, first
    # a second export would overwrite its own earlier files: refused unless --force; the user's files stay
    assert again.code == 2 and "generate.in" in again.err and "--force" in again.err, again
    assert forced.code == 0, forced
    names = sorted(p.name for p in run.iterdir())
    assert {"train.in", "Cu.fingerprint.stp", "generate.in"} <= set(names)
    assert sum(n.endswith(".xsf") for n in names) == 24
    assert (run / "train.in").read_text() == "TRAININGSET refdata.train\n"
    assert (run / "Cu.fingerprint.stp").read_text() == "my setup\n"


def test_format_from_the_name_and_contradictions(mlds_many, tmp_path, dataset):
    runs = mlds_many(
        ["export", dataset.name, "-o", "x.xyz", "-q"],
        ["export", dataset.name, "-o", "input.data", "-q"],
        ["export", dataset.name, "-o", "c.zarr.zip", "-q"],
        ["export", dataset.name, "-o", "y.h5", "--to", "extxyz"],
        ["export", dataset.name, "-o", "noext"],
        ["export", dataset.name, "-o", "missing/dir/z.xyz"],
        ["import", dataset.name, "-o", "z.xyz"],
    )
    assert [r.code for r in runs[:3]] == [0, 0, 0], runs[:3]
    assert (tmp_path / "x.xyz").read_text().startswith("32\n")
    assert (tmp_path / "input.data").read_text().startswith("begin")
    assert "zarr.json" in zipfile.ZipFile(tmp_path / "c.zarr.zip").namelist()
    for r, what in zip(runs[3:], ["the name says mlds but --to says extxyz", "cannot tell the output format",
                                  "does not exist", "makes an mlds dataset"]):
        assert r.code == 2 and what in r.err and len(r.err_lines) == 1 and no_traceback(r), r
    assert not (tmp_path / "y.h5").exists() and not (tmp_path / "missing").exists()
