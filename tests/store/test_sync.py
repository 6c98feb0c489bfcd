"""push / pull / clone against a local-folder remote: transfer, verification, conflicts."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

import mlds
import mlds.store as S
from mlds.errors import ConflictError, IntegrityError, StoreError
from mlds.store import manifest as mf
from mlds.store import sync
from mlds.store.store import Store

from .conftest import object_files, write_dataset


def checkout_bytes(store, ref, path):
    S.checkout(ref, path, store=store)
    return Path(path).read_bytes()


def test_push_pull_round_trip_and_incremental(local, folder_remote, tmp_path):
    S.add(write_dataset(tmp_path / "a.h5", 100), "sio", "v1")
    st = S.push("sio", folder_remote)
    assert st["sent_objects"] == 5 and st["tags"] == ["latest", "v1"]  # 4 shards + manifest
    total = st["sent_bytes"]
    again = S.push("sio", folder_remote)
    assert again["sent_objects"] == 0 and again["sent_bytes"] == 0

    r2 = S.add(write_dataset(tmp_path / "b.h5", 103), "sio", "v2")
    inc = S.push("sio", folder_remote)
    assert inc["sent_objects"] == 2  # one new shard + the new manifest
    assert inc["sent_bytes"] == r2["new_bytes"] + len(local.read_object(r2["manifest"]))
    assert inc["sent_bytes"] < 0.3 * total  # tiny shards: ~30 kB HDF5 overhead each

    other = Store.at_path(tmp_path / "other").init()
    got = S.pull("sio", folder_remote, store=other)
    assert sorted(got["tags"]) == ["latest", "v1", "v2"]  # every remote tag by default
    assert checkout_bytes(other, "sio@v2", tmp_path / "x.h5") == checkout_bytes(local, "sio@v2", tmp_path / "y.h5")
    # the pulled history has both manifests, so log works offline
    assert [e["version"] for e in S.log("sio", store=other)] == [2, 1]
    assert S.fsck(other)["ok"] and S.fsck(folder_remote)["ok"]

    # clone into a fresh store directory
    res = S.clone(folder_remote, tmp_path / "clone")
    assert res["datasets"] == ["sio"]
    cl = Store.at_path(tmp_path / "clone")
    with S.open_ref("sio", store=cl) as ds, mlds.open(tmp_path / "b.h5") as src:
        np.testing.assert_array_equal(ds.array("positions"), src.array("positions"))


def test_pull_fast_forward_and_local_ahead(local, folder_remote, tmp_path):
    S.add(write_dataset(tmp_path / "a.h5", 30), "sio")
    S.push("sio", folder_remote)
    bob = Store.at_path(tmp_path / "bob").init()
    S.pull("sio", folder_remote, store=bob)
    S.add(write_dataset(tmp_path / "b.h5", 40), "sio")
    S.push("sio", folder_remote)
    assert S.pull("sio", folder_remote, store=bob)["tags"] == ["latest", "v2"]  # fast-forward
    S.add(write_dataset(tmp_path / "c.h5", 50), "sio", store=bob)
    assert S.pull("sio", folder_remote, store=bob)["tags"] == []  # bob is ahead; nothing moves
    assert bob.read_ref("sio", "latest") != folder_remote.read_ref("sio", "latest")


def test_corrupt_or_truncated_remote_object(local, folder_remote, tmp_path):
    r = S.add(write_dataset(tmp_path / "a.h5", 60), "sio")
    S.push("sio", folder_remote)
    m = mf.load(local, r["manifest"])
    bad, short = m["shards"][0]["sha256"], m["shards"][1]["sha256"]
    p = Path(folder_remote.object_path(bad))
    data = bytearray(p.read_bytes())
    data[100] ^= 0xFF
    p.write_bytes(bytes(data))
    p2 = Path(folder_remote.object_path(short))
    p2.write_bytes(p2.read_bytes()[:-10])

    fresh = Store.at_path(tmp_path / "fresh").init()
    with pytest.raises((IntegrityError, StoreError)) as exc:
        S.pull("sio", folder_remote, store=fresh, workers=1)
    assert bad in str(exc.value) or short in str(exc.value)
    assert not fresh.has_object(bad) and not fresh.has_object(short)
    assert fresh.read_ref("sio", "latest") is None
    assert S.fsck(fresh)["ok"]  # nothing invalid was stored
    rep = S.fsck(folder_remote)
    keys = {k for k, _ in rep["bad"]}
    assert Store.object_key(bad) in keys and Store.object_key(short) in keys


def _remote_with_manifest(folder_remote, manifest_obj, key=None):
    data = mf.encode(manifest_obj)
    h = key or mf.sha256_bytes(data)
    folder_remote._write_bytes_atomic(Store.object_key(h), data)
    folder_remote.write_ref("evil", "latest", h)
    return h


@pytest.mark.parametrize("case", ["escape", "absolute", "wrong-hash", "schema", "parent-escape"])
def test_hostile_manifests_rejected(local, folder_remote, tmp_path, case):
    r = S.add(write_dataset(tmp_path / "a.h5", 10), "sio")
    good = json.loads(local.read_object(r["manifest"]))
    good["dataset"] = "evil"
    key = None
    if case == "escape":
        good["shards"][0]["sha256"] = "../../../../etc/passwd"
    elif case == "absolute":
        good["shards"][0]["sha256"] = "/etc/passwd"
    elif case == "parent-escape":
        good["parents"] = ["../refs/x"]
    elif case == "wrong-hash":
        key = "0" * 64
    elif case == "schema":
        del good["shards"][0]["size"]
    _remote_with_manifest(folder_remote, good, key)
    fresh = Store.at_path(tmp_path / "fresh").init()
    with pytest.raises(IntegrityError) as exc:
        S.pull("evil", folder_remote, store=fresh)
    msg = str(exc.value)
    assert "manifest" in msg
    if case in ("escape", "absolute", "parent-escape"):
        assert "escape" in msg
    assert object_files(Path(fresh.root)) == {}
    assert fresh.read_ref("evil", "latest") is None


def test_concurrent_pushes_same_tag(local, folder_remote, tmp_path, monkeypatch):
    S.add(write_dataset(tmp_path / "a.h5", 30), "sio")
    S.push("sio", folder_remote)
    alice = local
    bob = Store.at_path(tmp_path / "bob").init()
    S.pull("sio", folder_remote, store=bob)
    ha = S.add(write_dataset(tmp_path / "b.h5", 40), "sio", "alice", store=alice)["manifest"]
    hb = S.add(write_dataset(tmp_path / "c.h5", 45), "sio", "bob", store=bob)["manifest"]

    # hold both pushes after their compare-and-swap read, so they really race for the refs
    barrier = threading.Barrier(2, timeout=20)
    real = sync.transfer

    def slow_transfer(*a, **kw):
        out = real(*a, **kw)
        barrier.wait()
        return out

    monkeypatch.setattr(sync, "transfer", slow_transfer)
    results = {}

    def run(name, st):
        try:
            results[name] = S.push("sio", Store.at_path(folder_remote.root, name="origin"), store=st)
        except Exception as err:  # noqa: BLE001
            results[name] = err

    ts = [threading.Thread(target=run, args=(n, s)) for n, s in (("alice", alice), ("bob", bob))]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    monkeypatch.setattr(sync, "transfer", real)
    errors = [v for v in results.values() if isinstance(v, Exception)]
    wins = [v for v in results.values() if isinstance(v, dict)]
    assert len(errors) == 1 and len(wins) == 1, results
    assert isinstance(errors[0], ConflictError)
    assert "since you pulled" in str(errors[0]) or "first" in str(errors[0])
    assert "pull, then push again" in str(errors[0])
    winner = wins[0]["manifest"]
    assert folder_remote.read_ref("sio", "latest") == winner == folder_remote.read_ref("sio", "v2")
    # no manifest lost: both reached the remote as objects, and each is still in its author's store
    assert folder_remote.has_object(ha) and folder_remote.has_object(hb)
    assert alice.has_object(ha) and bob.has_object(hb)
    # the loser pulls with --force after keeping its version under a tag, then pushes again
    loser_store, loser_h = (bob, hb) if winner == ha else (alice, ha)
    with pytest.raises(ConflictError):
        S.pull("sio", folder_remote, store=loser_store)
    S.tag("sio@v2", "mine", store=loser_store)
    S.pull("sio", folder_remote, store=loser_store, force=True)
    assert loser_store.read_ref("sio", "mine") == loser_h


def test_push_conflict_detected_before_sending(local, folder_remote, tmp_path):
    S.add(write_dataset(tmp_path / "a.h5", 30), "sio")
    S.push("sio", folder_remote)
    bob = Store.at_path(tmp_path / "bob").init()
    S.pull("sio", folder_remote, store=bob)
    S.add(write_dataset(tmp_path / "b.h5", 40), "sio", store=bob)
    S.push("sio", folder_remote, store=bob)
    S.add(write_dataset(tmp_path / "c.h5", 45), "sio")
    before = object_files(Path(folder_remote.root))
    with pytest.raises(ConflictError, match="pull, then push again"):
        S.push("sio", folder_remote)
    assert object_files(Path(folder_remote.root)) == before


def test_stale_lock_is_broken_and_live_lock_waits(local, folder_remote, tmp_path):
    import time

    S.add(write_dataset(tmp_path / "a.h5", 10), "sio")
    lock = Path(folder_remote.root) / "locks" / "sio" / "latest.lock"
    lock.parent.mkdir(parents=True)
    lock.write_text(json.dumps({"owner": "x", "host": "elsewhere", "pid": 1, "expires": time.time() - 5}))
    S.push("sio", folder_remote)  # expired lock: broken
    assert not lock.exists()
    lock.write_text(json.dumps({"owner": "x", "host": "elsewhere", "pid": 1, "expires": time.time() + 600}))
    S.add(write_dataset(tmp_path / "b.h5", 12), "sio")
    impatient = Store.at_path(folder_remote.root, name="origin")
    impatient.options["lock_wait_seconds"] = 0.3
    with pytest.raises(ConflictError, match="locked"):
        S.push("sio", impatient)


def test_pull_killed_then_resumed(local, folder_remote, tmp_path):
    import os
    import subprocess
    import sys

    r = S.add(write_dataset(tmp_path / "a.h5", 48), "sio", shard_max_frames=8)
    S.push("sio", folder_remote)
    dest = Store.at_path(tmp_path / "dest").init()
    code = ("import sys, mlds.store as S; from mlds.store.store import Store; "
            "S.pull('sio', Store.at_path(sys.argv[1], name='origin'), store=Store.at_path(sys.argv[2]), workers=1)")
    env = dict(os.environ, MLDS_TEST_KILL_AFTER_N_WRITES="3",
               PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    rc = subprocess.run([sys.executable, "-c", code, folder_remote.root, dest.root], env=env, timeout=60).returncode
    assert rc == -9
    assert dest.read_ref("sio", "latest") is None  # nothing visible yet
    got = {h for h, *_ in dest.iter_objects()}
    assert 1 <= len(got) < 6 and S.fsck(dest)["ok"]  # verified shards arrived, nothing half-written
    st = S.pull("sio", folder_remote, store=dest)
    assert st["sent_objects"] == len(mf.load(local, r["manifest"])["shards"]) + 1 - len(got)
    assert dest.read_ref("sio", "latest") == r["manifest"]


def test_ref_pointing_to_another_datasets_manifest_is_refused(local, folder_remote, tmp_path):
    r = S.add(write_dataset(tmp_path / "a.h5", 10), "sio")
    S.push("sio", folder_remote)
    folder_remote.write_ref("other", "latest", r["manifest"])
    with pytest.raises(IntegrityError, match="another dataset"):
        S.pull("other", folder_remote, store=Store.at_path(tmp_path / "x").init())


def test_cli_push_pull_clone_promote(local, tmp_path, config_home, capsys):
    from mlds.cli import run

    from .conftest import add_remote, group_meta

    add_remote("origin", str(tmp_path / "origin"))
    add_remote("lab", str(tmp_path / "lab"), tier="group")
    f = write_dataset(tmp_path / "a.h5", 30, group_meta())
    assert run(["add", str(f), "-d", "sio", "-m", "first"]) == 0
    assert run(["push", "sio", "origin"]) == 0
    assert "pushed sio origin: 3 object(s)" in capsys.readouterr().out
    assert run(["ls", "origin"]) == 0
    assert run(["promote", "sio@v1", "--to", "lab", "--check"]) == 0
    assert run(["promote", "sio@v1", "--to", "lab"]) == 0
    assert run(["fsck", "lab"]) == 0
    assert run(["clone", "lab", str(tmp_path / "copy")]) == 0
    assert run(["search", 'code="VASP"', "--remote", "lab", "--remote", "origin"]) == 0
    out = capsys.readouterr().out
    assert out.count("sio") >= 3
    assert run(["pull", "sio", "lab"]) == 0
    assert run(["gc", "origin", "--dry-run"]) == 0


def test_add_from_other_formats(local, tmp_path):
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import write

    images = []
    for i in range(5):
        a = Atoms("Si2O", positions=np.random.default_rng(i).random((3, 3)) * 3, cell=np.eye(3) * 4, pbc=True)
        a.calc = SinglePointCalculator(a, energy=-10.0 - i, forces=np.zeros((3, 3)))
        images.append(a)
    xyz = tmp_path / "data.extxyz"
    write(xyz, images, format="extxyz")
    r = S.add(xyz, "fromxyz", "imported")
    with S.open_ref("fromxyz") as ds:
        assert len(ds) == 5
        np.testing.assert_allclose(ds.array("energy"), [-10.0 - i for i in range(5)])
    assert r["version"] == 1


def test_any_fsspec_filesystem_memory(local, tmp_path):
    import fsspec

    fs = fsspec.filesystem("memory")
    mem = Store(fs, f"/mlds-{tmp_path.name}", name="mem").init("personal")
    S.add(write_dataset(tmp_path / "a.h5", 30), "sio")
    assert S.push("sio", mem)["sent_objects"] == 3
    fresh = Store.at_path(tmp_path / "fresh").init()
    S.pull("sio", mem, store=fresh)
    assert S.fsck(mem)["ok"] and S.fsck(fresh)["ok"]
    with S.open_ref("sio", store=fresh) as ds:
        assert len(ds) == 30


def test_concurrent_pushes_of_different_datasets_keep_catalog(local, folder_remote, tmp_path):
    names = [f"d{i}" for i in range(4)]
    for i, n in enumerate(names):
        S.add(write_dataset(tmp_path / f"{n}.h5", 5 + i), n)
    errors = []

    def run(n):
        try:
            S.push(n, Store.at_path(folder_remote.root, name="origin"))
        except Exception as err:  # noqa: BLE001
            errors.append(err)

    ts = [threading.Thread(target=run, args=(n,)) for n in names]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    assert not errors
    assert sorted(folder_remote.read_catalog()["datasets"]) == names


def test_two_processes_push_same_tag(local, folder_remote, tmp_path):
    import os
    import subprocess
    import sys

    S.add(write_dataset(tmp_path / "a.h5", 20), "sio")
    S.push("sio", folder_remote)
    stores = []
    for who, n in (("alice", 30), ("bob", 33)):
        st = Store.at_path(tmp_path / who).init()
        S.pull("sio", folder_remote, store=st)
        S.add(write_dataset(tmp_path / f"{who}.h5", n), "sio", who, store=st)
        stores.append(st)
    code = ("import sys, mlds.store as S; from mlds.store.store import Store; from mlds.errors import ConflictError\n"
            "try:\n S.push('sio', Store.at_path(sys.argv[1], name='origin'), store=Store.at_path(sys.argv[2]))\n"
            "except ConflictError as e:\n print(e); sys.exit(3)\n")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    procs = [subprocess.Popen([sys.executable, "-c", code, folder_remote.root, st.root], env=env,
                              stdout=subprocess.PIPE, text=True) for st in stores]
    outs = [p.communicate(timeout=60) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 3], outs
    loser = [o for (o, _), p in zip(outs, procs) if p.returncode == 3][0]
    assert "pull, then push again" in loser
    winner = [st for st, p in zip(stores, procs) if p.returncode == 0][0]
    assert folder_remote.read_ref("sio", "latest") == winner.read_ref("sio", "latest")
    assert all(st.has_object(st.read_ref("sio", "latest")) for st in stores)  # no manifest lost
    assert S.fsck(folder_remote)["ok"]
