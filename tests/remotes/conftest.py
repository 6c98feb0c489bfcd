"""Fixtures for the remote-layer tests.

The server fixtures live in ``tests/servers/fixtures.py``.  They are imported
here only while the top-level ``tests/conftest.py`` does not already load them
(``pytest_plugins = ["tests.servers.fixtures"]``), so one set of servers serves
the whole session.
"""

from __future__ import annotations

import pytest

import tests.conftest as _root

if "tests.servers.fixtures" not in getattr(_root, "pytest_plugins", ()):
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
