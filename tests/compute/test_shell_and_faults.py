"""Jobs without a batch system (on this computer, or on the login host over SSH),
content-addressed uploads, result fetching rules, and SSH faults - all against
the real OpenSSH login node."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlds import compute
from mlds.cli import run as cli
from mlds.compute import JobError, Machine, MachineError, add_machine
from tests.compute.conftest import RUN_INPUTS, RUN_OUTPUTS, add_cluster_machine, make_run
from tests.servers.slurm import free_port


def _one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture
def login_shell(login_node, remote_root):
    """Machine 'login': no scheduler, jobs run in the background on the login host."""
    return add_cluster_machine(login_node, remote_root, name="login", scheduler="shell", queue=None)


def test_shell_on_login_host_uploads_each_content_once(login_shell, tmp_path, remote_root):
    run = make_run(tmp_path, epochs=2)
    first = compute.submit(run, "login", inputs=RUN_INPUTS, outputs=RUN_OUTPUTS, poll=0.2)
    assert first.state == "done", first.summary()
    assert sorted(first.upload["uploaded"]) == sorted(RUN_INPUTS) and first.upload["reused"] == []
    compute.fetch(first)
    assert (run / "weights.001.data").is_file()

    second = compute.submit(run, "login", inputs=RUN_INPUTS, outputs=RUN_OUTPUTS, detach=True)
    assert second.upload == {"uploaded": [], "reused": RUN_INPUTS, "bytes_uploaded": 0}  # nothing new

    (run / "settings.json").write_text(json.dumps({"epochs": 1, "sleep": 0.05}))
    third = compute.submit(run, "login", inputs=RUN_INPUTS, outputs=RUN_OUTPUTS, poll=0.2)
    assert third.upload["uploaded"] == ["settings.json"] and third.state == "done"
    objects = [p for p in (remote_root / "login" / "objects" / "sha256").rglob("*") if p.is_file()]
    assert len(objects) == len(RUN_INPUTS) + 1
    # each job folder has its own copy (a job may rewrite an input; the object stays intact)
    job_input = Path(third.remote_dir, "input.data")
    assert job_input.read_text() == (run / "input.data").read_text() and job_input.stat().st_nlink == 1


def test_local_machine_cli_and_dry_run(home, tmp_path, capsys):
    add_machine(Machine(name="here", scheduler="shell", workdir=str(tmp_path / "work"), poll_interval=0.2))
    run = make_run(tmp_path, epochs=2)
    assert cli(["jobs", "submit", str(run), "--on", "here", "--dry-run", "--ranks", "4"]) == 0
    out = capsys.readouterr().out
    assert "#!/bin/bash" in out and "export MLDS_MPIRUN='mpirun -np 4'" in out and "bash job.sh" in out
    assert compute.list_jobs() == []                      # a dry run submits nothing
    assert cli(["jobs", "submit", str(run), "--on", "here"]) == 0
    out = capsys.readouterr().out
    assert "done" in out and "epoch 1 done" in out and "fetched" in out
    assert len((run / "learning-curve.out").read_text().splitlines()) == 2
    [record] = compute.list_jobs()
    assert cli(["jobs", "ls"]) == 0 and record.id in capsys.readouterr().out
    assert cli(["jobs", "status", record.id]) == 0 and "done" in capsys.readouterr().out


def test_ctrl_c_stops_following_not_the_job(home, tmp_path):
    add_machine(Machine(name="here", scheduler="shell", workdir=str(tmp_path / "work"), poll_interval=0.2))
    run = make_run(tmp_path, epochs=100, sleep=0.1)
    proc = subprocess.Popen([sys.executable, "-m", "mlds", "jobs", "submit", str(run), "--on", "here"],
                            env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (compute.list_jobs() and compute.list_jobs()[0].state == "running"):
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, f"exit {proc.returncode} after Ctrl-C; stderr: {err!r}"  # (seen once as 0 under load)
    [record] = compute.list_jobs()
    assert f"it keeps running: 'mlds jobs status {record.id} --wait'" in err and "Traceback" not in err
    assert compute.status(record.id).state == "running"
    assert compute.cancel(record.id).state == "cancelled"


def test_client_gone_before_submitting_is_lost(home, tmp_path):
    add_machine(Machine(name="here", scheduler="shell", workdir=str(tmp_path / "work"), poll_interval=0.2))
    record = compute.submit(make_run(tmp_path, epochs=1), "here", inputs=RUN_INPUTS, detach=True)
    helper = subprocess.Popen(["true"])
    helper.wait()
    data = json.loads(record.path.read_text())
    # as if a client on this host died while uploading
    data.update(state="uploading", scheduler_id="", client={**data["client"], "pid": helper.pid})
    record.path.write_text(json.dumps(data))
    lost = compute.status(record.id)
    assert lost.state == "lost" and "before the job was submitted" in lost.message
    # a live submitter is left alone
    data.update(client={**data["client"], "pid": os.getppid()})
    record.path.write_text(json.dumps(data))
    assert compute.status(record.id).state == "uploading"


def test_fetch_never_overwrites_a_file_it_did_not_write(home, tmp_path, capsys):
    add_machine(Machine(name="here", scheduler="shell", workdir=str(tmp_path / "work"), poll_interval=0.2))
    run = make_run(tmp_path, epochs=1)
    record = compute.submit(run, "here", inputs=RUN_INPUTS, outputs=RUN_OUTPUTS)
    (run / "weights.001.data").write_text("my own weights\n")
    assert cli(["jobs", "fetch", record.id]) == 1
    assert "was not written by this job" in _one_error_line(capsys.readouterr().err)
    assert (run / "weights.001.data").read_text() == "my own weights\n"
    assert cli(["jobs", "fetch", record.id, "--force"]) == 0
    assert (run / "weights.001.data").read_text() != "my own weights\n"
    assert cli(["jobs", "fetch", record.id]) == 0          # its own earlier fetch may be replaced


def test_cancel_then_resume_from_checkpoint(home, tmp_path):
    add_machine(Machine(name="here", scheduler="shell", workdir=str(tmp_path / "work"), poll_interval=0.2))
    run = make_run(tmp_path, epochs=40, sleep=0.1)
    record = compute.submit(run, "here", inputs=RUN_INPUTS, outputs=RUN_OUTPUTS, detach=True)
    checkpoint = Path(record.remote_dir, "checkpoint.json")
    deadline = time.monotonic() + 30
    while not checkpoint.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    cancelled = compute.cancel(record.id)
    assert cancelled.state == "cancelled" and cancelled.resumable
    time.sleep(0.3)
    stopped_at = json.loads(checkpoint.read_text())["epoch"]
    assert stopped_at < 39
    finished = compute.submit(make_run(tmp_path, "short", epochs=1), "here", inputs=RUN_INPUTS, outputs=RUN_OUTPUTS)
    with pytest.raises(JobError, match="only a job that ran"):
        compute.resubmit(finished.id)  # done: nothing to resume
    done = compute.resubmit(record.id, resume=True, poll=0.2)
    assert done.state == "done", done.summary()
    compute.fetch(done, force=True)
    epochs = [int(line.split()[0]) for line in (run / "learning-curve.out").read_text().splitlines()]
    assert epochs[-1] == 39 and epochs.count(0) == 1      # continued, never restarted
    assert "resuming after epoch" in (run / "mlds-job.log").read_text()


# -- SSH faults: one line each, non-zero exit, the record says what happened ----

def _fault(capsys, tmp_path, name: str) -> str:
    run = make_run(tmp_path)
    capsys.readouterr()
    assert cli(["jobs", "submit", str(run), "--on", name]) == 2
    line = _one_error_line(capsys.readouterr().err)
    [record] = compute.list_jobs()
    assert record.state == "failed" and record.stage == "connect" and record.message in line
    return line


def test_unreachable_host(login_node, remote_root, tmp_path, capsys):
    add_cluster_machine(login_node, remote_root, name="down", port=free_port())
    line = _fault(capsys, tmp_path, "down")
    assert "machine 'down'" in line and "cannot reach" in line and "connection refused" in line


def test_wrong_key(login_node, remote_root, tmp_path, capsys):
    key = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    ssh = {**login_node.ssh_options, "key_file": str(key)}
    add_cluster_machine(login_node, remote_root, name="wrongkey", ssh=ssh)
    line = _fault(capsys, tmp_path, "wrongkey")
    assert "SSH authentication failed" in line and str(key) not in line.split("failed", 1)[0]


def test_changed_host_key_refused(login_node, remote_root, tmp_path, capsys):
    other = tmp_path / "impostor"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    kind, key = other.with_suffix(".pub").read_text().split()[:2]
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{login_node.port} {kind} {key}\n")
    add_cluster_machine(login_node, remote_root, name="mitm", ssh={**login_node.ssh_options, "known_hosts_file": str(known)})
    line = _fault(capsys, tmp_path, "mitm")
    assert "does not match known_hosts" in line


def test_unknown_host_key_with_strict_policy(login_node, remote_root, tmp_path, capsys):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    add_cluster_machine(login_node, remote_root, name="strict", ssh={**login_node.ssh_options, "known_hosts_file": str(empty)})
    line = _fault(capsys, tmp_path, "strict")
    assert "not in known_hosts" in line and "ssh-keyscan" in line


def test_ssh_config_alias(login_node, remote_root, tmp_path, capsys):
    config = tmp_path / "ssh_config"
    config.write_text(
        f"Host mlds-login\n  HostName 127.0.0.1\n  Port {login_node.port}\n  User {login_node.user}\n"
        f"  IdentityFile {login_node.key_file}\n"
    )
    ssh = {k: v for k, v in login_node.ssh_options.items() if k != "key_file"}
    ssh["config_file"] = str(config)
    add_machine(Machine(name="alias", scheduler="shell", host="mlds-login", workdir=str(remote_root / "alias"), ssh=ssh))
    assert cli(["machine", "check", "alias"]) == 1   # only n2p2 is missing
    out = capsys.readouterr().out
    assert f"ok   reachable: mlds-login (ssh)" in out and "FAIL n2p2" in out
    url = compute.sftp_url("alias", "calc")
    assert url == f"sftp://mlds-login{remote_root}/alias/calc"
