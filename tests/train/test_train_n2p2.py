"""Training with the real n2p2 2.3.0 on real data: learning, assembly, reproduction by nnp-predict."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from mlds import train
from mlds.train import jobscript as js
from mlds.train import predict


def test_run_folder_records_exact_data_and_split(cu2s_run, cu2s_store):
    from mlds.store.versions import resolve

    run = train.load_run(cu2s_run.path)
    assert run.dataset["manifest"] == resolve(cu2s_store, "cu2s", "v1")
    assert run.split["n_test"] == 2 and run.split["n_train"] == 18 and run.split["seed"] == 7
    blocks = list(predict.structure_blocks(run.path / "input.data"))
    tagged = [i for i, b in enumerate(blocks) if b.startswith("begin set=test")]
    assert tagged == run.split["test_indices"]
    again = train.prepare("cu2s@v1", store=cu2s_store, workdir=cu2s_run.path.parent / "again", epochs=3, seed=7,
                          settings={"preset": "quick"})
    assert again.split["test_indices"] == run.split["test_indices"]           # the seed fixes the split
    assert (again.path / "input.data").read_bytes() == (run.path / "input.data").read_bytes()
    assert (again.path / "input.nn").read_text() == (run.path / "input.nn").read_text()


def test_learning_curve_streams_and_rmse_falls(cu2s_run):
    events = [e for e in map(js.parse_progress, cu2s_run.lines) if e]
    assert [e["epoch"] for e in events] == [0, 1, 2, 3]
    rows = js.stitched_curve(cu2s_run.path / "steps" / "train")
    best = js.best_epoch(rows)
    assert best["epoch"] > 0
    assert best[js.E_TEST] < rows[0][js.E_TEST] and best[js.F_TEST] < rows[0][js.F_TEST]
    assert best[js.E_TRAIN] < rows[0][js.E_TRAIN] and best[js.F_TRAIN] < rows[0][js.F_TRAIN]
    assert cu2s_run.state["state"] == "done" and cu2s_run.state["best_epoch"] == int(best["epoch"])


def test_finish_assembles_a_verified_potential(cu2s_run):
    pot = train.finish(cu2s_run.path, register=False, parity_plot=True)
    md = pot.metadata
    assert sorted(p.name for p in pot.path.iterdir()) == ["input.nn", "scaling.data", "settings.toml",
                                                          "weights.016.data", "weights.029.data"]
    assert md["metrics"]["verified"] is True and md["elements"] == ["S", "Cu"]
    rows = js.stitched_curve(cu2s_run.path / "steps" / "train")
    best = next(r for r in rows if int(r["epoch"]) == md["best_epoch"])
    assert md["metrics"]["energy_rmse_per_atom_eV"]["test"] == pytest.approx(best[js.E_TEST])
    assert md["learning_curve"][md["best_epoch"]][4] == pytest.approx(best[js.F_TEST])
    nn = (pot.path / "input.nn").read_text()
    assert re.search(r"(?m)^mean_energy ", nn) and "use_old_weights_short" not in nn
    seg = cu2s_run.path / "steps" / "train" / "seg000"
    assert (pot.path / "weights.029.data").read_bytes() == (seg / f"weights.029.{md['best_epoch']:06d}.out").read_bytes()
    assert (cu2s_run.path / "parity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lammps = pot.lammps("pot")
    assert lammps["pair_style"] == ("pair_style hdnnp 6 dir pot showew no showewsum 0 resetew no maxew 0 "
                                    "cflength 1.0 cfenergy 1.0")
    assert lammps["pair_coeff"] == "pair_coeff * * S Cu"
    assert json.loads((cu2s_run.path / "potential.json").read_text())["best_epoch"] == md["best_epoch"]


def _reference(block: str) -> tuple[int, float, np.ndarray]:
    atoms = [ln.split() for ln in block.splitlines() if ln.startswith("atom ")]
    energy = float(next(ln.split()[1] for ln in block.splitlines() if ln.startswith("energy ")))
    return len(atoms), energy, np.array([a[7:10] for a in atoms], dtype=float)


def test_registered_potential_reproduces_its_test_errors_through_nnp_predict(cu2s_run, cu2s_store, n2p2, tmp_path):
    train.finish(cu2s_run.path, name="cu2s-nnp", store=cu2s_store)
    pot = train.get("cu2s-nnp@v1", tmp_path / "hdnnp", store=cu2s_store)  # the files as the store hands them out
    d_e, d_f = [], []
    for block in predict.structure_blocks(cu2s_run.path / "input.data", "test"):
        n, e_ref, f_ref = _reference(block)
        e, f = predict.predict_structure(pot.path, block)
        d_e.append((e - e_ref) / n)
        d_f.append((f - f_ref).ravel())
    assert len(d_e) == 2
    rmse_e = float(np.sqrt(np.mean(np.square(d_e))))
    rmse_f = float(np.sqrt(np.mean(np.square(np.concatenate(d_f)))))
    m = pot.metadata["metrics"]
    # energies of 144-atom cells print with 9 digits (~1e-6 eV): far below these errors
    assert rmse_e == pytest.approx(m["energy_rmse_per_atom_eV"]["test"], rel=1e-4)
    assert rmse_f == pytest.approx(m["force_rmse_eV_per_angstrom"]["test"], rel=1e-4)


def test_evaluate_on_a_dataset_with_parity_plot(cu2s_run, cu2s_file, n2p2, tmp_path):
    train.finish(cu2s_run.path, register=False, verify_files=False)
    r = train.evaluate(cu2s_run.path / "potential", str(cu2s_file), plot=tmp_path / "parity.png")
    assert (r["structures"], r["atoms"]) == (20, 2880)
    m = json.loads((cu2s_run.path / "potential.json").read_text())["metrics"]
    lc = [m["energy_rmse_per_atom_eV"]["train"], m["energy_rmse_per_atom_eV"]["test"]]
    # all 20 frames = 18 train + 2 test: the overall RMSE lies between the two splits' values
    assert min(lc) * 0.999 <= r["energy_rmse_per_atom_eV"] <= max(lc) * 1.001
    assert (tmp_path / "parity.png").stat().st_size > 10_000
