"""Jobs through a real Slurm 22.05 behind a real OpenSSH login node.

Submit, queue, run, fail, crash, cancel, kill from outside, walltime kill and
``--resume``, a dropped SSH connection in the middle of a job, and a client
killed while waiting.  The walltime job is submitted when this module starts
(Slurm's time limits have a one-minute resolution and are enforced every 30
seconds) and checked by the last test, so its minute overlaps the others.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlds import compute
from mlds.cli import run as cli
from mlds.compute import JobError, MachineError, Resources
from mlds.errors import MldsError
from tests.compute.conftest import RUN_INPUTS, RUN_OUTPUTS, add_cluster_machine, make_run
from tests.train.conftest import cu2s_file, n2p2_bin  # noqa: F401 - fixtures: n2p2 built from ../shared/vendor, Cu2S data


def _submit(run: Path, machine: str = "cluster", **kw):
    kw.setdefault("inputs", RUN_INPUTS)
    kw.setdefault("outputs", RUN_OUTPUTS)
    kw.setdefault("poll", 0.2)
    return compute.submit(run, machine, **kw)


def _wait_until(job_id: str, states: tuple, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = compute.status(job_id)
        if record.state in states:
            return record
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not reach {states}: {compute.load(job_id).summary()}")


def _one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture(scope="module", autouse=True)
def walltime_job(login_node, remote_root, tmp_path_factory):
    """A job that outlives its 1-minute walltime, submitted first (detached)."""
    home = tmp_path_factory.mktemp("walltime-home")
    env = {"MLDS_CONFIG_HOME": str(home / "config"), "XDG_DATA_HOME": str(home / "data")}
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        add_cluster_machine(login_node, remote_root, name="walltime")
        run = make_run(home, epochs=1000, sleep=0.25)
        record = _submit(run, "walltime", resources=Resources(walltime="00:01:00"), detach=True)
    assert record.state == "queued"
    return env, record.id, run


def test_submit_wait_fetch(cluster, tmp_path, slurm_cluster):
    run = make_run(tmp_path, epochs=3)
    states, lines = [], []
    record = _submit(run, on_state=lambda r: states.append(r.state), on_line=lines.append)
    assert record.state == "done", record.summary()
    assert record.message == "train: 3 epochs"          # from the job's mlds-job.json
    assert states[:3] == ["preparing", "uploading", "queued"] and states[-1] == "done"
    assert any("epoch 2 done" in ln for ln in lines)     # the log streamed while waiting
    assert slurm_cluster.job_state(record.scheduler_id) == "COMPLETED"
    header = record.header_path.read_text()
    assert "#SBATCH --time=00:10:00" in header and "#SBATCH --partition=debug" in header

    files = compute.fetch(record)
    assert {p.name for p in files} >= {"weights.001.data", "learning-curve.out", "mlds-job.json", "mlds-job.log"}
    assert (run / "learning-curve.out").read_text().splitlines()[0].startswith("0 ")
    again = compute.load(record.id)
    assert again.fetched["files"]["weights.001.data"] == compute.jobs.sha256_file(run / "weights.001.data")
    # history persisted and visible
    assert cli(["jobs", "ls"]) == 0


def test_failed_job_reports_log_tail(cluster, tmp_path, capsys):
    run = make_run(tmp_path, epochs=5, fail_at=2)
    record = _submit(run)
    assert record.state == "failed" and record.stage == "run" and not record.resumable
    assert record.message == "train: NaN at epoch 2"
    assert any("loss is NaN" in ln for ln in record.log_tail)
    with pytest.raises(JobError, match="nothing to fetch"):
        compute.fetch(record)
    assert not (run / "weights.001.data").exists()
    capsys.readouterr()
    assert cli(["jobs", "status", record.id]) == 1
    out = capsys.readouterr().out
    assert "failed" in out and "loss is NaN" in out
    assert cli(["jobs", "log", record.id, "-n", "3"]) == 0
    assert "loss is NaN" in capsys.readouterr().out


def test_crash_without_state_file(cluster, tmp_path):
    run = make_run(tmp_path, epochs=5, crash=True)
    record = _submit(run)
    assert record.state == "failed" and record.message == "the job script exited with an error"
    assert any("segmentation fault" in ln for ln in record.log_tail)


def test_cli_submit_nonexistent_queue_one_line(cluster, tmp_path, capsys):
    run = make_run(tmp_path)
    assert cli(["jobs", "submit", str(run), "--on", "cluster", "--queue", "nosuch"]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "machine 'cluster'" in line and "sbatch refused the job" in line and "invalid partition" in line.lower()
    [record] = compute.list_jobs()
    assert record.state == "failed" and record.stage == "submit" and "invalid partition" in record.message.lower()


def test_scheduler_command_missing(login_node, remote_root, tmp_path, capsys):
    add_cluster_machine(login_node, remote_root, name="pbs-here", scheduler="pbs", queue=None)
    with pytest.raises(MachineError, match="scheduler command 'qsub' not found"):
        _submit(make_run(tmp_path), "pbs-here")
    [record] = compute.list_jobs()
    assert record.state == "failed" and record.stage == "submit"
    capsys.readouterr()
    assert cli(["machine", "check", "pbs-here"]) == 1
    out = capsys.readouterr().out
    assert "FAIL scheduler: qstat not found" in out and "ok   reachable" in out


def test_machine_check(cluster, capsys):
    assert cli(["machine", "check", "cluster"]) == 1  # n2p2 is not installed on the login node
    out = capsys.readouterr().out
    for line in ("ok   reachable", "ok   workdir", "ok   scheduler: slurm answers", "ok   queue: debug",
                 "ok   python3", "FAIL n2p2: nnp-train not found", "ok   free space"):
        assert line in out, out


def test_cancel_and_kill_from_outside(cluster, tmp_path, slurm_cluster):
    first = _submit(make_run(tmp_path, "a", epochs=400, sleep=0.25), detach=True)
    second = _submit(make_run(tmp_path, "b", epochs=400, sleep=0.25), detach=True)
    _wait_until(first.id, ("running",))

    cancelled = compute.cancel(first.id)
    assert cancelled.state == "cancelled" and cancelled.resumable
    with pytest.raises(JobError, match="already ended"):
        compute.cancel(first.id)

    slurm_cluster.run("scancel", second.scheduler_id)
    killed = compute.wait(second.id, poll=0.2, timeout=30)
    assert killed.state == "killed" and "(CANCELLED)" in killed.message and killed.resumable
    with pytest.raises(JobError, match="resubmit"):
        killed.raise_for_state()
    deadline = time.monotonic() + 20
    while slurm_cluster.job_state(first.scheduler_id) not in ("CANCELLED",) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert slurm_cluster.job_state(first.scheduler_id) == "CANCELLED"


def test_dropped_connection_mid_job(cluster, tmp_path, login_node):
    run = make_run(tmp_path, epochs=8, sleep=0.3)
    dropped: list[int] = []

    def on_state(record):
        if record.state == "running" and not dropped:
            dropped.append(login_node.drop_connections())

    before = login_node.accepted_logins()
    record = _submit(run, on_state=on_state)
    assert dropped and dropped[0] >= 1           # a live session was cut while the job ran
    assert record.state == "done", record.summary()
    assert login_node.accepted_logins() - before >= 2  # and the client logged in again
    compute.fetch(record)
    assert len((run / "learning-curve.out").read_text().splitlines()) == 8


def test_client_killed_while_waiting(cluster, tmp_path, capsys):
    run = make_run(tmp_path, epochs=12, sleep=0.25)
    args = ["jobs", "submit", str(run), "--on", "cluster"]
    for f in RUN_INPUTS:
        args += ["--input", f]
    for g in RUN_OUTPUTS:
        args += ["--output", g]
    proc = subprocess.Popen([sys.executable, "-m", "mlds", *args], env=dict(os.environ),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        record = None
        while time.monotonic() < deadline:
            records = compute.list_jobs()
            if records and records[0].state in ("queued", "running"):
                record = records[0]
                break
            time.sleep(0.1)
        assert record is not None, "the client never submitted"
    finally:
        proc.kill()
        proc.wait()
    assert compute.load(record.id).state in ("queued", "running")
    assert cli(["jobs", "status", record.id, "--wait"]) == 0
    assert compute.load(record.id).state == "done"
    assert cli(["jobs", "fetch", record.id]) == 0
    assert len((run / "learning-curve.out").read_text().splitlines()) == 12


def test_requeued_after_node_failure_resumes(cluster, tmp_path, slurm_cluster):
    """Slurm requeues a batch job whose node failed and runs the script again;
    the script then continues from its checkpoint (SLURM_RESTART_COUNT > 0)."""
    run = make_run(tmp_path, epochs=14, sleep=0.25)
    record = _submit(run, detach=True)
    checkpoint = Path(record.remote_dir, "checkpoint.json")
    deadline = time.monotonic() + 60
    while not checkpoint.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    slurm_cluster.run("scontrol", "requeue", record.scheduler_id)
    # a requeued job waits ~2 minutes before it is eligible again; shorten that to 3 s (not 0:
    # a restart in the second of the requeue meets slurmd's revoked credential and is killed)
    deadline = time.monotonic() + 30
    while slurm_cluster.job_state(record.scheduler_id) != "PENDING" and time.monotonic() < deadline:
        time.sleep(0.1)
    slurm_cluster.run("scontrol", "update", f"JobId={record.scheduler_id}", "StartTime=now+3")
    done = compute.wait(record.id, poll=0.2, timeout=90)
    assert done.state == "done", done.summary()
    assert "Restarts=1" in slurm_cluster.run("scontrol", "show", "job", record.scheduler_id).stdout
    compute.fetch(done)
    epochs = [int(line.split()[0]) for line in (run / "learning-curve.out").read_text().splitlines()]
    assert epochs == list(range(14))
    assert "resuming after epoch" in (run / "mlds-job.log").read_text()


def test_interrupted_submission_recovers_job_id(cluster, tmp_path):
    record = _submit(make_run(tmp_path, epochs=2), detach=True)
    # as if the client died between sbatch and writing the scheduler's answer
    data = json.loads(record.path.read_text())
    data["scheduler_id"], data["state"], data["attempts"] = "", "submitting", []
    record.path.write_text(json.dumps(data))
    recovered = compute.wait(record.id, poll=0.2, timeout=60)
    assert recovered.scheduler_id == record.scheduler_id and recovered.state == "done"
    assert recovered.attempts[0].get("recovered") is True


def test_missing_results(cluster, tmp_path, capsys):
    run = make_run(tmp_path, epochs=1)
    record = _submit(run, outputs=["weights.*.data", "scaling.data"])
    assert record.state == "done"
    capsys.readouterr()
    assert cli(["jobs", "fetch", record.id]) == 1
    line = _one_error_line(capsys.readouterr().err)
    assert "lack scaling.data" in line
    assert not (run / "weights.001.data").exists()   # nothing half-fetched
    assert "lack scaling.data" in compute.load(record.id).fetched["error"]


def test_train_potential_on_slurm_over_ssh(login_node, remote_root, n2p2_bin, cu2s_file, slurm_cluster, tmp_path,
                                           monkeypatch, capsys):
    """The whole loop: dataset in the store -> run folder -> Slurm job over SSH -> fetch ->
    potential registered exactly as a local run registers it; --detach, --resume, a failure."""
    from mlds.store import api as store
    from mlds.train import potential

    store.add(cu2s_file, "cu2s", "Cu2S example data")
    add_cluster_machine(login_node, remote_root, name="hpc", n2p2_bin=str(n2p2_bin), walltime="00:20:00")
    monkeypatch.chdir(tmp_path)
    args = ["train", "n2p2", "cu2s@v1", "--preset", "quick", "--epochs", "3", "--seed", "7"]
    capsys.readouterr()
    assert cli([*args, "--on", "hpc", "--dry-run", "--walltime", "0:30:00", "-w", str(tmp_path / "dry")]) == 0
    out = capsys.readouterr().out
    assert "#SBATCH --time=00:30:00" in out and "( bash job.sh )" in out and compute.list_jobs() == []
    assert cli([*args, "--on", "hpc", "--name", "cu2s-hpc", "-w", str(tmp_path / "run"), "--license", "CC0-1.0"]) == 0
    out = capsys.readouterr().out
    assert "potential cu2s-hpc@v1" in out and "pair_style hdnnp" in out
    [record] = compute.list_jobs()
    assert record.state == "done" and record.result["potential"] == "cu2s-hpc@v1" and record.result["kind"] == "train"
    assert slurm_cluster.job_state(record.scheduler_id) == "COMPLETED"
    pot = potential.show("cu2s-hpc@v1")
    assert pot.metadata["epochs"] == 3 and pot.metadata["license"] == "CC0-1.0"
    assert (tmp_path / "run" / "potential").is_dir()

    # the same data again: the exported input.data is already on the machine
    assert cli([*args, "--on", "hpc", "--detach", "-w", str(tmp_path / "again")]) == 0
    again = compute.list_jobs()[0]
    assert "input.data" in again.upload["reused"] and "input.data" not in again.upload["uploaded"]
    assert compute.cancel(again.id).resumable
    # ... and --resume picks that interrupted training up and finishes it
    assert cli([*args, "--on", "hpc", "--resume", "--name", "cu2s-resumed"]) == 0
    resumed = compute.load(again.id)
    assert resumed.state == "done" and len(resumed.attempts) == 2 and resumed.attempts[1]["resume"]
    assert resumed.result["potential"] == "cu2s-resumed@v1"
    capsys.readouterr()
    assert cli([*args, "--on", "hpc", "--resume"]) == 1
    assert "no interrupted training of cu2s@v1 on hpc" in capsys.readouterr().err

    # a training that fails there registers nothing and says why, with its log
    add_cluster_machine(login_node, remote_root, name="broken", n2p2_bin=str(tmp_path / "no-n2p2"))
    capsys.readouterr()
    assert cli([*args, "--on", "broken", "--name", "cu2s-broken", "-w", str(tmp_path / "broken")]) == 1
    err = capsys.readouterr().err
    assert "nnp-scaling not found in MLDS_N2P2_BIN" in err and "last lines of the job's log" in err
    assert "Traceback" not in err
    failed = compute.list_jobs()[0]
    assert failed.state == "failed" and failed.stage == "run" and "potential" not in failed.result
    with pytest.raises(MldsError):
        potential.show("cu2s-broken@v1")


def test_walltime_kill_then_resume(walltime_job, monkeypatch, slurm_cluster):
    env, job_id, run = walltime_job
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    record = compute.wait(job_id, poll=1, timeout=150)
    assert record.state == "killed", record.summary()
    assert "walltime" in record.message and "(TIMEOUT)" in record.message and record.resumable
    assert slurm_cluster.job_state(record.scheduler_id) == "TIMEOUT"
    checkpoint = json.loads(Path(record.remote_dir, "checkpoint.json").read_text())["epoch"]
    assert checkpoint > 10

    # continue from the checkpoint; two more epochs this time
    resumed = compute.resubmit(job_id, resume=True, resources={"env": {"FAKE_EPOCHS": str(checkpoint + 3)}, "walltime": "00:05:00"},
                               poll=0.2)
    assert resumed.state == "done", resumed.summary()
    assert len(resumed.attempts) == 2 and resumed.attempts[1]["resume"] is True
    compute.fetch(resumed)
    epochs = [int(line.split()[0]) for line in (run / "learning-curve.out").read_text().splitlines()]
    assert epochs == list(range(checkpoint + 3))   # continued, not restarted
    log = (run / "mlds-job.log").read_text()
    assert f"resuming after epoch {checkpoint}" in log and "SIGTERM" in log
