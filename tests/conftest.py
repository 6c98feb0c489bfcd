"""Shared fixtures.

Real DFT output files are read from ``../shared/testdata`` (or the folder named
by ``MLDS_TESTDATA``); tests that need them skip, saying why, when it is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = ["tests.servers.fixtures"]  # real S3 (moto), SFTP and HTTP servers on 127.0.0.1

REPO = Path(__file__).resolve().parent.parent
TESTDATA = Path(os.environ.get("MLDS_TESTDATA", REPO.parent / "shared" / "testdata"))


@pytest.fixture(scope="session")
def testdata() -> Path:
    if not TESTDATA.is_dir():
        pytest.skip(f"real DFT test files not found at {TESTDATA} (set MLDS_TESTDATA to the shared testdata folder)")
    return TESTDATA


def data_file(relpath: str) -> Path:
    """Path of one shared test file; skips the calling test if it is missing."""
    path = TESTDATA / relpath
    if not path.exists():
        pytest.skip(f"test file {path} not found (set MLDS_TESTDATA to the shared testdata folder)")
    return path


@pytest.fixture(autouse=True)
def _isolated_user_dirs(tmp_path_factory, monkeypatch):
    """No test reads or writes the real user config or personal store."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("MLDS_CONFIG_HOME", str(home / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "data"))  # the personal store lives under it
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "xdg-config"))
