"""Fixtures for the remote-layer tests.

The server fixtures live in ``tests/servers/fixtures.py``; once the top-level
``tests/conftest.py`` declares ``pytest_plugins = ["tests.servers.fixtures"]``
this import can go (keeping it only starts a second set of servers here).
"""

from __future__ import annotations

import pytest

from tests.servers.fixtures import (  # noqa: F401  (pytest fixtures)
    http_mirror_factory,
    s3_bucket,
    s3_env,
    s3_server,
    sftp_server,
)


@pytest.fixture
def mlds_home(tmp_path, monkeypatch):
    """An isolated user config dir and a project dir (with .mlds/) as cwd."""
    user = tmp_path / "userconf"
    project = tmp_path / "project"
    (project / ".mlds").mkdir(parents=True)
    (project / "sub" / "dir").mkdir(parents=True)
    monkeypatch.setenv("MLDS_CONFIG_HOME", str(user))
    monkeypatch.delenv("MLDS_SFTP_PASSWORD", raising=False)
    monkeypatch.chdir(project)
    return tmp_path
