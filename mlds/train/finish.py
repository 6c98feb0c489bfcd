"""Turn a finished run folder into a potential: checks, best epoch, assembly, registration.

Nothing is registered unless every check passes: the job said ``done``, the learning curve
is complete, finite and did not diverge, and (when the n2p2 programs are here) the
assembled files reproduce the recorded test errors through ``nnp-dataset``.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import time
from pathlib import Path
from typing import Any

from mlds.train import jobscript as js
from mlds.train import symfuncs
from mlds.train import potential as _pot
from mlds.train.potential import Potential, lammps_lines, validate
from mlds.train.run import TrainError, TrainRun, load_run

VERIFY_RTOL = 1e-4   # learning-curve.out prints 9 significant digits; nnp-dataset recomputes the same numbers


def _curve(run: TrainRun) -> list[dict[str, float]]:
    rows = js.stitched_curve(run.path / "steps" / "train")
    if not rows:
        raise TrainError(f"{run.path}: no learning curve (steps/train/seg*/learning-curve.out); did the job run?")
    return rows


def assemble(run: TrainRun, best: dict[str, float], out: Path) -> dict[str, Path]:
    """Copy the potential's files for epoch ``best`` into ``out``: {name in the potential: path}."""
    from mlds.util import atomic_path

    seg_dir = run.path / "steps" / "train" / f"seg{int(best['_seg']):03d}"
    text = (seg_dir / "input.nn").read_text(encoding="utf-8")
    if not re.search(r"(?m)^mean_energy\s", text):
        raise TrainError(f"{seg_dir}/input.nn has no normalisation header (mean_energy ...); was nnp-train interrupted?")
    text = "\n".join(ln for ln in text.splitlines() if ln.split()[:1] != ["use_old_weights_short"]) + "\n"
    numbers = [int(z) for z in _job(run)["numbers"]]
    weights = js.weights_files(seg_dir, numbers, int(best["_local"]))
    missing = [w.name for w in weights if not w.is_file()]
    if missing:
        raise TrainError(f"{seg_dir}: weights of epoch {int(best['epoch'])} missing ({', '.join(missing)})")
    with atomic_path(out, is_dir=True) as tmp:
        (tmp / "input.nn").write_text(text, encoding="utf-8")
        shutil.copy(run.path / "steps" / "scaling" / "scaling.data", tmp / "scaling.data")
        for z, w in zip(numbers, weights):
            shutil.copy(w, tmp / f"weights.{z:03d}.data")
        shutil.copy(run.path / "settings.toml", tmp / "settings.toml")
    return {p.name: p for p in sorted(out.iterdir())}


def _job(run: TrainRun) -> dict[str, Any]:
    import json

    return json.loads((run.path / js.RUN_FILE).read_text(encoding="utf-8"))["job"]


def verify(run: TrainRun, pot_dir: Path, best: dict[str, float], *, plot: Path | None = None) -> bool | None:
    """Re-evaluate the test split with the assembled files; None when n2p2 is not available here.

    Compared in n2p2's internal units (learning-curve ``_iu`` columns): both sides print 9
    significant digits, which in physical units would hide errors below ~1e-6 eV/atom.
    """
    from mlds.codes import CodeError, locate
    from mlds.train import predict as ev

    try:
        locate("n2p2", ("nnp-dataset",))
    except CodeError:
        return None
    job = _job(run)
    test_file = pot_dir.parent / ".test.data"
    try:
        ev.write_subset(run.path / "input.data", test_file, "test")
        res = ev.evaluate_file(pot_dir, test_file, energy_per_eV=job["energy_per_eV"],
                               length_per_angstrom=job["length_per_angstrom"])
    finally:
        test_file.unlink(missing_ok=True)
    got = res.internal_rmse()
    want_iu = (best["RMSEpa_Etest_iu"], best["RMSE_Ftest_iu"])
    for what, want, have in zip(("energy RMSE/atom", "force RMSE"), want_iu, got):
        if abs(have - want) > VERIFY_RTOL * abs(want) + 1e-9:
            raise TrainError(f"the assembled potential does not reproduce its recorded test {what}: nnp-dataset "
                             f"gives {have:.6g}, the learning curve {want:.6g} (internal units); nothing registered")
    if plot is not None:
        ev.parity_plot(res, plot, title=f"test split ({int(res.n_atoms.size)} structures)")
    return True


