"""Drive the real `mlds` command in a subprocess, as a user's shell does.

Each call costs ~0.5-1 s (interpreter start-up and imports), so tests group
their checks into few calls.  The user config, personal store and data
folders are isolated by ``tests/conftest.py`` (environment variables, which
the subprocess inherits).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


class Run:
    def __init__(self, proc: subprocess.CompletedProcess) -> None:
        self.code = proc.returncode
        self.out = proc.stdout
        self.err = proc.stderr
        self.args = proc.args

    @property
    def err_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]

    def __repr__(self) -> str:
        return f"<mlds {' '.join(map(str, self.args[3:]))}: exit {self.code}\nstdout:\n{self.out}\nstderr:\n{self.err}>"


@pytest.fixture
def mlds(tmp_path):
    """``mlds(*args, cwd=tmp_path, env=None) -> Run``: one subprocess call of the CLI."""

    def call(*args: object, cwd: Path | None = None, env: dict | None = None, timeout: float = 120) -> Run:
        full_env = dict(os.environ, COLUMNS="250", NO_COLOR="1", **(env or {}))
        proc = subprocess.run([sys.executable, "-m", "mlds", *map(str, args)], cwd=cwd or tmp_path,
                              capture_output=True, text=True, env=full_env, timeout=timeout)
        return Run(proc)

    return call


@pytest.fixture
def mlds_many(tmp_path):
    """``mlds_many([argv], [argv], ..., cwd=tmp_path) -> [Run]``: a scenario of commands in one subprocess."""
    import json

    driver = Path(__file__).with_name("_driver.py")

    def call(*commands: list, cwd: Path | None = None, env: dict | None = None, timeout: float = 300) -> list[Run]:
        full_env = dict(os.environ, COLUMNS="250", NO_COLOR="1", **(env or {}))
        payload = json.dumps([[str(a) for a in argv] for argv in commands])
        proc = subprocess.run([sys.executable, str(driver)], input=payload, cwd=cwd or tmp_path,
                              capture_output=True, text=True, env=full_env, timeout=timeout)
        assert proc.returncode == 0, proc.stderr
        runs = []
        for argv, r in zip(commands, json.loads(proc.stdout)):
            runs.append(Run(subprocess.CompletedProcess(["mlds", "-", "-", *map(str, argv)], r["code"], r["out"], r["err"])))
        return runs

    return call


def no_traceback(run: Run) -> bool:
    return "Traceback" not in run.err and "Traceback" not in run.out
