"""ASE reads mlds files by content and Zarr directories despite its BundleTrajectory guess."""

from __future__ import annotations

import subprocess
import sys

import ase.io
import h5py
import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.singlepoint import SinglePointCalculator

import mlds


def _images(n: int = 4) -> list:
    out = []
    for i in range(n):
        a = bulk("Cu", cubic=True)
        a.rattle(0.01, seed=i)
        a.calc = SinglePointCalculator(a, energy=-3.0 - i, forces=np.full((len(a), 3), 0.1 * i))
        out.append(a)
    return out


@pytest.mark.parametrize("name", ["plain.h5", "store.zarr", "packed.zarr.zip", "x.mlds.zarr"])
def test_ase_reads_mlds_files_whatever_their_name(tmp_path, name):
    images = _images()
    path = mlds.write(tmp_path / name, (mlds.Frame.from_atoms(a) for a in images))
    back = ase.io.read(str(path), ":")
    assert [a.get_potential_energy() for a in back] == [-3.0, -4.0, -5.0, -6.0]
    np.testing.assert_array_equal(back[2].get_forces(), images[2].get_forces())
    assert ase.io.read(str(path)).get_potential_energy() == -6.0  # default: the last frame
    assert len(ase.io.read(str(path), "1::2")) == 2


def test_other_hdf5_files_and_bundle_trajectories_stay_with_their_readers(tmp_path):
    from ase.io.formats import filetype

    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = np.arange(3)
    assert filetype(str(other)) != "mlds"
    bundle = tmp_path / "run.bundle"
    ase.io.write(str(bundle), _images(2), format="bundletrajectory")
    back = ase.io.read(str(bundle), ":")
    assert len(back) == 2 and back[1].get_potential_energy() == -4.0


def test_a_fresh_interpreter_reads_a_zarr_directory(tmp_path):
    """The routing happens when ASE loads its plugins, without importing mlds first."""
    path = mlds.write(tmp_path / "d.zarr", (mlds.Frame.from_atoms(a) for a in _images(3)))
    code = f"import ase.io; print(len(ase.io.read({str(path)!r}, ':')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "3"
