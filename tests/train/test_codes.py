"""Finding and building n2p2 (the real build, cached by the tarball's sha256)."""

from __future__ import annotations

import os
import subprocess

import pytest

from mlds import codes
from mlds.cli import run as cli
from mlds.codes import n2p2 as code_n2p2
from tests.train.conftest import TARBALL


def test_build_is_cached_by_sha256_and_programs_run(n2p2_bin, tmp_path):
    r = codes.build("n2p2", TARBALL)
    assert r.cached and r.bin_dir == n2p2_bin
    assert r.info["source_sha256"] == r.source_sha256 and r.info["cflags"] == code_n2p2.PORTABLE_CFLAGS
    assert "-march=native" not in r.info["cflags"]
    assert sorted(p.name for p in n2p2_bin.iterdir()) == sorted(code_n2p2.PROGRAMS)
    env = {**os.environ, "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
    out = subprocess.run([str(n2p2_bin / "nnp-scaling")], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert "USAGE" in out.stdout and "<nbins>" in out.stdout  # the real program, answering its usage


def test_locate_order_env_then_config_then_path_then_cache(n2p2_bin, tmp_path, monkeypatch):
    monkeypatch.delenv("MLDS_N2P2_BIN", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    assert codes.locate("n2p2").origin == "cache"
    on_path = tmp_path / "onpath"
    on_path.mkdir()
    for p in code_n2p2.PROGRAMS:
        os.symlink(n2p2_bin / p, on_path / p)
    monkeypatch.setenv("PATH", str(on_path))
    assert codes.locate("n2p2").origin == "PATH"
    assert cli(["codes", "build", "n2p2", "--source", str(TARBALL), "--prefix", str(tmp_path / "pfx")]) == 0
    assert (tmp_path / "pfx" / "bin" / "nnp-train").is_file()
    loc = codes.locate("n2p2")
    assert (loc.origin, loc.bin_dir, loc.version) == ("config", tmp_path / "pfx" / "bin", "2.3.0")
    monkeypatch.setenv("MLDS_N2P2_BIN", str(on_path))
    assert codes.locate("n2p2").origin == "env"


def test_missing_binary_is_one_line(tmp_path, monkeypatch, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("MLDS_N2P2_BIN", str(empty))
    assert cli(["codes", "list"]) == 0
    with pytest.raises(codes.CodeError, match="lacks nnp-scaling"):
        codes.locate("n2p2")
    monkeypatch.delenv("MLDS_N2P2_BIN")
    monkeypatch.setenv("MLDS_CODES_CACHE", str(tmp_path / "nocache"))
    monkeypatch.setenv("PATH", str(empty))
    capsys.readouterr()
    assert cli(["train", "n2p2", "whatever@v1", "-w", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert "program nnp-scaling not found" in err and "mlds codes build n2p2" in err and len(err.splitlines()) <= 2
    assert not (tmp_path / "run").exists()


def test_missing_system_packages_named_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))  # no make, no compilers
    monkeypatch.setenv("MLDS_CODES_CACHE", str(tmp_path / "cache"))
    assert cli(["codes", "build", "n2p2", "--source", str(TARBALL)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "missing system packages make, g++, openmpi-bin, libopenmpi-dev" in err
    assert "apt-get install" in err
    assert not any((tmp_path / "cache" / "n2p2").glob("*/bin"))


def test_bad_source_one_line(tmp_path, capsys):
    bad = tmp_path / "n2p2.tar.gz"
    bad.write_bytes(b"not a tarball")
    assert cli(["codes", "build", "n2p2", "--source", str(bad)]) == 2
    assert "not a readable source tarball" in capsys.readouterr().err
