"""`mlds convert` ends its process without the interpreter's teardown (issue 12, start-up cost), but
only when nothing is lost: the output is complete, messages reach the terminal, exit codes hold, and
an open HDF5 file or a running thread makes it take the normal exit.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import h5py
import numpy as np

import mlds
from mlds.cli import _quick_exit
from mlds.io.registry import open_reader
from tests.conftest import data_file

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _mlds(*args, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "mlds", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_convert_process_output_messages_and_codes(tmp_path):
    src = data_file("dpdata/tests/poscars/vasprun.h2o.md.10.xml")
    ok = _mlds("convert", src, "-o", "out.h5", cwd=tmp_path)
    bad = _mlds("convert", tmp_path / "missing.xml", "-o", "bad.h5", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "wrote" in ok.stdout and "out.h5" in ok.stdout  # stdout flushed before the quick exit
    frames = list(open_reader(src))
    ds = mlds.open(tmp_path / "out.h5")
    assert len(ds) == len(frames)  # the file is complete and readable
    assert np.array_equal(ds[len(ds) - 1].forces, frames[-1].forces)
    assert bad.returncode == 2 and "missing.xml" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "bad.h5").exists()


def test_quick_exit_takes_the_normal_exit_while_hdf5_or_threads_are_busy(tmp_path):
    with h5py.File(tmp_path / "open.h5", "w") as f:
        f["x"] = [1]
        assert _quick_exit(0) is None  # returned: the process is still here
    stop = threading.Event()
    worker = threading.Thread(target=stop.wait)
    worker.start()
    try:
        assert _quick_exit(0) is None
    finally:
        stop.set()
        worker.join()
