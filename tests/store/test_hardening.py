"""Issue 13: guarantees under attack -- verified copies, endless and oversized objects, long histories,
escaping folders, durability, tier bypasses, invalid inputs, fsck gaps, credentials in options."""

from __future__ import annotations

import builtins
import json
import os
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

import mlds
import mlds.store as S
from mlds.errors import IntegrityError, MldsError, PolicyError, StoreError
from mlds.store import manifest as mf
from mlds.store.store import Store

from .conftest import add_remote, assert_pull_of_endless_object_refused, public_meta, write_dataset


# ----------------------------------------------------------------- hash what you copy
def test_pull_hashes_the_bytes_it_copies(local, folder_remote, tmp_path, monkeypatch):
    """A writer changing a folder remote's object between two reads must not leave a misnamed object."""
    r = S.add(write_dataset(tmp_path / "a.h5", 10), "sio")
    S.push("sio", folder_remote)
    shard = mf.load(local, r["manifest"])["shards"][0]["sha256"]
    victim = os.path.realpath(folder_remote.object_path(shard))
    good = Path(victim).read_bytes()
    bad = bytearray(good)
    bad[len(bad) // 2] ^= 0xFF
    real_open = builtins.open
    opens = []

    def changing_open(file, mode="r", *a, **kw):  # every read after the first sees the other writer's bytes
        if isinstance(file, (str, os.PathLike)) and os.path.realpath(file) == victim and "r" in mode:
            opens.append(1)
            if len(opens) > 1:
                import io
                return io.BytesIO(bytes(bad))
        return real_open(file, mode, *a, **kw)

    monkeypatch.setattr(builtins, "open", changing_open)
    fresh = Store.at_path(tmp_path / "fresh").init()
    try:
        S.pull("sio", folder_remote, store=fresh, workers=1)
    except IntegrityError:
        pass  # refused: fine
    monkeypatch.setattr(builtins, "open", real_open)
    assert S.fsck(fresh)["ok"], "an object whose bytes do not match its name was stored"


def test_open_ref_verifies_hashes_not_just_sizes(local, tmp_path):
    r = S.add(write_dataset(tmp_path / "a.h5", 10), "sio")
    shard = mf.load(local, r["manifest"])["shards"][0]["sha256"]
    p = Path(local.object_path(shard))
    data = bytearray(p.read_bytes())
    data[-100] ^= 0xFF  # same size, other content
    os.chmod(p, 0o644)
    p.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="corrupt"):
        S.open_ref("sio")
    with pytest.raises(IntegrityError):
        S.checkout("sio", tmp_path / "out.h5")
    assert not (tmp_path / "out.h5").exists()


# ----------------------------------------------------------------- endless and oversized objects
def test_endless_object_on_a_folder_remote_fails_instead_of_hanging(local, folder_remote, tmp_path):
    r = S.add(write_dataset(tmp_path / "a.h5", 10), "sio")
    S.push("sio", folder_remote)
    shard = mf.load(local, r["manifest"])["shards"][0]["sha256"]
    p = Path(folder_remote.object_path(shard))
    os.chmod(p, 0o644)
    p.unlink()
    p.symlink_to("/dev/zero")
    assert_pull_of_endless_object_refused(folder_remote.root, tmp_path / "fresh")
    rep = S.fsck(folder_remote)
    assert Store.object_key(shard) in {k for k, _ in rep["bad"]}


def _rewrite_manifest(store: Store, name: str, change) -> str:
    """Store a modified copy of ``name@latest``'s manifest and point the ref at it."""
    m = json.loads(store.read_object(store.read_ref(name, "latest")))
    change(m)
    data = mf.encode(m)
    h = mf.sha256_bytes(data)
    store._write_bytes_atomic(Store.object_key(h), data)
    store.write_ref(name, "latest", h)
    return h


