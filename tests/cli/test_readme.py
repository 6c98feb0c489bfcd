"""The README's commands run literally, in order, on a fresh copy of the repository."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

# every ```bash / ```python block of these sections runs, in order (other sections, e.g. training
# with n2p2, need programs this test does not build)
SECTIONS = ("## Using it", "## Sharing: stores, remotes, tiers")


def readme_blocks(text: str) -> list[tuple[str, str]]:
    blocks = []
    for part in re.split(r"^(?=## )", text, flags=re.M):
        if part.splitlines()[0].strip() in SECTIONS:
            blocks += re.findall(r"^```(bash|python)\n(.*?)^```", part, re.S | re.M)
    return blocks


def test_readme_sequence_runs_as_written(tmp_path, monkeypatch):
    clone = tmp_path / "mlds"
    shutil.copytree(REPO, clone, ignore=shutil.ignore_patterns(".git", "__pycache__", "*.egg-info", ".pytest_cache",
                                                                ".hypothesis", "benchmarks"))
    monkeypatch.delenv("MLDS_STORE", raising=False)
    bindir = str(Path(sys.executable).parent)   # the `mlds` and `python3` of this environment
    env = dict(os.environ, PATH=bindir + os.pathsep + os.environ.get("PATH", ""))
    blocks = readme_blocks((clone / "README.md").read_text(encoding="utf-8"))
    assert len(blocks) == 3 and [lang for lang, _ in blocks] == ["bash", "python", "bash"]
    for lang, code in blocks:
        argv = ["bash", "-euo", "pipefail", "-c", code] if lang == "bash" else [sys.executable, "-c", code]
        proc = subprocess.run(argv, cwd=clone, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"README block failed:\n{code}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    assert (clone / "colleague-store").is_dir() and (clone / "input.data").read_text().startswith("begin")
