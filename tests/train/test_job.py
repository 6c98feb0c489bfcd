"""job.sh as a cluster runs it: stdlib-only python, pruning, SIGTERM mid-training, MLDS_RESUME=1."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlds import train
from mlds.train import inputnn
from mlds.train import jobscript as js
from mlds.train import settings as S

CONSTANT_SF = "symfunction_short Si 2 Si 10000 0 6"  # exp(-1e4 r^2) underflows to 0 for every Si-Si distance


def _isolated_python(tmp_path: Path) -> Path:
    """A PATH folder whose python3 runs without site-packages: the job may use the standard library only."""
    folder = tmp_path / "isolated-bin"
    if folder.is_dir():
        return folder
    folder.mkdir()
    (folder / "python3").write_text(f"#!/bin/sh\nexec {sys.base_prefix}/bin/python3 -I -S \"$@\"\n")
    os.chmod(folder / "python3", 0o755)
    return folder


def _job_env(n2p2_bin: Path, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {"PATH": f"{_isolated_python(tmp_path)}:/usr/bin:/bin", "HOME": str(tmp_path), "MLDS_N2P2_BIN": str(n2p2_bin), "MLDS_MPIRUN": "",
           "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
    env.update(extra)
    return env


def _si_lines() -> list[str]:
    return inputnn.symmetry_function_lines(S.resolve(["Si"], {"preset": "quick"})) + [CONSTANT_SF]


def test_prune_sigterm_and_resume(si_file, n2p2_bin, tmp_path, capsys):
    run = train.prepare(str(si_file), workdir=tmp_path / "run", epochs=60,
                        settings={"preset": "quick", "symmetry_functions": {"lines": _si_lines()}})
    env = _job_env(n2p2_bin, tmp_path)
    proc = subprocess.Popen(["sh", "job.sh"], cwd=run.path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    curve = run.path / "steps" / "train" / "seg000" / js.CURVE
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if curve.is_file() and len(js.read_curve(curve)) >= 3:
            break
        time.sleep(0.02)
    assert proc.poll() is None, proc.stdout.read()
    os.killpg(proc.pid, signal.SIGTERM)  # what Slurm does at the time limit
    out = proc.communicate(timeout=60)[0]
    assert proc.returncode != 0
    state = run.state
    assert state["state"] == "failed" and "MLDS_RESUME=1" in state["message"] and state["step"] == "train"
    stopped_at = js.completed_epoch(curve.parent, [14])
    assert 2 <= stopped_at < 60
    prune = json.loads((run.path / "steps" / "prune" / "prune.json").read_text())
    assert prune["pruned"] == {"Si": [CONSTANT_SF]} and "1 constant symmetry function(s) removed" in out
    with pytest.raises(train.TrainError, match="nothing registered"):
        train.finish(run.path)
    assert not (run.path / "potential").exists()
    from mlds.cli import run as cli

    assert cli(["train", "status", str(run.path)]) == 0
    status = " ".join(capsys.readouterr().out.split())
    assert "failed (step train)" in status and f"epoch {stopped_at}/60" in status

    again = subprocess.run(["sh", "job.sh"], cwd=run.path, env=env, capture_output=True, text=True)
    assert again.returncode != 0 and "MLDS_RESUME=1" in again.stdout  # never silently restarts or overwrites

    resumed = subprocess.run(["sh", "job.sh"], cwd=run.path, env={**env, "MLDS_RESUME": "1"}, capture_output=True,
                             text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout
    assert f"resuming at epoch {stopped_at}" in resumed.stdout
    assert run.state["state"] == "done" and run.state["attempts"] == 2
    rows = js.stitched_curve(run.path / "steps" / "train")
    assert [int(r["epoch"]) for r in rows] == list(range(61))
    assert {int(r["_seg"]) for r in rows} == {0, 1}
    pot = train.finish(run.path, register=False, verify_files=False)
    nn = (pot.path / "input.nn").read_text()
    assert f"# pruned, constant 0 over the data: {CONSTANT_SF}" in nn
    assert pot.metadata["symmetry_functions"]["pruned"] == 1


def test_nan_errors_fail_the_job_and_nothing_is_registered(si_file, n2p2_bin, tmp_path, monkeypatch, capsys):
    from mlds.cli import run as cli

    monkeypatch.setenv("MLDS_N2P2_BIN", str(n2p2_bin))
    settings = tmp_path / "nan.toml"
    import tomli_w

    # no pruning and no normalisation: the constant function makes n2p2's errors NaN while it exits 0
    settings.write_text(tomli_w.dumps({"preset": "quick", "epochs": 2, "n2p2": {"normalize_data_set": False},
                                       "symmetry_functions": {"lines": _si_lines(), "prune_threshold": -1.0}}))
    rc = cli(["train", "n2p2", str(si_file), "-s", str(settings), "-w", str(tmp_path / "run"), "-q"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert "NaN/inf" in err and "epoch 0" in err
    assert json.loads((tmp_path / "run" / "mlds-job.json").read_text())["state"] == "failed"
    assert not (tmp_path / "run" / "potential").exists()
    with pytest.raises(train.TrainError, match="nothing registered"):
        train.finish(tmp_path / "run")


def test_prune_maps_n2p2_order_back_to_lines_and_memory_is_checked(cu2s_file, n2p2_bin, tmp_path):
    # n2p2 sorts each element's functions internally; the constant one must be found by its line
    constant = "symfunction_short Cu 2 S 10000 0 6"
    lines = inputnn.symmetry_function_lines(S.resolve(["Cu", "S"], {"preset": "quick"}))
    lines.insert(len(lines) // 2, constant)
    run = train.prepare(str(cu2s_file), workdir=tmp_path / "run", epochs=1,
                        settings={"preset": "quick", "symmetry_functions": {"lines": lines}})
    r = subprocess.run(["sh", "job.sh"], cwd=run.path, env=_job_env(n2p2_bin, tmp_path, MLDS_MEMORY_LIMIT="1000"),
                       capture_output=True, text=True)
    assert r.returncode != 0
    prune = json.loads((run.path / "steps" / "prune" / "prune.json").read_text())
    assert prune["pruned"] == {"Cu": [constant]} and prune["kept"] == {"S": 40, "Cu": 40}
    kept = (run.path / "steps" / "prune" / "input.nn").read_text().splitlines()
    assert sum(ln.startswith("symfunction_short") for ln in kept) == 80
    state = run.state
    assert state["state"] == "failed" and state["step"] == "scaling"
    assert "n2p2's estimate" in state["message"] and "0.00 GiB are available" in state["message"]
    assert not (run.path / "steps" / "train").exists()


def test_two_mpi_ranks(si_file, n2p2, tmp_path):
    import shutil

    if not shutil.which("mpirun"):
        pytest.skip("mpirun not on PATH (Debian: openmpi-bin)")
    run = train.prepare(str(si_file), workdir=tmp_path / "run", epochs=2, settings={"preset": "quick"})
    state = train.run_local(run, ranks=2)
    assert state["state"] == "done"
    seg = run.path / "steps" / "train" / "seg000"
    assert (seg / "nnp-train.log.0001").is_file()  # a second rank really ran
    assert train.finish(run.path, register=False).metadata["metrics"]["verified"] is True
