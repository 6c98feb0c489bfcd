"""Reading paths: mapped rows, buffered (compressed) rows, the Zarr reader, minibatches, cold mode, small files."""

from __future__ import annotations

import pickle

import h5py
import numpy as np
import pytest

import mlds
from mlds.format import h5_read
from mlds.format.frame import Frame
from tests.format.strategies import assert_frames_equal


def make_frames(n: int, seed: int = 0, *, magmoms: bool = False) -> list[Frame]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        na = int(rng.integers(1, 9))
        out.append(Frame(
            numbers=rng.integers(1, 30, na), positions=rng.normal(size=(na, 3)), cell=np.eye(3) * (4 + i % 3),
            pbc=[True, True, i % 2 == 0], energy=float(rng.normal(-3 * na, 1)), forces=rng.normal(size=(na, 3)),
            stress=rng.normal(size=(3, 3)) * 0.01, magmoms=rng.normal(size=na) if magmoms else None,
            source=0, calculation=0, info={"step": i},
        ))
    return out


META = {"name": "t", "calculations": [{"code": "VASP"}],
        "sources": [{"path": "OUTCAR", "sha256": "0" * 64, "format": "vasp-outcar", "frames_kept": 0, "steps_kept": ""}]}


def meta_for(frames: list[Frame]) -> dict:
    m = {k: (list(v) if isinstance(v, list) else v) for k, v in META.items()}
    m["sources"] = [dict(META["sources"][0], frames_kept=len(frames), steps_kept=f"0-{len(frames) - 1}")]
    return m


@pytest.fixture(scope="module")
def frames() -> list[Frame]:
    return make_frames(60)


@pytest.fixture(scope="module", params=["h5", "zarr", "zarr.zip", "gzip.h5", "gzip.zarr"])
def path(request, tmp_path_factory, frames):
    """The same frames in every container, with small chunks so reads cross chunk boundaries."""
    name = request.param
    opts = {"chunk_frames": 7, "chunk_atoms": 11}
    if name.startswith("gzip."):
        opts["compression"] = "gzip"
        name = name[len("gzip."):]
    return mlds.write(tmp_path_factory.mktemp("r") / f"d.{name}", frames, meta_for(frames), **opts)


def test_frames_agree_with_what_was_written(path, frames):
    with mlds.open(path, cache_bytes=4096) as ds:  # a small cache: compressed reads evict blocks
        for i in [0, 59, 13, 7, 6, 33, -1]:
            assert_frames_equal(frames[i], ds[i])
            assert ds[i].info == {"step": i % 60}
        assert [f.energy for f in ds] == [f.energy for f in frames]


def test_batch_concatenated_follows_the_requested_order(path, frames):
    idx = [41, 3, 3, 59, 0, 17]  # unsorted, with a repeat
    with mlds.open(path) as ds:
        b = ds.batch(idx)
    assert list(b.indices) == idx and b.n_frames == 6
    assert set(b) >= {"numbers", "positions", "forces", "cell", "pbc", "energy", "stress", "ptr", "batch", "n_atoms"}
    for j, i in enumerate(idx):
        sl = slice(b.ptr[j], b.ptr[j + 1])
        np.testing.assert_array_equal(b.positions[sl], frames[i].positions)
        np.testing.assert_array_equal(b.forces[sl], frames[i].forces)
        np.testing.assert_array_equal(b.numbers[sl], frames[i].numbers)
        assert (b.batch[sl] == j).all()
        assert b.energy[j] == frames[i].energy and b.n_atoms[j] == frames[i].n_atoms
        np.testing.assert_array_equal(b.cell[j], frames[i].cell)
        np.testing.assert_array_equal(b.pbc[j], frames[i].pbc)
    assert b.pbc.dtype == bool and "6 frames" in repr(b)


