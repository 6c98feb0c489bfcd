"""examples/training_loop.py runs: minibatches from ds.batch, spawned workers fed a pickled dataset view."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "training_loop.py"


def test_training_loop_example_learns(tmp_path):
    out = subprocess.run([sys.executable, str(EXAMPLE), "--epochs", "8", "--workers", "1"],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr  # the script exits 1 unless the loss went down
    assert "training on 40 frames" in out.stdout
    assert out.stdout.count("epoch") == 8
