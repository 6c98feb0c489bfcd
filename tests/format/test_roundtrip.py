"""Property-based round trips: HDF5 <-> Zarr <-> ASE <-> extxyz, bit-exact for float64."""

from __future__ import annotations

import ase.io
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mlds
from mlds.format.frame import Frame
from tests.format.strategies import assert_frames_equal, frames

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@SETTINGS
@given(batch=st.lists(frames(), min_size=1, max_size=8))
def test_hdf5_zarr_zip_roundtrip_bit_exact(tmp_path_factory, batch):
    d = tmp_path_factory.mktemp("rt")
    h5 = mlds.write(d / "a.h5", batch, {"name": "rt"}, batch_frames=3)
    with mlds.open(h5) as ds:
        ds.copy_to(d / "b.zarr")
    with mlds.open(d / "b.zarr") as ds:
        ds.copy_to(d / "c.zarr.zip")
    with mlds.open(d / "c.zarr.zip") as ds:
        ds.copy_to(d / "d.h5")
    with mlds.open(d / "d.h5") as ds:
        assert len(ds) == len(batch)
        assert ds.metadata["name"] == "rt"
        for original, (i, back) in zip(batch, enumerate(ds)):
            assert_frames_equal(original, back)
            assert_frames_equal(original, ds[i])  # random access agrees with the scan


@SETTINGS
@given(batch=st.lists(frames(), min_size=1, max_size=5))
def test_ase_atoms_roundtrip(tmp_path_factory, batch):
    d = tmp_path_factory.mktemp("ase")
    images = [f.to_atoms() for f in batch]
    ase.io.write(d / "x.mlds.h5", images)
    back = ase.io.read(d / "x.mlds.h5", ":")
    assert len(back) == len(batch)
    for original, atoms in zip(batch, back):
        assert_frames_equal(original, Frame.from_atoms(atoms), optional=("forces", "stress"))


@SETTINGS
@given(batch=st.lists(frames(), min_size=1, max_size=5))
def test_extxyz_roundtrip_bit_exact(tmp_path_factory, batch):
    """mlds -> extxyz (our writer) -> mlds keeps every float64 bit."""
    d = tmp_path_factory.mktemp("xyz")
    # extxyz has one cell convention per frame; keep numbers/positions/energy/forces/stress
    mlds.write(d / "a.h5", batch)
    from mlds.convert import convert, export_dataset

    export_dataset(d / "a.h5", d / "a.extxyz", "extxyz")
    convert([d / "a.extxyz"], d / "b.h5", from_fmt="extxyz", keep_duplicates=True)  # repeated frames are the point
    with mlds.open(d / "b.h5") as ds:
        assert len(ds) == len(batch)
        for original, back in zip(batch, ds):
            assert_frames_equal(original, back, optional=("forces", "stress"))


def test_optional_arrays_appear_midway_are_backfilled(tmp_path):
    """A value first seen in a later batch creates the array and fills earlier frames with NaN."""
    plain = [Frame([1], [[0, 0, 0]], energy=float(i)) for i in range(5)]
    with_f = [Frame([1], [[0, 0, 0]], energy=9.0, forces=[[1, 2, 3]])]
    path = mlds.write(tmp_path / "a.h5", plain + with_f, batch_frames=2)
    with mlds.open(path) as ds:
        assert ds.has("forces")
        f = ds.array("forces")
        assert np.isnan(f[:5]).all()
        np.testing.assert_array_equal(f[5], [1, 2, 3])
        assert not ds.has("stress")


def test_bulk_arrays_match_frames(tmp_path):
    rng = np.random.default_rng(1)
    batch = [Frame(rng.integers(1, 9, n), rng.normal(size=(n, 3)), np.eye(3) * 9, [1, 1, 1], energy=float(n), forces=rng.normal(size=(n, 3)))
             for n in rng.integers(1, 7, 40)]
    path = mlds.write(tmp_path / "a.zarr", batch, chunk_atoms=16, chunk_frames=8)
    with mlds.open(path) as ds:
        pos = ds.array("positions", 10, 20)
        np.testing.assert_array_equal(pos, np.concatenate([f.positions for f in batch[10:20]]))
        np.testing.assert_array_equal(ds.array("energy"), [f.energy for f in batch])
        arrays = ds.arrays(["n_atoms", "forces"], 5, 6)
        np.testing.assert_array_equal(arrays["forces"], batch[5].forces)
        assert [f.energy for f in ds[3:9:2]] == [batch[i].energy for i in range(3, 9, 2)]
        assert ds[-1].energy == batch[-1].energy
        assert [f.energy for f in ds[[0, 39, 7]]] == [batch[i].energy for i in (0, 39, 7)]


def test_writer_memory_is_bounded_by_batch(tmp_path):
    """The writer flushes every batch: its buffer never holds more than batch_frames frames."""
    from mlds.format.writer import DatasetWriter

    w = DatasetWriter(tmp_path / "a.h5", batch_frames=10)
    peak = 0
    for i in range(95):
        w.append_frame(Frame([1, 1], np.zeros((2, 3)), energy=float(i)))
        peak = max(peak, len(w._buf))
    w.close()
    assert peak < 10
    with mlds.open(tmp_path / "a.h5") as ds:
        assert len(ds) == 95 and ds[94].energy == 94.0


def test_same_content_gives_identical_hdf5_bytes(tmp_path):
    """Content addressing in the store relies on deterministic files."""
    batch = [Frame([8, 1, 1], np.arange(9.0).reshape(3, 3), energy=-1.5, forces=np.ones((3, 3)))] * 3
    a = mlds.write(tmp_path / "a.h5", batch, {"name": "x"})
    b = mlds.write(tmp_path / "b.h5", batch, {"name": "x"})
    assert a.read_bytes() == b.read_bytes()
