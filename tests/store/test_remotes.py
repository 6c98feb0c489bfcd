"""The same push/pull over real protocol servers on loopback: S3 (moto), SFTP (asyncssh), HTTP mirror."""

from __future__ import annotations

import uuid
import numpy as np
import pytest

import mlds
import mlds.store as S
from mlds.errors import ConflictError, IntegrityError, RemoteError
from mlds.store import manifest as mf
from mlds.store.store import Store

from .conftest import add_remote, assert_pull_of_endless_object_refused, write_dataset


def _round_trip(local, name, remote, tmp_path):
    S.add(write_dataset(tmp_path / "a.h5", 60), "sio", "v1")
    first = S.push("sio", name)
    assert first["sent_objects"] == 4  # 3 shards + manifest
    r2 = S.add(write_dataset(tmp_path / "b.h5", 70), "sio", "v2")
    inc = S.push("sio", name)
    assert inc["sent_objects"] == 2 and inc["sent_bytes"] == r2["new_bytes"] + len(local.read_object(r2["manifest"]))
    assert S.push("sio", name)["sent_objects"] == 0
    fresh = Store.at_path(tmp_path / f"fresh-{name}").init()
    S.pull("sio", name, store=fresh)
    with S.open_ref("sio@v2", store=fresh) as ds, mlds.open(tmp_path / "b.h5") as src:
        np.testing.assert_array_equal(ds.array("forces"), src.array("forces"))
    assert S.fsck(name)["ok"]
    assert [d["dataset"] for d in S.ls(name)] == ["sio"]
    return r2


def test_s3_round_trip_and_corruption(local, tmp_path, s3_env, s3_bucket, config_home):
    remote = add_remote("s3r", s3_env.url(s3_bucket, "store"))
    assert remote.atomic_put  # object store: a put is atomic, no staging rename needed
    r2 = _round_trip(local, "s3r", remote, tmp_path)
    # corrupt one shard on the server
    shard = mf.load(local, r2["manifest"])["shards"][-1]["sha256"]
    remote.fs.pipe_file(remote.object_path(shard), b"garbage")
    fresh = Store.at_path(tmp_path / "fresh2").init()
    with pytest.raises(IntegrityError, match=shard[2:]):
        S.pull("sio", "s3r", store=fresh)
    assert not fresh.has_object(shard) and fresh.read_ref("sio", "latest") is None
    bad = [k for k, _ in S.fsck("s3r")["bad"]]
    assert bad == [Store.object_key(shard)]


def test_s3_push_sends_preloaded_new_shards_only_while_their_stamp_holds(local, tmp_path, s3_env, s3_bucket,
                                                                           config_home, monkeypatch):
    """A push to S3 reads the shards new in its version (not its parent's) while its first round is in
    flight and sends those bytes; a shard changed since it was verified is not sent from memory."""
    from mlds.store import transfer

    remote = add_remote("s3p", s3_env.url(s3_bucket, "store"))
    taken: list[tuple[str, bool]] = []
    real_take = transfer.Preloaded.take

    def take(self, h, size):
        data = real_take(self, h, size)
        taken.append((h, data is not None))
        return data

    monkeypatch.setattr(transfer.Preloaded, "take", take)
    r1 = S.add(write_dataset(tmp_path / "a.h5", 30), "sio", "v1")
    S.push("sio", "s3p")
    assert sorted(h for h, hit in taken if hit) == sorted(mf.shard_hashes(mf.load(local, r1["manifest"])))
    taken.clear()
    r2 = S.add(write_dataset(tmp_path / "b.h5", 5, start=30), "sio", append=True)
    new = set(mf.shard_hashes(mf.load(local, r2["manifest"]))) - set(mf.shard_hashes(mf.load(local, r1["manifest"])))
    assert new and {h for h, hit in taken} == set()  # (nothing taken before the push)
    S.push("sio", "s3p")
    assert {h for h, hit in taken if hit} == new
    fresh = Store.at_path(tmp_path / "fresh").init()
    S.pull("sio", "s3p", store=fresh)
    assert all(open(fresh.object_path(h), "rb").read() == open(local.object_path(h), "rb").read() for h in new)
    # a stamp that no longer matches: not sent from memory (the ordinary path hashes it and refuses a change)
    sizes = {h: local.object_size(h) for h in new}
    monkeypatch.setattr(Store, "stamp_matches", lambda self, h, size: False)
    pre = transfer.Preloaded(local, list(sizes.items()))
    assert all(pre.take(h, size) is None for h, size in sizes.items())