def test_batch_padded_has_a_mask(path, frames):
    idx = np.array([5, 2, 50])
    with mlds.open(path) as ds:
        b = ds.batch(idx, arrays=["positions", "energy"], pad=True)
    width = max(frames[i].n_atoms for i in idx)
    assert b.positions.shape == (3, width, 3) and b.mask.shape == (3, width)
    for j, i in enumerate(idx):
        n = frames[i].n_atoms
        assert b.mask[j].sum() == n
        np.testing.assert_array_equal(b.positions[j, :n], frames[i].positions)
        assert (b.positions[j, n:] == 0).all()
    assert set(b) == {"indices", "n_atoms", "positions", "energy", "mask"}


def test_frames_and_fancy_indexing_match_single_reads(path):
    with mlds.open(path) as ds:
        many = ds.frames([9, -1, 9, 0])
        for f, i in zip(many, [9, 59, 9, 0]):
            assert_frames_equal(f, ds[i])
        assert [f.energy for f in ds[[4, 2]]] == [ds[4].energy, ds[2].energy]
        assert [f.energy for f in ds[50:5:-20]] == [ds[50].energy, ds[30].energy, ds[10].energy]


def test_batch_refuses_bad_requests(path):
    with mlds.open(path) as ds:
        with pytest.raises(IndexError, match="out of range"):
            ds.batch([0, 60])
        with pytest.raises(KeyError, match="unknown array"):
            ds.batch([0], arrays=["velocity"])
        with pytest.raises(KeyError, match="not present"):
            ds.batch([0], arrays=["charges"])
        empty = ds.batch([])
        assert empty.positions.shape == (0, 3) and empty.ptr.tolist() == [0]


def test_store_version_batches_across_shards(tmp_path, frames):
    """A ConcatDataset puts each part's rows back in the requested order; arrays missing in a part read as missing."""
    from mlds.format.concat import ConcatDataset
    from mlds.format.dataset import Dataset

    with_m = make_frames(5, seed=3, magmoms=True)
    a = mlds.write(tmp_path / "a.h5", frames[:30], meta_for(frames))
    b = mlds.write(tmp_path / "b.zarr", with_m, meta_for(with_m))
    ds = ConcatDataset([Dataset(a), Dataset(b)])
    idx = [31, 2, 34, 29]
    got = ds.batch(idx, arrays=["positions", "magmoms", "atom_offset"])
    ref = [frames[2] if i == 2 else frames[29] if i == 29 else with_m[i - 30] for i in idx]
    for j, f in enumerate(ref):
        sl = slice(got.ptr[j], got.ptr[j + 1])
        np.testing.assert_array_equal(got.positions[sl], f.positions)
        if f.magmoms is None:
            assert np.isnan(got.magmoms[sl]).all()
        else:
            np.testing.assert_array_equal(got.magmoms[sl], f.magmoms)
    assert got.atom_offset.tolist() == [ds.array("atom_offset")[i] for i in idx]
    ds.close()
    again = pickle.loads(pickle.dumps(ds))  # a store version pickles too (its parts re-open lazily)
    np.testing.assert_array_equal(again.batch(idx, arrays=["positions"]).positions, got.positions)
    again.close()


@pytest.mark.parametrize("whole_chunks", [True, False], ids=["fits-in-memory", "larger-than-memory"])
def test_cold_mode_reads_the_same(tmp_path, frames, monkeypatch, whole_chunks):
    """Once the handle goes cold (prefetching exact pages, or whole chunks when the data fits in
    memory; offsets in memory), frames and batches are unchanged, partial last chunks included."""
    from mlds.format import dataset

    if not whole_chunks:
        monkeypatch.setattr(dataset, "_WHOLE_CHUNKS_RAM", 0.0)
    order = np.random.default_rng(5).permutation(60).tolist()
    for name in ("c.h5", "c.zarr"):
        p = mlds.write(tmp_path / name, frames, meta_for(frames), chunk_frames=7, chunk_atoms=11)
        with mlds.open(p) as ds:
            warm = [ds[i] for i in order]
            warm_b = ds.batch([8, 1, 40])
            ds._handle().go_cold()
            assert bool(ds._handle().whole_chunks) == whole_chunks
            for f, i in zip(warm, order):
                assert_frames_equal(f, ds[i])
            cold_b = ds.batch([8, 1, 40])
            for k in warm_b:
                np.testing.assert_array_equal(warm_b[k], cold_b[k])


