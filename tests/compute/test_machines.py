"""Machines as ``[machines.NAME]`` in the same TOML config as remotes."""

from __future__ import annotations

import tomllib

import pytest

from mlds.cli import run as cli
from mlds.compute import Machine, MachineError, add_machine, get_machine, list_machines, remove_machine
from mlds.compute.machines import format_walltime, parse_walltime, sftp_url
from mlds.remotes import config as cfg


def _user_config() -> dict:
    return tomllib.loads(cfg.user_config_path().read_text())


def test_add_list_remove_keeps_remotes(home, capsys):
    cfg.add_remote("lab", str(home / "store"))
    assert cli(["machine", "add", "fugaku", "-s", "pjm", "--host", "u123@login.fugaku.example", "--workdir", "/vol0004/hp1/u123/mlds",
                "--queue", "small", "--account", "hp1", "--module", "lang/tcsds", "--n2p2-bin", "/home/u123/n2p2/bin",
                "--env", "OMP_STACKSIZE=512M", "--ssh-option", "key_file=~/.ssh/id_ed25519"]) == 0
    data = _user_config()
    assert data["remotes"]["lab"]["url"]  # the remotes' table survives
    assert data["machines"]["fugaku"] == {
        "scheduler": "pjm", "workdir": "/vol0004/hp1/u123/mlds", "host": "u123@login.fugaku.example",
        "queue": "small", "account": "hp1", "modules": ["lang/tcsds"], "env": {"OMP_STACKSIZE": "512M"},
        "n2p2_bin": "/home/u123/n2p2/bin", "ssh": {"key_file": "~/.ssh/id_ed25519"},
    }
    m = get_machine("fugaku")
    assert (m.user, m.hostname, m.scheduler, m.walltime) == ("u123", "login.fugaku.example", "pjm", "01:00:00")
    capsys.readouterr()
    assert cli(["machine", "list"]) == 0
    assert "fugaku" in capsys.readouterr().out
    # adding it twice needs --force
    assert cli(["machine", "add", "fugaku", "--workdir", "/x"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert cli(["machine", "remove", "fugaku"]) == 0
    assert "machines" not in _user_config() and "lab" in _user_config()["remotes"]
    assert cli(["machine", "remove", "fugaku"]) == 2


def test_project_machine_hides_user_machine(home, tmp_path, monkeypatch):
    add_machine(Machine(name="hpc", workdir="/user/side"))
    project = tmp_path / "proj"
    (project / ".mlds").mkdir(parents=True)
    monkeypatch.chdir(project)
    add_machine(Machine(name="hpc", workdir="/project/side"), scope="project")
    assert get_machine("hpc").workdir == "/project/side" and get_machine("hpc").scope == "project"
    assert [m.name for m in list_machines()] == ["hpc"]
    assert remove_machine("hpc", scope="project") == ["project"]
    assert get_machine("hpc").workdir == "/user/side"


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(scheduler="condor"), "unknown scheduler 'condor'"),
        (dict(workdir="relative/dir"), "must be an absolute path"),
        (dict(workdir=""), "no workdir set"),
        (dict(host="user@host:2222"), "give the port with --port"),
        (dict(port=70000), "invalid port"),
        (dict(walltime="soon"), "invalid walltime"),
        (dict(env={"AWS_SECRET_ACCESS_KEY": "x"}), "looks like a credential"),
        (dict(env={"MY_TOKEN": "x"}), "looks like a credential"),
        (dict(ssh={"password": "x"}), "never a password"),
        (dict(ssh={"passphrase": "x"}), "looks like a credential"),
        (dict(ssh={"keyfile": "x"}), "unknown ssh option 'keyfile'"),
        (dict(ssh={"host_key_policy": "yolo"}), "host_key_policy must be"),
        (dict(header="/no/such/template.sh"), "does not exist"),
    ],
)
def test_bad_settings_refused_and_nothing_written(home, settings, message):
    fields = {"workdir": "/scratch/mlds", **settings}
    with pytest.raises(MachineError, match=message):
        add_machine(Machine(name="bad", **fields))
    assert not cfg.user_config_path().exists()


def test_unknown_keys_in_the_file_are_reported(home):
    path = cfg.user_config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('[machines.x]\nscheduler = "slurm"\nworkdir = "/w"\nqueeu = "debug"\n')
    with pytest.raises(MachineError, match="unknown setting.*queeu"):
        get_machine("x")


def test_unknown_machine_one_line(home, capsys):
    add_machine(Machine(name="known", workdir="/w"))
    assert cli(["machine", "check", "nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no such machine" in err and "known machines: known" in err
    assert cli(["jobs", "submit", str(home), "--on", "nope"]) == 2
    assert "no such machine" in capsys.readouterr().err


@pytest.mark.parametrize(
    "text, seconds",
    [("30", 1800), ("1:30", 90), ("01:00:00", 3600), ("2-00", 172800), ("1-02:03:04", 93784), ("48:00:00", 172800)],
)
def test_walltime_forms(text, seconds):
    assert parse_walltime(text) == seconds
    assert parse_walltime(format_walltime(seconds)) == seconds


def test_sftp_url(home):
    m = Machine(name="hpc", host="alice@login.example.org", port=2222, workdir="/scratch/alice/mlds")
    assert sftp_url(m, "runs/Si") == "sftp://alice@login.example.org:2222/scratch/alice/mlds/runs/Si"
    assert sftp_url(m, "/data/vasp") == "sftp://alice@login.example.org:2222/data/vasp"
    home = Machine(name="h", host="login.example.org", workdir="~/mlds")
    assert sftp_url(home, "calc", home="/home/bob") == "sftp://login.example.org/home/bob/mlds/calc"
    with pytest.raises(MachineError, match="home directory"):
        sftp_url(home, "calc")


def test_cluster_options_of_train_need_a_machine(home, capsys):
    for extra in (["--walltime", "1:00:00"], ["--detach"], ["--resume"], ["--nodes", "2"]):
        assert cli(["train", "n2p2", "cu2s@v1", *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "need --on MACHINE" in err
