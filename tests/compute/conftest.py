"""Fixtures for the execution layer: a real Slurm cluster, a real OpenSSH
login node in front of it, machines configured against them, and run folders
holding a real (small) program.

The cluster and the login node start once per session, on first use, and are
stopped by PID at the end.  Tests that need them skip, saying exactly why,
when this machine cannot run them (not root, packages missing).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.servers import openssh, slurm

FAKE_JOB = Path(__file__).parent / "fake_job"


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    reason = slurm.unavailable_reason()
    if reason:
        pytest.skip(reason)
    cluster = slurm.start_slurm(tmp_path_factory.mktemp("slurm"))
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def login_node(request, tmp_path_factory):
    """OpenSSH on 127.0.0.1 whose sessions see the test cluster (SLURM_CONF)
    when this machine can run one."""
    reason = openssh.unavailable_reason()
    if reason:
        pytest.skip(reason)
    env = request.getfixturevalue("slurm_cluster").env if slurm.unavailable_reason() is None else {}
    server = openssh.start_sshd(tmp_path_factory.mktemp("sshd"), env=env)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def remote_root(tmp_path_factory) -> Path:
    """The 'machine side' of the login node: work directories live here."""
    return tmp_path_factory.mktemp("remote")


def add_cluster_machine(login_node, root: Path, name: str = "cluster", **settings):
    from mlds.compute import Machine, add_machine

    fields = dict(
        scheduler="slurm", host=login_node.login, port=login_node.port, workdir=str(root / name),
        queue="debug", poll_interval=0.2, walltime="00:10:00", ssh=dict(login_node.ssh_options),
    )
    fields.update(settings)
    machine = Machine(name=name, **fields)
    add_machine(machine, replace=True)
    return machine


@pytest.fixture
def cluster(login_node, remote_root):
    """Machine 'cluster': Slurm behind the OpenSSH login node."""
    return add_cluster_machine(login_node, remote_root)


def make_run(base: Path, name: str = "run", **settings) -> Path:
    """A run folder: job.sh + work.py + settings.json (+ a data file)."""
    run = base / name
    run.mkdir(parents=True)
    for f in ("job.sh", "work.py"):
        shutil.copy(FAKE_JOB / f, run / f)
    cfg = {"epochs": 3, "sleep": 0.1, **settings}
    (run / "settings.json").write_text(json.dumps(cfg))
    (run / "input.data").write_text("".join(f"frame {i}\n" for i in range(200)))
    return run


RUN_INPUTS = ["job.sh", "work.py", "settings.json", "input.data"]
RUN_OUTPUTS = ["weights.*.data", "learning-curve.out"]


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """cwd outside any mlds project (the user config is isolated by tests/conftest.py)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path