def test_layouts_other_writers_use_are_read(tmp_path, frames):
    """Contiguous datasets, unaligned chunks and never-written chunks (fill values) read correctly."""
    src = mlds.write(tmp_path / "src.h5", frames, meta_for(frames))
    out = tmp_path / "other.h5"
    with h5py.File(src, "r") as f, h5py.File(out, "w") as g:
        for k, v in f.attrs.items():
            g.attrs[k] = v
        for key in ("frames/n_atoms", "frames/atom_offset", "frames/cell", "frames/pbc", "frames/energy"):
            g.create_dataset(key, data=f[key][()])  # contiguous
            g[key].attrs["unit"] = f[key].attrs["unit"]
        for key in ("atoms/numbers", "atoms/positions", "atoms/forces"):
            d = g.create_dataset(key, data=f[key][()], chunks=(5, *f[key].shape[1:]))  # unaligned small chunks
            d.attrs["unit"] = f[key].attrs["unit"]
        st = g.create_dataset("frames/stress", shape=(60, 3, 3), dtype="<f8", chunks=(8, 3, 3), fillvalue=np.nan)
        st[:8] = f["frames/stress"][:8]  # chunks past the first are never written
        st.attrs["unit"] = "eV/angstrom^3"
    with mlds.open(out) as ds:
        assert type(ds._handle().col("positions")).__name__ == "MappedColumn"
        for i in (0, 7, 8, 59):
            f = ds[i]
            np.testing.assert_array_equal(f.positions, frames[i].positions)
            if i < 8:
                np.testing.assert_array_equal(f.stress, frames[i].stress)
            else:
                assert np.isnan(f.stress).all()
        b = ds.batch([59, 1, 30])
        np.testing.assert_array_equal(b.forces[b.ptr[1]:b.ptr[2]], frames[1].forces)
        assert np.isnan(b.stress[0]).all() and not np.isnan(b.stress[1]).any()
        np.testing.assert_array_equal(ds.array("forces"), np.concatenate([x.forces for x in frames]))


def test_reopening_a_changed_file_sees_the_change(tmp_path, frames):
    """The per-process layout cache is keyed by file identity: an edit in place is never served stale."""
    p = mlds.write(tmp_path / "e.h5", frames, meta_for(frames))
    with mlds.open(p) as ds:
        assert ds[0].energy == frames[0].energy
    with h5py.File(p, "r+") as f:
        f["frames/energy"][0] = 123.0
        f.attrs["mlds_spec_version"] = "1.9.0"
    with mlds.open(p) as ds:
        assert ds[0].energy == 123.0 and ds.spec_version == "1.9.0"
    h5_read.clear_caches()
    with mlds.open(p) as ds:
        assert ds.array("energy")[0] == 123.0


def test_small_files_stay_small(tmp_path):
    """Chunks follow the data: 20 frames make kB, not the MBs of pre-sized chunks."""
    frames = make_frames(20)
    h5 = mlds.write(tmp_path / "s.h5", frames, meta_for(frames))
    zr = mlds.write(tmp_path / "s.zarr", frames, meta_for(frames))
    assert h5.stat().st_size < 100_000
    assert sum(f.stat().st_size for f in zr.rglob("*") if f.is_file()) < 60_000
    with h5py.File(h5) as f:
        assert f["atoms/positions"].chunks[0] == f["atoms/positions"].shape[0]  # one exact chunk


