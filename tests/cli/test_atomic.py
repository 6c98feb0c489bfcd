"""The atomic-replace helpers never remove what they did not create (issue 13, library level)."""

from __future__ import annotations

import pytest

import mlds
from mlds.errors import OutputExistsError
from mlds.util import atomic_path


def test_atomic_path_and_dataset_writer_keep_a_users_folder(tmp_path):
    folder = tmp_path / "proj"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine\n")
    with atomic_path(folder, is_dir=True) as tmp:   # a folder output merges in: its own files only
        (tmp / "generate.in").write_text("x\n")
    assert sorted(p.name for p in folder.iterdir()) == ["generate.in", "notes.txt"]
    with pytest.raises(OutputExistsError):           # a file output never replaces a folder
        with atomic_path(folder) as tmp:
            tmp.write_text("x\n")
    frame = mlds.Frame(numbers=[14], positions=[[0, 0, 0]], energy=-1.0)
    user_zarr = tmp_path / "x.zarr"          # named like a dataset, but a user's folder
    user_zarr.mkdir()
    (user_zarr / "keep.txt").write_text("mine\n")
    with pytest.raises(OutputExistsError):
        mlds.write(user_zarr, [frame])
    assert (folder / "notes.txt").read_text() == "mine\n" and (user_zarr / "keep.txt").read_text() == "mine\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["proj", "x.zarr"]  # no temporaries left
    # an mlds Zarr dataset is the writer's own: replaced
    mlds.write(tmp_path / "y.zarr", [frame])
    mlds.write(tmp_path / "y.zarr", [frame, frame])
    with mlds.open(tmp_path / "y.zarr") as ds:
        assert len(ds) == 2
