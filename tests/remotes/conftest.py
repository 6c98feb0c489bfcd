"""Fixtures for the remote-layer tests.

The server fixtures live in ``tests/servers/fixtures.py`` and are loaded for
the whole session by ``pytest_plugins`` in the top-level ``tests/conftest.py``.
"""

from __future__ import annotations

import pytest



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