def test_declared_size_is_enforced_by_pull_and_fsck(local, folder_remote, tmp_path):
    S.add(write_dataset(tmp_path / "a.h5", 10), "sio")
    S.push("sio", folder_remote)

    def huge(m):
        m["shards"][0]["size"] = 10 ** 15
    _rewrite_manifest(folder_remote, "sio", huge)
    fresh = Store.at_path(tmp_path / "fresh").init()
    with pytest.raises(IntegrityError, match="disagree on the size"):
        S.pull("sio", folder_remote, store=fresh)  # v1 and latest name the shard with different sizes
    with pytest.raises(IntegrityError, match="shorter than"):
        S.pull("sio@latest", folder_remote, store=fresh)
    assert fresh.read_ref("sio", "latest") is None
    rep = S.fsck(folder_remote)
    assert not rep["ok"] and any("says 1000000000000000" in why for _, why in rep["bad"])


def test_a_shard_listed_100000_times_is_refused_quickly(local, tmp_path):
    S.add(write_dataset(tmp_path / "a.h5", 3), "sio")

    def repeat(m):
        m["shards"] = m["shards"] * 100_000
        m["summary"]["n_frames"] *= 100_000
    _rewrite_manifest(local, "sio", repeat)
    t = time.monotonic()
    with pytest.raises(IntegrityError, match="listed 100000 times"):
        with mlds.open("sio"):
            pass
    from mlds.cli import run

    assert run(["info", "sio"]) == 2  # `mlds info` ran past 120 s before
    assert time.monotonic() - t < 30
    assert not S.fsck()["ok"]


def test_fsck_reports_a_ref_pointing_at_another_datasets_manifest(local, tmp_path):
    r = S.add(write_dataset(tmp_path / "a.h5", 3), "sio")
    local.write_ref("other", "latest", r["manifest"])
    rep = S.fsck()
    assert not rep["ok"] and any("another dataset" in why for _, why in rep["bad"])


# ----------------------------------------------------------------- long histories
def _long_history(store: Store, n: int) -> str:
    prev = None
    summary = {"n_frames": 0, "n_atoms": 0, "elements": [], "nelements": 0}
    for v in range(1, n + 1):
        m = {"mlds_manifest": 1, "dataset": "long", "version": v, "parents": [prev] if prev else [],
             "author": "t", "message": "", "created": "2024-01-01T00:00:00Z", "metadata": {"name": "long"},
             "shards": [], "summary": summary}
        prev = mf.put(store, m)
    store.write_ref("long", f"v{n}", prev)
    store.write_ref("long", "latest", prev)
    return prev


def test_push_and_pull_of_a_history_deeper_than_the_recursion_limit(tmp_path):
    """~1,000 versions used to raise RecursionError (one stack frame per version).  The walk is iterative:
    with the interpreter's limit lowered to 350 frames, a 400-version history still pushes and pulls."""
    import fsspec

    mem = fsspec.filesystem("memory")
    a = Store(mem, f"/a-{tmp_path.name}", name="a").init()
    b = Store(mem, f"/b-{tmp_path.name}", name="b").init()
    c = Store(mem, f"/c-{tmp_path.name}", name="c").init()
    tip = _long_history(a, 400)
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(350)
    try:
        st = S.push("long", b, store=a)
        S.pull("long", b, store=c)
    finally:
        sys.setrecursionlimit(old)
    assert st["sent_objects"] == 400 and b.read_ref("long", "latest") == tip
    assert c.read_ref("long", "latest") == tip and len(S.log("long", store=c)) == 400


# ----------------------------------------------------------------- folders leading out of a folder remote
def test_push_refuses_a_symlinked_tmp_leading_out_of_the_remote(local, tmp_path):
    remote = Store.at_path(tmp_path / "remote", name="origin").init()
    outside = tmp_path / "outside"
    outside.mkdir()
    tmp = Path(remote.root) / "tmp"
    if tmp.exists():
        tmp.rmdir()
    tmp.symlink_to(outside)
    S.add(write_dataset(tmp_path / "a.h5", 5), "sio")
    with pytest.raises(StoreError, match="outside the store"):
        S.push("sio", remote)
    assert list(outside.iterdir()) == []
    assert remote.read_ref("sio", "latest") is None


