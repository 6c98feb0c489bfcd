"""add(append=True, dedupe=True): previous shards reused byte for byte, tables appended, duplicates skipped."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import numpy as np
import pytest

import mlds
import mlds.store as S
from mlds.store import manifest as mf

from .conftest import COMPLETE_CALC, SRC, frames, object_files


def write_run(path: Path, n: int, start: int = 0, *, calc: dict | None = None, src_name: str = "OUTCAR",
              repeat: tuple[int, ...] = ()) -> Path:
    """A dataset like one converted run: one calculation, one source, every frame pointing at both.

    ``repeat`` lists frame numbers (relative to ``start``) written a second time at the end.
    """
    fr = frames(n, start)
    fr += [copy.deepcopy(fr[i]) for i in repeat]
    for f in fr:
        f.source, f.calculation = 0, 0
    calc = copy.deepcopy(calc if calc is not None else COMPLETE_CALC)
    src = dict(SRC, path=f"/data/{src_name}", sha256=(src_name.encode().hex() * 64)[:64], frames_kept=len(fr))
    with mlds.create(path, {"name": "sio", "calculations": [calc], "sources": [src]}) as w:
        w.append(fr)
    return path


def _files(root: str) -> dict[str, tuple[int, int, int]]:
    base = Path(root) / "objects" / "sha256"
    return {p.parent.name + p.name: (p.stat().st_ino, p.stat().st_mtime_ns, p.stat().st_size)
            for p in base.rglob("*") if p.is_file()}


def test_append_reuses_every_previous_shard_and_shifts_tables(local, tmp_path):
    r1 = S.add(write_run(tmp_path / "a.h5", 30, src_name="A"), "sio", "first")
    before = _files(local.root)
    m1 = mf.load(local, r1["manifest"])
    other_calc = dict(COMPLETE_CALC, functional="SCAN")
    r2 = S.add(write_run(tmp_path / "b.h5", 12, start=100, calc=other_calc, src_name="B"), "sio", "more",
               append=True)
    assert (r2["version"], r2["n_frames_added"], r2["duplicates_skipped"], r2["unchanged"]) == (2, 12, 0, False)
    # previous shards: same list, same files (never rewritten: same inode, mtime, size)
    m2 = mf.load(local, r2["manifest"])
    assert m2["shards"][:len(m1["shards"])] == m1["shards"] and r2["reused_shards"] == len(m1["shards"])
    after = _files(local.root)
    assert all(after[h] == before[h] for h in before)
    # tables appended, the new source points at the new calculation
    meta = m2["metadata"]
    assert [c["functional"] for c in meta["calculations"]] == ["PBE", "SCAN"]
    assert [s["path"] for s in meta["sources"]] == ["/data/A", "/data/B"]
    assert meta["sources"][1]["calculation"] == 1
    assert m2["summary"]["n_frames"] == 42 and m2["summary"]["functionals"] == ["PBE", "SCAN"]
    with S.open_ref("sio") as ds, mlds.open(tmp_path / "a.h5") as a, mlds.open(tmp_path / "b.h5") as b:
        assert len(ds) == 42
        np.testing.assert_array_equal(ds.array("positions"), np.concatenate([a.array("positions"), b.array("positions")]))
        np.testing.assert_array_equal(ds.array("calculation"), [0] * 30 + [1] * 12)
        np.testing.assert_array_equal(ds.array("source"), [0] * 30 + [1] * 12)
    # identical settings share one calculation entry; the source is still its own
    r3 = S.add(write_run(tmp_path / "c.h5", 5, start=200, src_name="C"), "sio", append=True)
    m3 = mf.load(local, r3["manifest"])
    assert len(m3["metadata"]["calculations"]) == 2 and m3["metadata"]["sources"][2]["calculation"] == 0
    with S.open_ref("sio") as ds:
        np.testing.assert_array_equal(ds.array("calculation")[-5:], [0] * 5)
        np.testing.assert_array_equal(ds.array("source")[-5:], [2] * 5)
    assert [e["version"] for e in S.log("sio")] == [3, 2, 1]


def test_append_skips_frames_already_stored_and_counts_them(local, tmp_path):
    S.add(write_run(tmp_path / "a.h5", 20, src_name="A"), "sio")
    # frames 10..29: 10..19 are already in v1
    r = S.add(write_run(tmp_path / "b.h5", 20, start=10, src_name="B"), "sio", append=True)
    assert (r["n_frames_added"], r["duplicates_skipped"]) == (10, 10)
    m = mf.load(local, r["manifest"])
    src = m["metadata"]["sources"][1]
    assert src["frames_kept"] == 10 and src["frames_dropped"] == {"duplicate": 10}
    with S.open_ref("sio") as ds:
        assert len(ds) == 30
        from mlds.format.framehash import dataset_hashes

        hashes = dataset_hashes(ds)
        assert len(set(hashes)) == 30
    # nothing new: no new version, no new object
    objs = object_files(Path(local.root))
    again = S.add(write_run(tmp_path / "c.h5", 25, src_name="C"), "sio", append=True)
    assert again["unchanged"] and again["version"] == 2 and again["duplicates_skipped"] == 25
    assert object_files(Path(local.root)) == objs and len(S.log("sio")) == 2


def test_duplicates_within_one_source(local, tmp_path):
    f = write_run(tmp_path / "a.h5", 10, repeat=(0, 3, 3))
    r = S.add(f, "sio")
    assert (r["n_frames_added"], r["duplicates_skipped"]) == (10, 3)
    m = mf.load(local, r["manifest"])
    assert m["metadata"]["sources"][0]["frames_dropped"] == {"duplicate": 3}
    assert m["metadata"]["sources"][0]["frames_kept"] == 10
    with S.open_ref("sio") as ds, mlds.open(f) as src:
        assert len(ds) == 10
        np.testing.assert_array_equal(ds.array("energy"), src.array("energy")[:10])
    assert S.add(f, "sio")["unchanged"]  # the same file again: same content, same metadata
    # asked to keep them: stored, nothing counted
    r2 = S.add(f, "raw", dedupe=False)
    assert (r2["n_frames_added"], r2["duplicates_skipped"]) == (13, 0)


def test_append_without_dedupe_and_from_a_store_ref(local, tmp_path):
    S.add(write_run(tmp_path / "a.h5", 8, src_name="A"), "base")
    S.add(write_run(tmp_path / "b.h5", 8, src_name="A"), "other")  # same frames
    r = S.add("other@latest", "base", append=True, dedupe=False)
    assert r["n_frames_added"] == 8 and r["duplicates_skipped"] == 0
    with S.open_ref("base") as ds:
        assert len(ds) == 16
    r = S.add("other", "base", append=True)
    assert r["unchanged"] and r["duplicates_skipped"] == 8


def test_first_append_is_a_plain_add(local, tmp_path):
    r = S.add(write_run(tmp_path / "a.h5", 6), "new", append=True)
    assert r["version"] == 1 and r["n_frames_added"] == 6


def test_frame_hash_cache_is_rebuilt_when_wrong(local, tmp_path):
    r1 = S.add(write_run(tmp_path / "a.h5", 30, src_name="A"), "sio")
    cache = Path(local.root) / "cache" / "frame-hashes"
    files = [p for p in cache.rglob("*") if p.is_file()]
    assert len(files) == len(mf.load(local, r1["manifest"])["shards"])
    for p in files:
        p.write_bytes(b"\0" * 32)  # wrong length: must be recomputed, not trusted
    r = S.add(write_run(tmp_path / "b.h5", 10, start=25, src_name="B"), "sio", append=True)
    assert (r["n_frames_added"], r["duplicates_skipped"]) == (5, 5)
    assert S.fsck()["ok"]  # the cache folder is not mistaken for store objects


def test_cli_add_append(local, tmp_path, capsys):
    from mlds.cli import run

    S.add(write_run(tmp_path / "a.h5", 10, src_name="A"), "sio")
    write_run(tmp_path / "b.h5", 10, start=5, src_name="B")
    assert run(["add", str(tmp_path / "b.h5"), "-d", "sio", "--append"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "5 duplicate frame(s) skipped" in out and "sio@v2" in out
    with S.open_ref("sio") as ds:
        assert len(ds) == 15
