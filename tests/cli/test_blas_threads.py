"""`mlds convert|export|import` start OpenBLAS with one thread (issue 12: its thread pool's start-up
is a visible share of a short conversion); other commands and library users keep the default."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

_CODE = "import sys; sys.argv = {argv!r}; import os, mlds; print(os.environ.get('OPENBLAS_NUM_THREADS'))"


def _threads(argv: list[str], **env: str) -> str:
    e = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"} | env
    out = subprocess.run([sys.executable, "-c", _CODE.format(argv=argv)], env=e, capture_output=True, text=True,
                         check=True)
    return out.stdout.strip()


@pytest.mark.parametrize("argv", [["mlds", "convert", "x"], ["-m", "export", "x"], ["/usr/bin/mlds", "import", "x"]])
def test_conversions_use_one_blas_thread(argv):
    assert _threads(argv) == "1"


@pytest.mark.parametrize("argv", [["mlds", "info", "x"], ["script.py", "convert"], ["-c"]])
def test_others_keep_the_default(argv):
    assert _threads(argv) == "None"


def test_an_explicit_setting_is_kept():
    assert _threads(["mlds", "convert", "x"], OPENBLAS_NUM_THREADS="2") == "2"
