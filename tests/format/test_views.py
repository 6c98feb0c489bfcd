"""Selections and subsets write out valid with their provenance; datasets and views pickle into spawned workers."""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest

import mlds
from mlds.errors import FormatError
from mlds.format.frame import Frame
from mlds.format.validate import validate_dataset
from tests.format.strategies import assert_frames_equal


def _frames() -> list[Frame]:
    """Si, O and SiO2 frames from two sources and two calculations, with ionic-step indices."""
    rng = np.random.default_rng(7)
    out = []
    for i in range(30):
        numbers = [[14, 14], [8, 8], [14, 8, 8]][i % 3]
        n = len(numbers)
        out.append(Frame(numbers, rng.normal(size=(n, 3)), np.eye(3) * 6, [1, 1, 1], energy=-2.0 * n - 0.1 * i,
                         forces=rng.normal(size=(n, 3)), source=i % 2, calculation=i % 2, info={"step": i // 2}))
    return out


META = {
    "name": "sio2",
    "license": "CC-BY-4.0",
    "calculations": [{"code": "VASP"}, {"code": "Quantum ESPRESSO"}],
    "sources": [
        {"path": "a/OUTCAR", "sha256": "a" * 64, "format": "vasp-outcar", "calculation": 0, "frames_kept": 15,
         "frames_dropped": {"scf-unconverged": 1}, "steps_kept": "0-14"},
        {"path": "b/pw.out", "sha256": "b" * 64, "format": "qe-pw", "calculation": 1, "frames_kept": 15, "steps_kept": "0-14"},
    ],
}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    frames = _frames()
    return frames, mlds.write(tmp_path_factory.mktemp("v") / "sio2.h5", frames, META)


def test_select_by_elements_energy_and_size(data):
    frames, path = data
    with mlds.open(path) as ds:
        si = ds.select(elements=["Si"])
        assert si.index.tolist() == list(range(0, 30, 3))
        sio = ds.select(elements=["Si", 8])
        assert len(sio) == 30
        epa = ds.select(energy_per_atom=(None, -2.05))
        assert epa.index.tolist() == [i for i, f in enumerate(frames) if f.energy / f.n_atoms <= -2.05]
        both = ds.select(elements=["O", "Si"], n_atoms=(3, 3), indices=[2, 5, 6, 29])
        assert both.index.tolist() == [2, 5, 29]
        with pytest.raises(ValueError, match="unknown element"):
            ds.select(elements=["Qq"])


def test_subset_written_out_is_valid_with_provenance(data, tmp_path):
    frames, path = data
    idx = [29, 4, 10, 11]
    with mlds.open(path) as ds:
        sub = ds.subset(idx)
        assert len(sub) == 4 and "4 of 30" in repr(sub)
        out = sub.copy_to(tmp_path / "sub.h5")
        out2 = mlds.write(tmp_path / "sub.zarr", ds.select(elements=["O"]))
    assert validate_dataset(out) == []
    assert validate_dataset(out2) == []
    with mlds.open(out) as back:
        for f, i in zip(back, idx):
            assert_frames_equal(frames[i], f)
            assert (f.source, f.calculation, f.info["step"]) == (i % 2, i % 2, i // 2)
        meta = back.metadata
    assert meta["license"] == "CC-BY-4.0" and len(meta["calculations"]) == 2
    s0, s1 = meta["sources"]
    assert (s0["frames_kept"], s0["steps_kept"], s0["frames_dropped"]) == (2, "2,5", {"scf-unconverged": 1, "not-selected": 13})
    assert (s1["frames_kept"], s1["steps_kept"], s1["frames_dropped"]) == (2, "5,14", {"not-selected": 13})


def test_frames_with_dangling_provenance_are_refused(data, tmp_path):
    """``mlds.write(path, ds[idx])`` used to write a file validate rejects; now it says what to do."""
    _, path = data
    with mlds.open(path) as ds:
        picked = ds[[3, 4]]
    with pytest.raises(FormatError, match="subset"):
        mlds.write(tmp_path / "bad.h5", picked)
    assert not (tmp_path / "bad.h5").exists()


def test_subset_refuses_repeats_and_views_compose(data):
    _, path = data
    with mlds.open(path) as ds:
        with pytest.raises(ValueError, match="repeat frame 3"):
            ds.subset([3, 1, 3])
        view = ds.select(elements=["O", "Si"]).subset([10, 2]).subset([1])
        assert view.index.tolist() == [2] and view.base is ds
        assert view.array("atom_offset").tolist() == [0]
        np.testing.assert_array_equal(view.array("positions"), ds[2].positions)


def test_a_dataset_pickles_as_its_path_and_reopens_lazily(data):
    _, path = data
    ds = mlds.open(path)
    ds[0]
    blob = pickle.dumps(ds)
    assert len(blob) < 500  # no data, no handles
    ds.close()
    back = pickle.loads(blob)
    assert back._h is None  # nothing opened yet
    assert back[5].energy == _frames()[5].energy and len(back) == 30
    back.close()


def _worker_sum(args):
    ds, idx = args
    b = ds.batch(idx)
    return os.getpid(), float(b.energy.sum()), int(b.n_atoms.sum())


def test_datasets_and_views_work_in_spawned_workers(data):
    """What a PyTorch DataLoader with spawn workers does: pickle the dataset, read batches there."""
    frames, path = data
    ctx = mp.get_context("spawn")
    with mlds.open(path) as ds, ProcessPoolExecutor(2, mp_context=ctx) as pool:
        ds[0]  # opened in the parent: the pickled copy must not carry the handle
        jobs = [(ds, [1, 2, 3]), (ds.select(elements=["Si"]), [0, 1]), (ds, [29])]
        got = list(pool.map(_worker_sum, jobs))
    assert {pid for pid, _, _ in got} != {os.getpid()}
    assert got[0][1:] == (sum(frames[i].energy for i in (1, 2, 3)), sum(frames[i].n_atoms for i in (1, 2, 3)))
    assert got[1][1:] == (frames[0].energy + frames[3].energy, 4)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_reopens_its_own_handles(data):
    _, path = data
    with mlds.open(path) as ds:
        ds[1]
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            try:
                ok = ds._h is None and ds[2].energy == _frames()[2].energy
                os.write(w, b"1" if ok else b"0")
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        assert os.read(r, 1) == b"1"
        assert ds[3].energy == _frames()[3].energy  # the parent's handle is untouched


def test_reprs_and_help_say_what_things_are(data):
    _, path = data
    with mlds.open(path) as ds:
        assert repr(ds).startswith("<mlds.Dataset sio2.h5: 30 frames, 70 atoms")
        assert repr(ds[2]) == f"<mlds.Frame O2Si (3 atoms) E={ds[2].energy:.6g} eV +forces pbc=TTT>"
    doc = Frame.__doc__
    assert "eV/Å³" in doc and "positive = tensile" in doc and "F = -dE/dr" in doc