# ----------------------------------------------------------------- durability
def test_objects_of_a_folder_remote_are_fsynced_before_the_ref(local, tmp_path, monkeypatch):
    remote = Store.at_path(tmp_path / "remote", name="origin").init()
    S.add(write_dataset(tmp_path / "a.h5", 30), "sio")
    synced: list[tuple[int, str]] = []  # (inode, path) of every fsync, in order
    real_fsync = os.fsync

    def fsync(fd):
        synced.append((os.fstat(fd).st_ino, os.path.realpath(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    at_ref: dict[str, list[tuple[int, str]]] = {}
    real_write_ref = Store.write_ref

    def write_ref(self, dataset, tag, h, token=None):
        if self.root == remote.root:
            at_ref.setdefault(tag, list(synced))
        return real_write_ref(self, dataset, tag, h, token=token)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(Store, "write_ref", write_ref)
    S.push("sio", remote)
    objs = [p for p in Path(remote.root, "objects").rglob("*") if p.is_file()]
    assert len(objs) == 3 and at_ref  # 2 shards + manifest
    before = min(at_ref.values(), key=len)  # what was durable when the first ref was written
    inodes = {i for i, _ in before}
    paths = {p for _, p in before}
    for o in objs:  # a fsynced staging file becomes the object by rename (same inode)
        assert o.stat().st_ino in inodes, f"{o} was not fsynced before the first ref was written"
        assert os.path.realpath(o.parent) in paths, f"{o.parent} (the new name) was not fsynced before the ref"


# ----------------------------------------------------------------- tier bypass: one gate for every route
def test_clone_pull_and_add_cannot_put_drafts_into_group_or_public_stores(local, tmp_path, monkeypatch):
    S.add(write_dataset(tmp_path / "d.h5", 5), "draft")  # no DFT settings: a personal draft
    personal = Store.at_path(tmp_path / "personal", name="personal").init("personal")
    S.push("draft", personal)
    public = Store.at_path(tmp_path / "public", name="pubstore").init("public")
    group = Store.at_path(tmp_path / "group", name="grpstore").init("group")
    for dst in (public, group):
        with pytest.raises(PolicyError):
            S.clone(personal, dst)
        with pytest.raises(PolicyError):
            S.pull("draft", personal, store=dst)
        with pytest.raises(PolicyError):
            S.add(write_dataset(tmp_path / "e.h5", 5), "x", store=dst)
        assert dst.list_datasets() == []
    # a complete dataset may be added to a group store, but a public one takes only promoted versions
    S.add(write_dataset(tmp_path / "g.h5", 5, public_meta()), "complete", store=group)
    with pytest.raises(PolicyError, match="promote"):
        S.add(write_dataset(tmp_path / "g.h5", 5, public_meta()), "complete", store=public)
    monkeypatch.setenv("MLDS_STORE", public.root)
    from mlds.cli import run

    assert run(["add", str(tmp_path / "e.h5"), "-d", "viaenv"]) == 2
    assert public.list_datasets() == []


# ----------------------------------------------------------------- add validates its input first
def _tamper(path: Path, fn) -> Path:
    with h5py.File(path, "r+") as h:
        fn(h)
    return path


@pytest.mark.parametrize("case", ["negative-n_atoms", "integer-positions", "offsets-past-arrays", "huge-forces"])
def test_add_refuses_invalid_datasets_before_storing(local, tmp_path, case):
    f = write_dataset(tmp_path / "a.h5", 4)

    def negative(h):
        h["frames/n_atoms"][0] = -3

    def int_positions(h):
        pos = h["atoms/positions"][...]
        del h["atoms/positions"]
        h.create_dataset("atoms/positions", data=pos.astype(np.int64), chunks=True, maxshape=(None, 3))
        h["atoms/positions"].attrs["unit"] = "angstrom"

    def offsets(h):
        h["frames/atom_offset"][-1] = 10 ** 6

    def huge(h):
        del h["atoms/forces"]
        h.create_dataset("atoms/forces", shape=(10 ** 12, 3), dtype="<f8", chunks=(16384, 3), maxshape=(None, 3))
        h["atoms/forces"].attrs["unit"] = "eV/angstrom"

    _tamper(f, {"negative-n_atoms": negative, "integer-positions": int_positions,
                "offsets-past-arrays": offsets, "huge-forces": huge}[case])
    before = sorted(p.name for p in Path(local.root).rglob("*") if p.is_file() and "objects" in p.parts)
    with pytest.raises(MldsError) as info:
        S.add(f, "bad")
    assert "nothing was stored" in str(info.value) and "\n" not in str(info.value)
    after = sorted(p.name for p in Path(local.root).rglob("*") if p.is_file() and "objects" in p.parts)
    assert after == before and local.read_ref("bad", "latest") is None


# ----------------------------------------------------------------- promote and group remotes
def test_promote_is_not_blocked_by_an_unreachable_group_remote(local, tmp_path, config_home, sftp_server):
    add_remote("lab", str(tmp_path / "lab"), tier="group")
    add_remote("pub", str(tmp_path / "pub"), tier="public")
    # a second group remote that cannot be reached (nothing listens on that port)
    from mlds.remotes.config import add_remote as configure

    configure("deadlab", "sftp://mlds@127.0.0.1:9/none", tier="group",
              options=dict(sftp_server.remote_options, timeout=2))
    S.add(write_dataset(tmp_path / "a.h5", 5, public_meta()), "sio")
    S.promote("sio", "lab")
    assert S.check_promotion("sio", "pub") == []
    S.promote("sio", "pub")  # lab vouches; deadlab being down does not matter
    assert S.open_store("pub").read_ref("sio", "latest") is not None
    # when no reachable group remote vouches, the message names the unreachable one, not the public remote
    S.add(write_dataset(tmp_path / "b.h5", 6, public_meta()), "sio")
    problems = S.check_promotion("sio", "pub")
    assert any("deadlab" in p and "unreachable" in p for p in problems), problems
    with pytest.raises(PolicyError) as info:
        S.promote("sio", "pub")
    assert "deadlab" in str(info.value) and "'pub'" not in str(info.value)


# ----------------------------------------------------------------- credentials in option values
@pytest.mark.parametrize("key,value", [("endpoint_url", "http://user:s3cr3tv4lue@host:9000"),
                                        ("client_kwargs.endpoint_url", "https://AKIA:s3cr3tv4lue@s3.example.org"),
                                        ("api_url", "https://TOKENVALUE@api.rdm.nii.ac.jp/v2/")])
def test_credentials_in_option_values_are_refused(config_home, key, value):
    from mlds.remotes.config import ConfigError, add_remote as configure, list_remotes, parse_option_values

    opts = parse_option_values([f"{key}={value}"])
    with pytest.raises(ConfigError) as info:
        configure("s3r", "s3://bucket/p", options=opts)
    assert "s3cr3tv4lue" not in str(info.value) and "TOKENVALUE" not in str(info.value)
    assert list_remotes() == []


def test_fsck_and_gc_leave_other_tools_folders_alone(local, tmp_path):
    """Top-level folders a store does not know (the ingest index, caches) are neither checked nor collected."""
    S.add(write_dataset(tmp_path / "a.h5", 5), "sio")
    for rel in ("ingest/seen.json", "cache/other/x.bin", "whatever/y"):
        p = Path(local.root) / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"not an object")
    assert S.fsck()["ok"]
    S.gc(grace_seconds=0)
    assert all((Path(local.root) / rel).exists() for rel in ("ingest/seen.json", "cache/other/x.bin", "whatever/y"))


def test_remote_list_does_not_show_credentials_a_hand_written_config_holds(config_home, capsys):
    from mlds.cli import run

    (config_home / "config.toml").write_text(
        '[remotes.old]\nurl = "s3://bucket/p"\n[remotes.old.options]\nendpoint_url = "http://user:s3cr3tv4lue@host:9000"\n')
    assert run(["remote", "list"]) == 0
    out = capsys.readouterr().out
    assert "old" in out and "s3cr3tv4lue" not in out


def test_push_never_spreads_a_local_object_changed_since_it_was_verified(local, folder_remote, tmp_path):
    r = S.add(write_dataset(tmp_path / "a.h5", 10), "sio")
    shard = mf.load(local, r["manifest"])["shards"][0]["sha256"]
    p = Path(local.object_path(shard))
    data = bytearray(p.read_bytes())
    data[-50] ^= 0xFF  # same size: only the hash can tell
    os.chmod(p, 0o644)
    p.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="corrupt"):
        S.push("sio", folder_remote)
    assert not folder_remote.has_object(shard) and folder_remote.read_ref("sio", "latest") is None