def test_s3_exclusive_lock_and_conflict(local, tmp_path, s3_env, s3_bucket, config_home):
    remote = add_remote("s3r", s3_env.url(s3_bucket, "store"))
    path = remote.path("locks/x/latest.lock")
    with remote.lock("x", "latest"):
        with pytest.raises(FileExistsError):
            with remote.fs.open(path, "xb") as fh:  # If-None-Match: * on the server
                fh.write(b"{}")
        remote.options["lock_wait_seconds"] = 0.2
        with pytest.raises(ConflictError, match="locked"):
            with S.open_store("s3r").lock("x", "latest", wait=0.2):
                pass
    assert not remote.fs.exists(path)


def test_sftp_round_trip(local, tmp_path, sftp_server, config_home):
    url = sftp_server.url(f"/stores/{uuid.uuid4().hex[:8]}")
    remote = add_remote("lab", url, options=sftp_server.remote_options)
    assert not remote.atomic_put  # POSIX-like: staged in tmp/ and renamed
    _round_trip(local, "lab", remote, tmp_path)
    root = sftp_server.root / url.split(":", 2)[2].split("/", 1)[1]
    assert not any((root / "tmp").glob("*"))  # no staging leftovers


def test_http_mirror_pull_and_clone(local, tmp_path, http_mirror_factory, config_home):
    served = Store.at_path(tmp_path / "served", name="pub").init("personal")
    S.add(write_dataset(tmp_path / "a.h5", 30), "sio")
    S.add(write_dataset(tmp_path / "b.h5", 35), "sio")
    S.push("sio", served, "v1")
    S.push("sio", served)
    mirror = http_mirror_factory(served.root)
    add_remote("mirror", mirror.url, tier="public", init=False)
    assert sorted(S.open_store("mirror").list_refs("sio")) == ["latest", "v1", "v2"]  # via catalog.json
    fresh = Store.at_path(tmp_path / "fresh").init()
    S.pull("sio", "mirror", store=fresh)
    with S.open_ref("sio@v1", store=fresh) as ds:
        assert len(ds) == 30
    res = S.clone("mirror", tmp_path / "clone")
    assert res["datasets"] == ["sio"]
    assert S.fsck(Store.at_path(tmp_path / "clone"))["ok"]
    add_remote("mirror-rw", mirror.url, tier="personal", init=False)
    with pytest.raises(RemoteError, match="read-only"):
        S.push("sio", "mirror-rw")


def test_sftp_lock_is_exclusive(local, tmp_path, sftp_server, config_home):
    remote = add_remote("lab", sftp_server.url(f"/stores/{uuid.uuid4().hex[:8]}"), options=sftp_server.remote_options)
    path = remote.path("locks/x/latest.lock")
    with remote.lock("x", "latest"):
        with pytest.raises(OSError):  # SSH_FXF_EXCL
            with remote.fs.open(path, "xb") as fh:
                fh.write(b"{}")
        with pytest.raises(ConflictError, match="locked"):
            with S.open_store("lab").lock("x", "latest", wait=0.2):
                pass
    assert not remote.fs.exists(path)



def test_pull_from_a_mirror_streaming_an_object_forever_fails(local, tmp_path, http_mirror_factory):
    """An HTTP mirror whose object never ends (chunked, no length): pull stops at the manifest's size."""
    served = Store.at_path(tmp_path / "served", name="pub").init("personal")
    r = S.add(write_dataset(tmp_path / "a.h5", 10), "sio")
    S.push("sio", served)
    shard = mf.load(local, r["manifest"])["shards"][0]["sha256"]
    mirror = http_mirror_factory(served.root)
    mirror.endless.add("/" + Store.object_key(shard))
    assert_pull_of_endless_object_refused(mirror.url, tmp_path / "fresh")
    fresh = Store.at_path(tmp_path / "fresh")
    assert not fresh.has_object(shard) and fresh.read_ref("sio", "latest") is None
