"""Token lookup, token-file permissions and ``check``."""

from __future__ import annotations

import os

import fsspec
import pytest

from mlds.errors import AuthError
from mlds.remotes.rdm import auth
from tests.servers.rdm_server import TOKEN_ADMIN, TOKEN_READER


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for var in (*auth.TOKEN_ENV_VARS, auth.TOKEN_FILE_ENV, auth.API_URL_ENV):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return monkeypatch


def test_env_precedence(clean_env):
    assert auth.resolve_token() is None
    clean_env.setenv("OSF_TOKEN", "c")
    assert auth.resolve_token() == "c"
    clean_env.setenv("RDM_TOKEN", "b")
    assert auth.resolve_token() == "b"
    clean_env.setenv("MLDS_RDM_TOKEN", "a")
    assert auth.resolve_token() == "a"
    assert auth.resolve_token("explicit") == "explicit"


def test_token_file_must_be_private(clean_env, tmp_path):
    p = tmp_path / "tok"
    p.write_text("file-token-abcdef\n")
    clean_env.setenv(auth.TOKEN_FILE_ENV, str(p))
    os.chmod(p, 0o644)
    with pytest.raises(AuthError) as ei:
        auth.resolve_token()
    msg = str(ei.value)
    assert f"chmod 600 {p}" in msg and "file-token-abcdef" not in msg and "\n" not in msg
    os.chmod(p, 0o640)
    with pytest.raises(AuthError):
        auth.resolve_token()
    os.chmod(p, 0o600)
    assert auth.resolve_token() == "file-token-abcdef"


def test_default_token_file_location(clean_env, tmp_path):
    p = tmp_path / "home" / ".config" / "mlds" / "rdm-token"
    p.parent.mkdir(parents=True)
    p.write_text("home-token")
    p.chmod(0o600)
    assert auth.token_file_path() == p
    assert auth.resolve_token() == "home-token"


def test_check(srv):
    res = auth.check("rdm://abcde/osfstorage/x", token=TOKEN_ADMIN, api_url=srv.api_url)
    assert (res.user_id, res.user_name) == ("uadmn", "Ada Admin")
    assert (res.project_id, res.project_title, res.permission) == ("abcde", "DFT training data", "admin")
    assert res.providers == ["osfstorage", "s3compatinstitutions"] and res.default_provider == "osfstorage"
    assert any(line.startswith("quota:") for line in res.lines())
    assert auth.check("abcde", token=TOKEN_READER, api_url=srv.api_url).permission == "read"
    with pytest.raises(AuthError) as ei:
        auth.check("abcde", token="not-a-token-xyz", api_url=srv.api_url, backoff=0.001)
    assert "not-a-token-xyz" not in str(ei.value)


def test_check_without_token(clean_env, srv):
    with pytest.raises(AuthError) as ei:
        auth.check("abcde", api_url=srv.api_url)
    assert "MLDS_RDM_TOKEN" in str(ei.value)


def test_fs_takes_token_and_url_from_env(clean_env, srv):
    clean_env.setenv("MLDS_RDM_TOKEN", TOKEN_ADMIN)
    clean_env.setenv(auth.API_URL_ENV, srv.api_url)
    fs = fsspec.filesystem("rdm", skip_instance_cache=True)
    fs.pipe("rdm://abcde/env.txt", b"env")
    assert fs.cat("rdm://abcde/osfstorage/env.txt") == b"env"
    assert TOKEN_ADMIN not in repr(fs) and TOKEN_ADMIN not in repr(fs.client)


def test_server_runs_as_subprocess():
    import json
    import subprocess
    import sys

    import httpx
    proc = subprocess.Popen([sys.executable, "-m", "tests.servers.rdm_server", "--port", "0"],
                            stdout=subprocess.PIPE, text=True)
    try:
        info = json.loads(proc.stdout.readline())
        assert info["api_url"].startswith("http://127.0.0.1:")
        r = httpx.get(info["api_url"] + "users/me/",
                      headers={"Authorization": f"Bearer {info['tokens']['admin']}"}, timeout=10)
        assert r.json()["data"]["id"] == "uadmn"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
