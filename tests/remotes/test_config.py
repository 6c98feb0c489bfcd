from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from mlds.cli import run
from mlds.errors import MldsError
from mlds.remotes import config as cfg


def test_user_and_project_remotes_override_and_remove(mlds_home: Path):
    cfg.add_remote("lab", "s3://bucket/user", tier="group", options={"endpoint_url": "https://s3.example.org", "anon": False})
    cfg.add_remote("mine", str(mlds_home / "store"))
    [lab, mine] = cfg.list_remotes()
    assert (lab.name, lab.url, lab.tier, lab.scope) == ("lab", "s3://bucket/user", "group", "user")
    assert lab.options == {"endpoint_url": "https://s3.example.org", "anon": False}
    assert mine.url == str((mlds_home / "store").resolve()) and mine.tier == "personal"

    cfg.add_remote("lab", "sftp://me@login.example.org:2222/data/mlds", tier="group", scope="project", options={"key_file": "~/.ssh/id_ed25519"})
    assert (mlds_home / "project" / ".mlds" / "config.toml").is_file()
    lab = cfg.get_remote("lab")
    assert lab.scope == "project" and lab.url.startswith("sftp://")
    # the project config is found from a subdirectory too, like git
    assert cfg.get_remote("lab", cwd=mlds_home / "project" / "sub" / "dir").scope == "project"
    # outside the project only the user remote is visible
    assert cfg.get_remote("lab", cwd=mlds_home).scope == "user"

    assert cfg.remove_remote("lab", scope="project") == ["project"]
    assert cfg.get_remote("lab").scope == "user"
    assert cfg.remove_remote("lab") == ["user"]
    assert [r.name for r in cfg.list_remotes()] == ["mine"]
    with pytest.raises(MldsError, match=r"no remote named 'lab'.*known remotes: mine"):
        cfg.get_remote("lab")
    with pytest.raises(MldsError, match="no remote named 'nope'"):
        cfg.remove_remote("nope")


def test_duplicate_and_invalid_definitions(mlds_home: Path):
    cfg.add_remote("a", "s3://b/p")
    with pytest.raises(MldsError, match="already exists"):
        cfg.add_remote("a", "s3://b/q")
    cfg.add_remote("a", "s3://b/q", replace=True)
    assert cfg.get_remote("a").url == "s3://b/q"
    with pytest.raises(MldsError, match="invalid tier"):
        cfg.add_remote("b", "s3://b/p", tier="secret-club")
    with pytest.raises(MldsError, match="invalid remote name"):
        cfg.add_remote("../x", "s3://b/p")
    with pytest.raises(MldsError, match="unsupported URL scheme 'ftp'"):
        cfg.add_remote("b", "ftp://host/x")
    with pytest.raises(MldsError, match="not inside an mlds project"):
        cfg.add_remote("b", "s3://b/p", scope="project", cwd=mlds_home)


@pytest.mark.parametrize(
    "options",
    [
        {"key": "AKIAEXAMPLE"},
        {"secret": "hunter2-secret"},
        {"token": "tok-123456"},
        {"password": "hunter2-pass"},
        {"aws_secret_access_key": "hunter2-aws"},
        {"aws_access_key_id": "AKIAEXAMPLE"},
        {"client_kwargs": {"aws_secret_access_key": "hunter2-nested"}},
        {"api_key": "k-123456"},
    ],
)
def test_credentials_are_refused(mlds_home: Path, options):
    with pytest.raises(MldsError) as info:
        cfg.add_remote("lab", "s3://bucket/x", options=options)
    msg = str(info.value)
    assert "\n" not in msg
    assert "looks like a credential" in msg and "AWS_ACCESS_KEY_ID" in msg and "ssh agent" in msg
    for value in _leaves(options):
        assert value not in msg
    assert cfg.list_remotes() == []


def _leaves(d):
    for v in d.values():
        yield from _leaves(v) if isinstance(v, dict) else [v]


def test_password_in_url_refused(mlds_home: Path):
    with pytest.raises(MldsError) as info:
        cfg.add_remote("lab", "sftp://me:hunter2@host/data")
    assert "hunter2" not in str(info.value) and "password" in str(info.value)


def test_pointer_options_allowed(mlds_home: Path):
    opts = {"key_file": "~/.ssh/id", "profile": "lab", "token_file": "~/.rdm-token", "anon": True, "known_hosts_file": "/x"}
    cfg.add_remote("lab", "s3://bucket", options=opts)
    assert cfg.get_remote("lab").options == opts


def test_config_round_trip_preserves_other_tables(mlds_home: Path):
    path = cfg.user_config_path()
    path.parent.mkdir(parents=True)
    path.write_text('[user]\nname = "Ada"\n\n[store]\npath = "/x"\nlimits = {max = 3}\n')
    weird = 'a "quoted" \\ back\tslash é \x7f'
    cfg.add_remote("x.y-z_1", "s3://bucket/p", options={"endpoint_url": weird, "n": 3, "f": 1.5, "l": [1, "two"]})
    data = tomllib.loads(path.read_text())
    assert data["user"] == {"name": "Ada"} and data["store"] == {"path": "/x", "limits": {"max": 3}}
    assert data["remotes"]["x.y-z_1"]["options"] == {"endpoint_url": weird, "n": 3, "f": 1.5, "l": [1, "two"]}
    cfg.remove_remote("x.y-z_1")
    assert "remotes" not in tomllib.loads(path.read_text())


def test_find_project_root(tmp_path: Path):
    (tmp_path / "p" / ".mlds").mkdir(parents=True)
    (tmp_path / "p" / "a" / "b").mkdir(parents=True)
    assert cfg.find_project_root(tmp_path / "p" / "a" / "b") == tmp_path / "p"
    assert cfg.project_store_dir(tmp_path / "p") == tmp_path / "p" / ".mlds"
    assert cfg.find_project_root(tmp_path) in (None, *tmp_path.parents)  # nothing at tmp_path itself


def test_option_parsing():
    assert cfg.parse_option_values(["anon=true", "n=3", "x=a=b", "client_kwargs.region_name=eu"]) == {
        "anon": True, "n": 3, "x": "a=b", "client_kwargs": {"region_name": "eu"},
    }
    with pytest.raises(MldsError, match="key=value"):
        cfg.parse_option_values(["hunter2"])


def test_cli_add_list_remove(mlds_home: Path, capsys):
    assert run(["remote", "add", "lab", "s3://bucket/pre", "--tier", "group", "-o", "endpoint_url=https://s3.example.org", "-o", "anon=true"]) == 0
    assert run(["remote", "add", "proj", "sftp://me@host/data", "--project"]) == 0
    capsys.readouterr()
    assert run(["remote", "list"]) == 0
    out = capsys.readouterr().out
    assert "lab" in out and "s3://bucket/pre" in out and "group" in out and "proj" in out and "project" in out
    assert run(["remote", "add", "bad", "s3://b", "-o", "secret=hunter2"]) == 2
    err = capsys.readouterr().err
    assert "hunter2" not in err and "credential" in err
    assert run(["remote", "remove", "lab"]) == 0
    assert run(["remote", "remove", "lab"]) == 2
    assert [r.name for r in cfg.list_remotes()] == ["proj"]
