"""Shared fixtures.

Real DFT output files are read from ``../shared/testdata`` (or the folder named
by ``MLDS_TESTDATA``); tests that need them skip, saying why, when it is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
