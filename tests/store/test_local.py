"""Local store: versions, shard reuse, checkout/open round trips, fsck, gc."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

import mlds
import mlds.store as S
from mlds.errors import StoreError
from mlds.store.versions import content_digest

from .conftest import object_files, write_dataset

ARRAYS = ("numbers", "positions", "forces", "energy", "cell", "stress", "n_atoms")


def assert_same(a, b):
    assert len(a) == len(b)
    for name in ARRAYS:
        np.testing.assert_array_equal(a.array(name), b.array(name), err_msg=name)


def test_add_log_tag_checkout_open(local, tmp_path):
    f1 = write_dataset(tmp_path / "a.h5", 60)
    r1 = S.add(f1, "sio", "first")
    assert (r1["version"], r1["new_shards"], r1["reused_shards"]) == (1, 3, 0)
    f2 = write_dataset(tmp_path / "b.h5", 80)
    r2 = S.add(f2, "sio", "more frames")
    assert r2["version"] == 2
    assert (r2["reused_shards"], r2["new_shards"]) == (3, 1)  # 25+25+10 reused, 20 new frames in one shard
    assert S.add(f2, "sio", "again")["unchanged"]

    log = S.log("sio")
    assert [e["version"] for e in log] == [2, 1]
    assert log[0]["tags"] == ["latest", "v2"] and log[1]["message"] == "first"

    S.tag("sio@v1", "paper")
    with pytest.raises(StoreError, match="already points"):
        S.tag("sio@v2", "paper")
    with pytest.raises(StoreError, match="reserved"):
        S.tag("sio@v2", "v7")
    assert S.log("sio@paper")[0]["version"] == 1

    with mlds.open(f1) as src, mlds.open("sio@paper") as ds:  # through the lead's mlds.open
        assert_same(src, ds)
        assert ds.metadata["name"] == "sio"
        # shards are read in place from objects/, not copied
        assert all(str(p.path).startswith(str(local.root)) for p in ds.parts)
    for suffix in (".h5", ".zarr.zip"):
        out = S.checkout("sio@v2", tmp_path / f"out{suffix}")
        with mlds.open(out) as got, mlds.open(f2) as src:
            assert_same(src, got)


def test_append_reuses_shards(local, tmp_path):
    n0 = 100
    S.add(write_dataset(tmp_path / "a.h5", n0), "sio")
    before = object_files(Path(local.root))
    r = S.add(write_dataset(tmp_path / "b.h5", n0 + 5), "sio")
    after = object_files(Path(local.root))
    new = set(after) - set(before)
    assert r["reused_shards"] == 4 and r["new_shards"] == 1
    assert len(new) == 2  # one shard + one manifest
    shard_bytes = sum(after[h] for h in new) - len(local.read_object(r["manifest"]))
    assert shard_bytes == r["new_bytes"]
    assert r["new_bytes"] < 0.25 * sum(before.values())


def test_content_digest_ignores_backfilled_optional_arrays(tmp_path):
    from .conftest import frames

    fr = frames(10)
    for f in fr:
        f.stress = None
    a = tmp_path / "a.h5"
    with mlds.create(a, {"name": "x"}) as w:
        w.append(fr)
    b = tmp_path / "b.h5"
    extra = frames(1, start=10)  # has stress: b gets a NaN-backfilled stress column for frames 0..9
    with mlds.create(b, {"name": "x"}) as w:
        w.append(fr + extra)
    with mlds.open(a) as da, mlds.open(b) as db:
        assert db.has("stress") and not da.has("stress")
        assert content_digest(da, 0, 10) == content_digest(db, 0, 10)
        assert content_digest(da, 0, 10) != content_digest(db, 0, 9)


def test_fsck_finds_flipped_byte(local, tmp_path):
    r = S.add(write_dataset(tmp_path / "a.h5", 30), "sio")
    assert S.fsck()["ok"]
    m = local.read_object(r["manifest"])
    import json

    shard = json.loads(m)["shards"][0]["sha256"]
    p = local.object_path(shard)
    data = bytearray(open(p, "rb").read())
    data[len(data) // 2] ^= 0x01
    os.chmod(p, 0o644)
    open(p, "wb").write(bytes(data))
    rep = S.fsck()
    assert not rep["ok"]
    assert [k for k, _ in rep["bad"]] == [f"objects/sha256/{shard[:2]}/{shard[2:]}"]

    from mlds.cli import run

    assert run(["fsck"]) != 0


def test_gc_keeps_referenced_and_recent(local, tmp_path):
    r1 = S.add(write_dataset(tmp_path / "a.h5", 30), "sio")
    orphan_old = local.put_bytes(b"an old orphan")
    orphan_new = local.put_bytes(b"a new orphan (maybe a push in progress)")
    old = time.time() - 7200
    os.utime(local.object_path(orphan_old), (old, old))
    res = S.gc()
    assert res["removed"] == [orphan_old]
    assert res["kept_recent"] == 1
    assert local.has_object(orphan_new) and not local.has_object(orphan_old)
    assert local.has_object(r1["manifest"])
    assert S.fsck()["ok"]
    with mlds.open("sio") as ds:
        assert len(ds) == 30


def test_cli_round_trip(local, tmp_path, capsys):
    from mlds.cli import run

    f = write_dataset(tmp_path / "a.h5", 30)
    assert run(["add", str(f), "-d", "sio", "-m", "hello"]) == 0
    assert run(["log", "sio"]) == 0
    assert run(["tag", "sio@v1", "good"]) == 0
    assert run(["checkout", "sio@good", "-o", str(tmp_path / "c.h5")]) == 0
    assert run(["ls"]) == 0
    assert run(["search", 'elements HAS ALL "Si","O"']) == 0
    out = capsys.readouterr().out
    assert "hello" in out and "sio" in out
    assert run(["search", "elements HAS"]) == 2
    assert "unexpected token" in capsys.readouterr().err


def test_project_store_discovery(tmp_path, monkeypatch):
    from mlds.cli import run
    from mlds.store.local import local_store_path

    monkeypatch.delenv("MLDS_STORE", raising=False)
    proj = tmp_path / "proj"
    (proj / "sub").mkdir(parents=True)
    monkeypatch.chdir(proj)
    assert run(["init"]) == 0
    monkeypatch.chdir(proj / "sub")
    assert local_store_path() == proj / ".mlds" / "store"
