"""Run trees for ingest tests: copies of the real files in ../shared/testdata, arranged as run folders.

Copies go to pytest's tmp dirs only (never into the project).  Expected frames
are always derived by reading the same file with its reader, never hard-coded.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from tests.conftest import data_file

# run folder layouts: name -> [(testdata path, name in the run folder)]
RUNS = {
    "h2o_pair": [("dpdata/tests/poscars/OUTCAR.h2o.md.10", "OUTCAR"),
                 ("dpdata/tests/poscars/vasprun.h2o.md.10.xml", "vasprun.xml")],
    "tio_pair": [("dpdata/tests/poscars/Ti-O-Ti-v6/OUTCAR", "OUTCAR"),
                 ("dpdata/tests/poscars/Ti-O-Ti-v6/vasprun.xml", "vasprun.xml")],
    "h2o_novirial": [("dpdata/tests/poscars/vasprun.h2o.md.novirial.xml", "vasprun.xml")],  # same settings as h2o_pair
    "h2o_tribox": [("dpdata/tests/poscars/vasprun.h2o.md.tribox.xml", "vasprun.xml")],      # same settings as h2o_pair
    "lips_md": [("custodian/tests/files/npt_common/OUTCAR", "OUTCAR")],
    "ch4": [("dpdata/tests/poscars/OUTCAR.ch4.unconverged", "OUTCAR")],
    "qe_si_md": [("q-e/test-suite/pw_md/md.benchmark.out", "pw.out")],
    "qe_si_pair": [("aiida-quantumespresso/tests/parsers/fixtures/pw/relax_success/aiida.out", "aiida.out"),
                   ("aiida-quantumespresso/tests/parsers/fixtures/pw/relax_success/data-file-schema.xml",
                    "aiida.save/data-file-schema.xml")],
    "aborted": [("custodian/tests/files/large_cell_real_optlay/OUTCAR", "OUTCAR"),
                ("custodian/tests/files/large_cell_real_optlay/vasprun.xml", "vasprun.xml")],
    "fes_interrupted": [("custodian/tests/files/potim/OUTCAR", "OUTCAR")],  # no closing timing block
}
OLD = time.time() - 2 * 86400  # mtime of a file nobody has touched for two days


def make_run(root: Path, folder: str, layout: str, *, old: bool = True) -> Path:
    """Copy the files of ``layout`` into ``root/folder``; ``old`` backdates them (a finished, quiet run)."""
    d = root / folder
    for src, name in RUNS[layout]:
        dst = d / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(data_file(src), dst)
        if old:
            os.utime(dst, (OLD, OLD))
    return d


def truncated_copy(src_rel: str, dst: Path, fraction: float, *, old: bool = False) -> Path:
    data = data_file(src_rel).read_bytes()
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(data[: int(len(data) * fraction)])
    if old:
        os.utime(dst, (OLD, OLD))
    return dst


def source_hashes(path: Path, fmt: str | None = None) -> list[str]:
    """Frame hashes of everything the reader keeps from ``path`` (the expected content)."""
    from mlds.format.framehash import frame_hash
    from mlds.io.registry import open_reader

    return [frame_hash(f) for f in open_reader(path, fmt)]


def version_hashes(ref: str, store) -> list[str]:
    from mlds.format.framehash import dataset_hashes
    from mlds.store.versions import open_ref

    ds = open_ref(ref, store=store)
    try:
        return list(dataset_hashes(ds))
    finally:
        ds.close()


def sources_of(ref: str, store) -> list[dict]:
    from mlds.store import manifest as mf
    from mlds.store.versions import parse_ref, resolve

    name, tag = parse_ref(ref)
    return mf.load(store, resolve(store, name, tag))["metadata"]["sources"]


@pytest.fixture
def store(tmp_path, monkeypatch):
    from mlds.store.store import Store

    root = tmp_path / "store"
    monkeypatch.setenv("MLDS_STORE", str(root))
    monkeypatch.setenv("MLDS_AUTHOR", "tester")
    return Store.at_path(root).init("personal")


@pytest.fixture
def tree(tmp_path, testdata) -> Path:
    root = tmp_path / "runs"
    root.mkdir()
    return root
