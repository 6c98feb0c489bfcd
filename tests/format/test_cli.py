"""`mlds info / validate / export / import / demo` through the real CLI entry point."""

from __future__ import annotations

import subprocess
import sys

import ase.io
import numpy as np

import mlds
from mlds.cli import run
from mlds.demo import example_path


def test_import_info_export_roundtrip(tmp_path, capsys):
    src = example_path("cu3au_emt.extxyz")
    out = tmp_path / "cu3au.h5"
    assert run(["import", str(src), "-o", str(out), "--name", "cu3au"]) == 0
    capsys.readouterr()
    assert run(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "Au" in text and "Cu" in text and "24" in text and "composition" in text
    assert run(["export", str(out), "--to", "extxyz", "-o", str(tmp_path / "back.extxyz")]) == 0
    original = ase.io.read(src, ":")
    back = ase.io.read(tmp_path / "back.extxyz", ":")
    assert len(back) == len(original) == 24
    for a, b in zip(original, back):
        np.testing.assert_array_equal(a.positions, b.positions)
        assert a.get_potential_energy() == b.get_potential_energy()
        np.testing.assert_array_equal(a.get_forces(), b.get_forces())


def test_info_plot_writes_png(tmp_path, capsys):
    out = tmp_path / "nial.h5"
    assert run(["import", str(example_path("nial_emt.extxyz")), "-o", str(out)]) == 0
    png = tmp_path / "plots" / "dist.png"
    assert run(["info", str(out), "--plot", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_info_json(tmp_path, capsys):
    out = tmp_path / "nial.zarr"
    assert run(["import", str(example_path("nial_emt.extxyz")), "-o", str(out)]) == 0
    capsys.readouterr()
    assert run(["info", str(out), "--json"]) == 0
    import json

    data = json.loads(capsys.readouterr().out)
    assert data["summary"]["elements"] == ["Al", "Ni"]
    assert data["summary"]["n_frames"] == 16


def test_console_script_exit_code_and_one_line(tmp_path):
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"garbage")
    proc = subprocess.run([sys.executable, "-m", "mlds", "info", str(bad)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "bad.h5" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_demo_runs_end_to_end(tmp_path, capsys):
    assert run(["demo", "--workdir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "demo finished" in out
    with mlds.open(tmp_path / "cu3au-emt.mlds.h5") as ds:
        assert len(ds) == 24 and ds.metadata["license"] == "CC0-1.0"
    import mlds.store as store

    group = tmp_path / "remotes" / "group"
    assert {d["dataset"] for d in store.ls(str(group))} == {"cu3au-emt", "nial-emt"}  # 'draft' was refused
    hits = store.search('elements HAS ANY "Ni"', remotes=[str(group)])
    assert [h["dataset"] for h in hits] == ["nial-emt"]
    with store.open_ref("cu3au-emt@v1", store=store.open_store(str(tmp_path / "colleague-store"))) as ds:
        assert len(ds) == 24