def finish(run_dir: str | os.PathLike | TrainRun, *, name: str | None = None, store: Any = None,
           register: bool = True, verify_files: bool = True, message: str = "",
           parity_plot: bool = False, metadata: dict[str, Any] | None = None) -> Potential:
    """Checks, best epoch, assembly into ``<run>/potential`` and registration (run folder: :mod:`mlds.train.run`).

    ``parity_plot``: also draw ``<run>/parity.png`` (predicted vs DFT on the test split).
    ``metadata``: extra or overriding keys (``license``, ``authors``, ``description``...).
    """
    run = run_dir if isinstance(run_dir, TrainRun) else load_run(run_dir)
    state = run.state
    if state.get("state") != "done":
        what = state.get("state") or "not started"
        msg = state.get("message") or "no mlds-job.json"
        raise TrainError(f"{run.path}: the training job is {what} (step {state.get('step', '-')}): {msg}; "
                         "nothing registered")
    job = _job(run)
    rows = _curve(run)
    why = js.divergence(rows, float(job.get("divergence_factor", 10.0)))
    if why:
        raise TrainError(f"{run.path}: {why}; nothing registered")
    epochs = int(job["epochs"])
    if int(rows[-1]["epoch"]) < epochs:
        raise TrainError(f"{run.path}: the learning curve ends at epoch {int(rows[-1]['epoch'])} of {epochs}; "
                         "nothing registered")
    metric = job.get("best_epoch", "combined")
    best = js.best_epoch(rows, metric)
    e_conv, l_conv = float(job["energy_per_eV"]), float(job["length_per_angstrom"])
    f_conv = e_conv / l_conv

    def ev_(r: dict[str, float], k: str, c: float) -> float:
        return float(r.get(k, float("nan"))) / c

    pot_dir = run.path / "potential"
    files = assemble(run, best, pot_dir)
    metrics = {
        "energy_rmse_per_atom_eV": {"train": ev_(best, js.E_TRAIN, e_conv), "test": ev_(best, js.E_TEST, e_conv)},
        "force_rmse_eV_per_angstrom": {"train": ev_(best, js.F_TRAIN, f_conv), "test": ev_(best, js.F_TEST, f_conv)},
    }
    verified = None
    if verify_files:
        verified = verify(run, pot_dir, best, plot=run.path / "parity.png" if parity_plot else None)
    if verified is not None:
        metrics["verified"] = verified
    metadata = {**build_metadata(run, job, rows, best, metrics, state), **(metadata or {})}
    validate(metadata)
    import json

    (run.path / "potential.json").write_text(json.dumps(metadata, indent=1) + "\n", encoding="utf-8")
    pot = Potential(metadata, pot_dir, files=sorted(files))
    if not register:
        return pot
    pname = name or f"{run.dataset['name']}-n2p2"
    return _pot.register(pot, pname, files, store=store, message=message)


def build_metadata(run: TrainRun, job: dict[str, Any], rows: list[dict[str, float]], best: dict[str, float],
                   metrics: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
    import mlds

    e_conv, l_conv = float(job["energy_per_eV"]), float(job["length_per_angstrom"])
    f_conv = e_conv / l_conv
    curve = [[float(int(r["epoch"])), r[js.E_TRAIN] / e_conv, r[js.E_TEST] / e_conv,
              r.get(js.F_TRAIN, float("nan")) / f_conv, r.get(js.F_TEST, float("nan")) / f_conv] for r in rows]
    pruned = {}
    prune_json = run.path / "steps" / "prune" / "prune.json"
    if prune_json.is_file():
        import json

        pruned = json.loads(prune_json.read_text())
    kept = pruned.get("kept") or symfuncs.count_per_element(
        (run.path / "input.nn").read_text(encoding="utf-8").splitlines())
    bohr = job["units"] == "bohr-hartree"
    ds = {k: v for k, v in run.dataset.items() if k in ("name", "tag", "version", "manifest", "file_sha256",
                                                        "n_frames", "store")}
    md: dict[str, Any] = {
        "schema": "mlds-potential-v1",
        "code": "n2p2",
        "code_version": job.get("code_version", ""),
        "elements": list(job["elements"]),
        "cutoff_angstrom": float(run.settings["cutoff"]),
        "units": {"system": job["units"], "length": "bohr" if bohr else "angstrom",
                  "energy": "hartree" if bohr else "eV", "cflength": l_conv, "cfenergy": e_conv},
        "dataset": ds,
        "split": {k: run.split[k] for k in ("seed", "test_fraction", "n_train", "n_test", "test_indices")},
        "metrics": metrics,
        "epochs": int(job["epochs"]),
        "best_epoch": int(best["epoch"]),
        "best_epoch_metric": job.get("best_epoch", "combined"),
        "learning_curve": curve,
        "symmetry_functions": {
            "rule": run.settings["symmetry_functions"].get("rule", ""),
            "reference": symfuncs.REFERENCE,
            "per_element": {k: int(v) for k, v in kept.items()},
            "pruned": sum(len(v) for v in pruned.get("pruned", {}).values()),
        },
        "settings": run.settings,
        "host": str(state.get("host") or platform.node()),
        "run_seconds": float(state.get("seconds") or 0.0),
        "trained": str(state.get("updated") or time.strftime("%Y-%m-%dT%H:%M:%S%z")),
        "mlds_version": mlds.__version__,
    }
    md["lammps"] = lammps_lines(md, "potential")
    label = f"{run.dataset['name']}@{run.dataset.get('tag') or run.dataset.get('version') or 'file'}"
    md["description"] = (f"n2p2 potential for {'-'.join(md['elements'])} (cutoff {md['cutoff_angstrom']:g} Å), "
                         f"trained by mlds on {label}")
    for key in ("license", "authors"):  # inherited from the dataset; finish(metadata=...) may override
        if run.dataset.get(key):
            md[key] = run.dataset[key]
    return md
