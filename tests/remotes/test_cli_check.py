"""``mlds remote check`` against real servers, through the in-process CLI."""

from __future__ import annotations

from mlds.cli import run
from mlds.remotes import config as cfg


def test_check_local(mlds_home, capsys):
    store = mlds_home / "store"
    store.mkdir()
    (store / "mlds-store.json").write_text("{}")
    assert run(["remote", "add", "here", str(store)]) == 0
    capsys.readouterr()
    assert run(["remote", "check", "here"]) == 0
    out = capsys.readouterr().out
    assert "reachable: yes" in out and "mlds store: yes" in out and "writable: yes" in out
    assert sorted(p.name for p in store.iterdir()) == ["mlds-store.json"]  # probe cleaned up


def test_check_sftp(mlds_home, sftp_server, capsys):
    cfg.add_remote("login", sftp_server.url("/checked"), tier="group", options=sftp_server.remote_options)
    assert run(["remote", "check", "login"]) == 0
    out = capsys.readouterr().out
    assert "reachable: yes" in out and "does not exist yet" in out and "writable: yes" in out


def test_check_s3(mlds_home, s3_bucket, capsys):
    cfg.add_remote("lab", f"s3://{s3_bucket}/store", tier="group")
    assert run(["remote", "check", "lab"]) == 0
    out = capsys.readouterr().out
    assert "reachable: yes" in out and "mlds store: no" in out and "writable: yes" in out


def test_check_s3_wrong_secret(mlds_home, s3_bucket, capsys, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret-77")
    cfg.add_remote("lab", f"s3://{s3_bucket}/store")
    assert run(["remote", "check", "lab"]) == 2
    err = capsys.readouterr().err
    assert "remote 'lab'" in err and "not-the-secret-77" not in err and "Traceback" not in err


def test_check_http_mirror(mlds_home, http_mirror_factory, capsys):
    store = mlds_home / "public"
    store.mkdir()
    (store / "mlds-store.json").write_text("{}")
    mirror = http_mirror_factory(store)
    cfg.add_remote("pub", mirror.url, tier="public")
    assert run(["remote", "check", "pub"]) == 0
    out = capsys.readouterr().out
    assert "reachable: yes" in out and "mlds store: yes" in out and "read-only mirror" in out


def test_check_unknown_remote(mlds_home, capsys):
    assert run(["remote", "check", "nope"]) == 2
    assert "no remote named 'nope'" in capsys.readouterr().err


def test_check_rdm(mlds_home, capsys, monkeypatch):
    try:
        from tests.servers.rdm_server import TOKEN_ADMIN, RDMServer
    except ImportError:  # the rdm helper is developed in parallel
        import pytest

        pytest.skip("tests.servers.rdm_server not available")
    with RDMServer.default() as srv:
        monkeypatch.setenv("MLDS_RDM_TOKEN", TOKEN_ADMIN)
        cfg.add_remote("rdm", "rdm://abcde/osfstorage/mlds", tier="group", options={"api_url": srv.api_url})
        code = run(["remote", "check", "rdm"])
        out, err = capsys.readouterr()
        assert code == 0, err
        assert "reachable: yes" in out and "writable: yes" in out
        assert "Ada Admin" in out and "DFT training data" in out and "permission: admin" in out
        assert TOKEN_ADMIN not in out + err