def test_chunks_of_a_growing_file_stay_bounded(tmp_path, monkeypatch):
    """Past the first write, chunks are ~TARGET_CHUNK_BYTES, at most 4x what was seen, and HDF5 chunks are aligned."""
    from mlds.format import writer

    monkeypatch.setattr(writer, "FIRST_WRITE_BYTES", 20_000)
    monkeypatch.setattr(writer, "TARGET_CHUNK_BYTES", 40_000)
    frames = make_frames(400, seed=5)
    p = mlds.write(tmp_path / "g.h5", frames, meta_for(frames), batch_frames=50)
    with h5py.File(p) as f:
        pos, energy = f["atoms/positions"], f["frames/energy"]
        assert pos.chunks[0] * 24 <= 40_000 and energy.chunks[0] <= 4 * 50
        assert pos.id.get_num_chunks() > 1
        for k in range(pos.id.get_num_chunks()):
            info = pos.id.get_chunk_info(k)
            if info.size >= writer.ALIGN_THRESHOLD:
                assert info.byte_offset % writer.ALIGN_INTERVAL == 0
    with mlds.open(p) as ds:
        for i in (0, 133, 399):
            assert_frames_equal(frames[i], ds[i])


def test_first_bytes_identify_the_format(tmp_path, frames):
    h5 = mlds.write(tmp_path / "m.h5", frames[:3], meta_for(frames[:3]))
    zz = mlds.write(tmp_path / "m.zarr.zip", frames[:3], meta_for(frames[:3]))
    assert b"mlds_format" in h5.read_bytes()[:2000]
    head = zz.read_bytes()[:2000]
    assert head[30:39] == b"zarr.json" and b'"mlds-dataset"' in head


def test_threads_opening_and_reading_one_file(tmp_path, frames):
    """Readers in several threads share one cached descriptor and map; none closes it under another."""
    from concurrent.futures import ThreadPoolExecutor

    p = mlds.write(tmp_path / "t.h5", frames, meta_for(frames))

    def work(seed: int) -> bool:
        rng = np.random.default_rng(seed)
        for _ in range(15):
            with mlds.open(p) as ds:
                for i in rng.integers(0, 60, 5).tolist():
                    if ds[i].energy != frames[i].energy:
                        return False
        return True

    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(work, range(8)))


def test_zarr_written_by_zarr_python_with_zstd_is_read(tmp_path, frames):
    """The Zarr reader decodes every codec spec §10.3 allows; here zstd, chunked by another writer."""
    import zarr
    from zarr.codecs import ZstdCodec

    src = zarr.open_group(str(mlds.write(tmp_path / "src.zarr", frames, meta_for(frames))), mode="r")
    out = zarr.open_group(str(tmp_path / "zstd.zarr"), mode="w", zarr_format=3)
    out.attrs.update(dict(src.attrs))
    for gname, sub in src.groups():
        group = out.require_group(gname)
        for name, arr in sub.arrays():
            copy = group.create_array(name, shape=arr.shape, chunks=(7, *arr.shape[1:]), dtype=arr.dtype,
                                      compressors=[ZstdCodec(level=3)], fill_value=arr.fill_value, attributes=dict(arr.attrs))
            copy[...] = arr[...]
    with mlds.open(tmp_path / "zstd.zarr") as ds:
        for i in (0, 17, 59):
            assert_frames_equal(frames[i], ds[i])
        np.testing.assert_array_equal(ds.array("forces"), np.concatenate([f.forces for f in frames]))


@pytest.mark.parametrize("suffix", ["h5", "zarr"])
def test_training_labels_come_back_on_every_read_path(tmp_path, suffix):
    """Spec 1.1 labels (config_type, set, config_weight) reach Frame.info through ds[i], ds.frames and
    iteration alike; a frame without a label gets no key (not an empty string or NaN)."""
    frames = make_frames(12, seed=3)
    for i, f in enumerate(frames):
        if i % 3:
            f.info["config_type"] = "bulk_fcc" if i % 2 else "surface/111 ü"
        if i % 4 == 0:
            f.info["set"] = "test"
        if i % 5:
            f.info["config_weight"] = 0.5 * i
    path = mlds.write(tmp_path / f"labels.{suffix}", frames, meta_for(frames), chunk_frames=5)
    with mlds.open(path) as ds:
        read = {"ds[i]": [ds[i] for i in range(12)], "frames": ds.frames(list(range(12))), "iter": list(ds)}
        assert ds.has("config_type") and ds.has("set") and ds.has("config_weight")
    for how, got in read.items():
        assert [g.info for g in got] == [f.info for f in frames], how
