"""Bad input: one line naming the file and the problem, exit code 2, no traceback, nothing written."""

from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pytest

import mlds
from mlds.cli import run
from mlds.errors import FormatError, SpecVersionError
from mlds.format.frame import Frame


@pytest.fixture
def good(tmp_path):
    frames = [Frame([14, 8], [[0, 0, 0], [1, 1, 1]], np.eye(3) * 5, [1, 1, 1], energy=-1.0 - i, forces=np.ones((2, 3))) for i in range(4)]
    return mlds.write(tmp_path / "good.h5", frames, {"name": "good"})


def cli(capsys, *args):
    code = run([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def assert_one_line_error(code, err, *needles):
    assert code == 2
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def test_not_an_mlds_file(tmp_path, capsys):
    p = tmp_path / "plain.h5"
    with h5py.File(p, "w") as f:
        f["x"] = np.arange(3)
    code, _, err = cli(capsys, "info", p)
    assert_one_line_error(code, err, "plain.h5", "not an mlds dataset")


def test_not_hdf5_at_all(tmp_path, capsys):
    p = tmp_path / "text.h5"
    p.write_text("hello")
    code, _, err = cli(capsys, "validate", p)
    assert_one_line_error(code, err, "text.h5", "HDF5")


def test_newer_major_spec_version_is_refused(good, capsys):
    with h5py.File(good, "r+") as f:
        f.attrs["mlds_spec_version"] = "2.0.0"
    with pytest.raises(SpecVersionError, match="upgrade mlds"):
        mlds.open(good)
    code, _, err = cli(capsys, "info", good)
    assert_one_line_error(code, err, "good.h5", "2.0.0", "1.x")


def test_older_or_newer_minor_is_accepted(good):
    with h5py.File(good, "r+") as f:
        f.attrs["mlds_spec_version"] = "1.7.0"
        f["frames"].create_dataset("some_future_array", data=np.zeros(4))
    with mlds.open(good) as ds:
        assert len(ds) == 4


def test_truncated_hdf5(good, tmp_path, capsys):
    data = good.read_bytes()
    cut = tmp_path / "cut.h5"
    cut.write_bytes(data[: len(data) // 2])
    code, _, err = cli(capsys, "info", cut)
    assert_one_line_error(code, err, "cut.h5")


def test_missing_required_array(good, capsys):
    with h5py.File(good, "r+") as f:
        del f["frames/energy"]
    code, _, err = cli(capsys, "validate", good)
    assert_one_line_error(code, err, "good.h5", "frames/energy")


def test_metadata_failing_the_schema(good, capsys):
    pytest.importorskip("mlds.format.schema")
    with h5py.File(good, "r+") as f:
        meta = json.loads(f.attrs["metadata"])
        meta["license"] = 42
        f.attrs["metadata"] = json.dumps(meta)
    code, _, err = cli(capsys, "validate", good)
    assert_one_line_error(code, err, "good.h5", "license")


def test_writer_refuses_bad_metadata_and_writes_nothing(tmp_path):
    pytest.importorskip("mlds.format.schema")
    target = tmp_path / "bad.h5"
    with pytest.raises(FormatError):
        mlds.write(target, [Frame([1], [[0, 0, 0]])], {"license": 42})
    assert list(tmp_path.iterdir()) == []


def test_exception_while_writing_leaves_nothing(tmp_path):
    def frames():
        yield Frame([1], [[0, 0, 0]], energy=1.0)
        raise RuntimeError("reader broke")

    with pytest.raises(RuntimeError):
        mlds.write(tmp_path / "x.zarr.zip", frames())
    assert list(tmp_path.iterdir()) == []


def test_existing_file_is_kept_when_a_rewrite_fails(good):
    before = good.read_bytes()

    def frames():
        yield Frame([1], [[0, 0, 0]], energy=1.0)
        raise RuntimeError("reader broke")

    with pytest.raises(RuntimeError):
        mlds.write(good, frames())
    assert good.read_bytes() == before


def test_validate_reports_broken_invariants(good, capsys):
    with h5py.File(good, "r+") as f:
        f["frames/atom_offset"][2] = 99
        f["atoms/positions"][0, 0] = np.nan
        f["frames/cell"][1] = np.zeros((3, 3))
    code, out, err = cli(capsys, "validate", good)
    assert code == 2
    assert "atom_offset" in err and "positions" in err and "cell" in err
    assert "Traceback" not in err


def test_validate_accepts_left_handed_cells(tmp_path, capsys):
    cell = np.diag([-4.0, 4.0, 4.0])
    p = mlds.write(tmp_path / "lh.h5", [Frame([1], [[0, 0, 0]], cell, [1, 1, 1], energy=0.0)])
    code, out, _ = cli(capsys, "validate", p)
    assert code == 0 and "valid" in out


def test_unknown_output_suffix(tmp_path):
    with pytest.raises(FormatError, match="cannot tell the container"):
        mlds.create(tmp_path / "x.dat")


def test_missing_file(tmp_path, capsys):
    code, _, err = cli(capsys, "info", tmp_path / "nope.h5")
    assert_one_line_error(code, err, "nope.h5", "no such file")


def test_corrupt_zarr_store(tmp_path, capsys, good):
    with mlds.open(good) as ds:
        ds.copy_to(tmp_path / "z.zarr")
    (tmp_path / "z.zarr" / "zarr.json").write_text("{not json")
    code, _, err = cli(capsys, "info", tmp_path / "z.zarr")
    assert_one_line_error(code, err, "z.zarr")
    shutil.rmtree(tmp_path / "z.zarr")
