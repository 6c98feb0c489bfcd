"""Fixtures for store tests: small synthetic datasets and throw-away stores."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest

COMPLETE_CALC = {
    "code": "VASP", "code_version": "6.4.2", "functional": "PBE", "plane_wave_cutoff_eV": 520.0,
    "kpoints": {"mesh": [4, 4, 4]}, "smearing": {"method": "gaussian", "width_eV": 0.05},
    "spin_polarized": False, "pseudopotentials": [{"element": "Si", "name": "PAW_PBE Si"}, {"element": "O", "name": "PAW_PBE O", "file": "/home/alice/pp/O.pbe.upf"}],
}
SRC = {"path": "/home/alice/runs/sio2/OUTCAR", "sha256": "a" * 64, "format": "vasp-outcar", "frames_kept": 1, "calculation": 0}


def frames(n: int, start: int = 0, elements=(14, 8)):
    from mlds.format.frame import Frame

    out = []
    for i in range(start, start + n):
        r = np.random.default_rng(i)
        na = 3 + i % 4
        nums = [elements[j % len(elements)] for j in range(na)]
        out.append(Frame(numbers=nums, positions=r.random((na, 3)) * 5, cell=np.eye(3) * 5, pbc=[1, 1, 1],
                         energy=-5.0 * na + r.random(), forces=r.random((na, 3)) - 0.5,
                         stress=r.random((3, 3)) * 0.01))
    return out


def group_meta(name="sio"):
    return {"name": name, "calculations": [copy.deepcopy(COMPLETE_CALC)], "sources": [copy.deepcopy(SRC)]}


def public_meta(name="sio"):
    m = group_meta(name)
    m.update({"license": "CC-BY-4.0", "authors": [{"name": "Alice"}], "description": "Si-O test data"})
    return m


def write_dataset(path: Path, n: int, meta=None, start: int = 0, elements=(14, 8)) -> Path:
    import mlds

    with mlds.create(path, meta if meta is not None else {"name": "sio"}) as w:
        w.append(frames(n, start, elements))
    return path


@pytest.fixture
def local(tmp_path, monkeypatch):
    from mlds.store.store import Store

    monkeypatch.setenv("MLDS_STORE", str(tmp_path / "local-store"))
    monkeypatch.setenv("MLDS_AUTHOR", "tester")
    monkeypatch.chdir(tmp_path)
    st = Store.at_path(tmp_path / "local-store").init("personal", policy={"shard_max_frames": 25})
    return st


@pytest.fixture
def folder_remote(tmp_path):
    from mlds.store.store import Store

    return Store.at_path(tmp_path / "remote", name="origin").init("personal")


def object_files(root: Path) -> dict[str, int]:
    base = root / "objects" / "sha256"
    if not base.exists():
        return {}
    return {p.parent.name + p.name: p.stat().st_size for p in base.rglob("*") if p.is_file()}


@pytest.fixture
def config_home(tmp_path, monkeypatch):
    """An empty user config for remotes (``mlds remote add`` writes here)."""
    home = tmp_path / "config-home"
    home.mkdir()
    monkeypatch.setenv("MLDS_CONFIG_HOME", str(home))
    return home


def add_remote(name: str, url: str, tier: str = "personal", options: dict | None = None, init: bool = True):
    """Configure a remote like ``mlds remote add`` and create its store."""
    import mlds.store as S
    from mlds.remotes.config import add_remote as _add

    _add(name, url, tier=tier, options=options or {})
    if init:
        S.init(name, tier=tier)
    return S.open_store(name)


ENDLESS_PULL = """
import sys
import mlds.store as S
from mlds.errors import IntegrityError
from mlds.remotes.config import Remote
from mlds.remotes.filesystems import open_remote_fs
from mlds.store.store import Store
fs, root = open_remote_fs(Remote("origin", sys.argv[1]))
try:
    S.pull("sio", Store(fs, root, name="origin"), store=Store.at_path(sys.argv[2]).init(), workers=1)
except IntegrityError as err:
    print("refused:", err)
    sys.exit(3)
"""


def assert_pull_of_endless_object_refused(url: str, dest: Path) -> None:
    """Pull ``sio`` from ``url`` into a new store at ``dest`` in a child process (a hang cannot stall the
    suite): it must stop at the manifest's size and refuse, within 60 s."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    try:
        proc = subprocess.run([sys.executable, "-c", ENDLESS_PULL, url, str(dest)], env=env, capture_output=True,
                              text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"pull of an endless object from {url} did not return")
    assert proc.returncode == 3 and "longer than" in proc.stdout, proc.stdout + proc.stderr[-2000:]
