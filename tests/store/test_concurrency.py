"""Concurrent writers: exactly one winner per race on every backend, nothing published by a loser.

The race runs on the real servers (a folder, moto's S3, an SFTP server, the GakuNin RDM
stand-in with the real commit semantics), each pusher with its own connection.  The SFTP
server honours O_EXCL loosely and the RDM stand-in widens the gap between a create's name
check and its commit, the strictest behaviour each backend is documented to have.
"""

from __future__ import annotations

import contextlib
import threading
import uuid

import pytest

import mlds.store as S
from mlds.errors import ConflictError, RemoteError
from mlds.store import sync
from mlds.store.store import Store

from .conftest import add_remote, write_dataset

N_PUSHERS = 3
ROUNDS = 20


def _contenders(tmp_path, n=N_PUSHERS):
    out = []
    for i in range(n):
        st = Store.at_path(tmp_path / f"pusher{i}").init("personal")
        S.add(write_dataset(tmp_path / f"p{i}.h5", 2, start=100 * i), "d", f"from pusher {i}", store=st)
        out.append(st)
    return out


def _race_rounds(base: Store, locals_: list[Store], rounds: int = ROUNDS) -> None:
    """``rounds`` races of every pusher against the others for ``d@v1``/``d@latest`` on one remote store.

    Each pusher has its own client (as separate processes would).  Between rounds the tags are removed
    again; the objects stay, so every later round is a race between commits only -- the part that
    needs the backend's atomic primitive.
    """
    root = f"{base.root}/race-{uuid.uuid4().hex[:8]}"
    check = Store(base.fs, root, name=base.name, options=base.options).init("personal")
    fs = base.fs
    remotes = [Store(type(fs)(*getattr(fs, "storage_args", ()), **{**fs.storage_options, "skip_instance_cache": True}),
                     root, name=base.name, options=base.options) for _ in locals_]
    for k in range(rounds):
        go = threading.Barrier(len(locals_), timeout=60)
        results: list = [None] * len(locals_)

        def push(i):
            go.wait()
            try:
                results[i] = S.push("d", remotes[i], store=locals_[i])
            except ConflictError as err:
                results[i] = err
            except Exception as err:  # noqa: BLE001 - anything else is a failure of the test
                results[i] = repr(err)

        threads = [threading.Thread(target=push, args=(i,)) for i in range(len(locals_))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        won = [i for i, r in enumerate(results) if isinstance(r, dict)]
        lost = [r for r in results if isinstance(r, ConflictError)]
        assert len(won) == 1 and len(lost) == len(locals_) - 1, (k, results)
        assert all("nothing was published" in str(e) and "push again" in str(e) for e in lost), lost
        winner = locals_[won[0]].read_ref("d", "latest")
        assert check.list_refs("d") == {"v1": winner, "latest": winner}, k
        assert not [p for p in check.fs.find(check.path("locks"))], k  # every lock released
        for tag in ("v1", "latest"):  # next round: the tags are free again
            check.delete_ref("d", tag)
        with contextlib.suppress(FileNotFoundError):
            check.fs.rm_file(check.path("catalog.json"))


def test_concurrent_pushers_folder(local, tmp_path, config_home):
    base = add_remote("race", str(tmp_path / "remote"))
    _race_rounds(base, _contenders(tmp_path))


def test_concurrent_pushers_s3(local, tmp_path, s3_env, s3_bucket, config_home):
    base = add_remote("race", s3_env.url(s3_bucket, "store"))
    _race_rounds(base, _contenders(tmp_path))


def test_concurrent_pushers_sftp_with_loose_o_excl(local, tmp_path, sftp_server, config_home):
    base = add_remote("race", sftp_server.url(f"/race-{uuid.uuid4().hex[:8]}"), options=sftp_server.remote_options)
    sftp_server.loose_excl = True
    try:
        _race_rounds(base, _contenders(tmp_path))
    finally:
        sftp_server.loose_excl = False


@pytest.fixture(scope="module")
def openssh_server(tmp_path_factory):
    from tests.servers import openssh

    reason = openssh.unavailable_reason()
    if reason:
        pytest.skip(reason)
    server = openssh.start_sshd(tmp_path_factory.mktemp("sshd"))
    yield server
    server.stop()


def test_concurrent_pushers_sftp_on_openssh(local, tmp_path, openssh_server, config_home):
    """The same race on Debian's sshd (internal-sftp): the SFTP server users actually have."""
    srv = openssh_server
    root = srv.root / f"race-{uuid.uuid4().hex[:8]}"
    options = {"key_file": srv.key_file, "known_hosts_file": srv.known_hosts, "host_key_policy": "strict",
               "allow_agent": False, "look_for_keys": False}
    base = add_remote("race", f"sftp://{srv.user}@{srv.host}:{srv.port}{root}", options=options)
    _race_rounds(base, _contenders(tmp_path))


def test_concurrent_pushers_rdm_real_commit_semantics(local, tmp_path, config_home, monkeypatch):
    from tests.servers.rdm_server import TOKEN_ADMIN, RDMServer

    with RDMServer.default() as srv:
        monkeypatch.setenv("MLDS_RDM_TOKEN", TOKEN_ADMIN)
        monkeypatch.setenv("MLDS_RDM_TOKEN_FILE", str(tmp_path / "no-token-file"))
        srv.faults.commit_delay = 0.02  # a create's name check and its commit are apart, as on the service
        base = add_remote("race", "rdm://abcde/osfstorage/race",
                          options={"api_url": srv.api_url, "backoff": 0.001, "max_backoff": 0.01})
        _race_rounds(base, _contenders(tmp_path))


# ----------------------------------------------------------------- one commit: every tag or none
def _race_during_transfer(monkeypatch, other):
    """Run ``other()`` once, while the next push is between reading the remote refs and committing."""
    real = sync.transfer
    done = []

    def transfer(*a, **kw):
        if not done:
            done.append(True)
            other()
        return real(*a, **kw)

    monkeypatch.setattr(sync, "transfer", transfer)


def test_push_of_several_tags_that_conflicts_publishes_none(local, folder_remote, tmp_path, monkeypatch):
    """A pushes v2 while B pushes v2'+v3': B is told of the conflict and the remote shows none of B's tags."""
    S.add(write_dataset(tmp_path / "a.h5", 5), "sio")
    S.push("sio", folder_remote)
    alice, bob = (Store.at_path(tmp_path / w).init() for w in ("alice", "bob"))
    for st in (alice, bob):
        S.pull("sio", folder_remote, store=st)
    S.add(write_dataset(tmp_path / "b.h5", 7), "sio", store=alice)
    S.add(write_dataset(tmp_path / "c.h5", 8), "sio", store=bob)
    S.add(write_dataset(tmp_path / "d.h5", 9), "sio", store=bob)
    S.tag("sio@v3", "paper", store=bob)
    _race_during_transfer(monkeypatch, lambda: S.push("sio", Store.at_path(folder_remote.root, name="origin"),
                                                      store=alice))
    with pytest.raises(ConflictError) as info:
        S.push("sio@paper", folder_remote, store=bob)  # tags paper, v3, latest
    refs = folder_remote.list_refs("sio")
    assert refs == {"v1": refs["v1"], "v2": alice.read_ref("sio", "v2"), "latest": alice.read_ref("sio", "v2")}
    assert "nothing was published" in str(info.value)
    assert S.fsck(folder_remote)["ok"]


def test_promote_racing_push_leaves_no_orphan_version(local, tmp_path, config_home, monkeypatch):
    from .conftest import group_meta

    grp = add_remote("grp", str(tmp_path / "group"), tier="group")
    S.add(write_dataset(tmp_path / "a.h5", 5, group_meta()), "sio")
    S.promote("sio", "grp")
    other = Store.at_path(tmp_path / "other").init()
    S.pull("sio", "grp", store=other)
    S.add(write_dataset(tmp_path / "b.h5", 6, group_meta()), "sio", store=other)
    S.add(write_dataset(tmp_path / "b2.h5", 8, group_meta()), "sio", store=other)
    S.add(write_dataset(tmp_path / "c.h5", 7, group_meta()), "sio")
    # the other writer pushes its v3 (tags v3 + latest) while our promote of v2 is under way
    _race_during_transfer(monkeypatch, lambda: S.push("sio", "grp", store=other))
    with pytest.raises(ConflictError) as info:
        S.promote("sio@v2", "grp")
    # the group remote shows the other writer's v3 as latest; our v2 is nowhere tagged (v2 tags are
    # immutable on a group remote: a v2 left behind would block everyone's v2 forever)
    refs = grp.list_refs("sio")
    assert set(refs) == {"v1", "v3", "latest"} and refs["latest"] == other.read_ref("sio", "v3")
    assert "nothing was published" in str(info.value)


def test_local_add_race_gives_add_advice(local, tmp_path, monkeypatch):
    from mlds.store import manifest as mf

    S.add(write_dataset(tmp_path / "a.h5", 5), "sio")
    real_put = mf.put
    done = []

    def put(store, manifest):  # another add commits v2 while ours is writing its manifest
        if not done:
            done.append(True)
            S.add(write_dataset(tmp_path / "c.h5", 6), "sio", "the other add")
        return real_put(store, manifest)

    monkeypatch.setattr(mf, "put", put)
    with pytest.raises(ConflictError) as info:
        S.add(write_dataset(tmp_path / "b.h5", 7), "sio", "ours")
    msg = str(info.value)
    assert "run the add again" in msg and "push" not in msg and "remote" not in msg
    assert [e["message"] for e in S.log("sio")] == ["the other add", ""]


def test_s3_server_without_conditional_writes_is_detected(local, tmp_path, s3_env, s3_bucket, config_home,
                                                           monkeypatch):
    """An S3-compatible server that ignores If-None-Match/If-Match: the store notices (probe), warns once,
    and falls back to write-wait-read-back locks, which still leave one winner per race here."""
    import importlib
    import warnings

    import s3fs

    real_open = s3fs.S3FileSystem._open

    def ignoring_open(self, path, mode="rb", *a, **kw):  # If-None-Match dropped on the floor
        return real_open(self, path, mode.replace("x", "w"), *a, **kw)

    monkeypatch.setattr(s3fs.S3FileSystem, "_open", ignoring_open)
    filesystems = importlib.import_module("mlds.remotes.filesystems")
    if hasattr(filesystems, "_s3_class"):
        monkeypatch.setattr(filesystems._s3_class(), "mlds_put_if", lambda self, path, data, etag: self.pipe_file(path, data))
    base = add_remote("race", s3_env.url(s3_bucket, "store"), options={"lock_settle_seconds": 0.2})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        locks = importlib.import_module("mlds.store.locks") if importlib.util.find_spec("mlds.store.locks") else None
        if locks is not None:
            monkeypatch.setattr(locks, "_probe_cache", {})
            monkeypatch.setattr(locks, "_warned", set())
        _race_rounds(base, _contenders(tmp_path), rounds=3)
    assert any("best-effort" in str(w.message) for w in caught)


def test_s3_push_locking_during_upload_publishes_only_complete_uploads(local, tmp_path, s3_env, s3_bucket,
                                                                       config_home, monkeypatch):
    """On S3 a small push takes its locks and re-reads its refs while its objects go up (sync.push).
    An upload that fails under those locks publishes nothing and gives the locks back; a rival that
    commits first (while our objects go up) makes ours a conflict, with exactly one winner."""
    remote = add_remote("s3", s3_env.url(s3_bucket, "overlap"))
    S.add(write_dataset(tmp_path / "a.h5", 3), "sio")
    real_alongside, real_transfer = sync._commit_alongside, sync.transfer
    seen: list = []

    def failing(*a, **kw):
        seen.append(real_alongside(a[1], kw["need"]))
        raise OSError("connection reset while uploading")

    monkeypatch.setattr(sync, "transfer", failing)
    with pytest.raises(RemoteError, match="connection reset"):
        S.push("sio", "s3")
    assert seen == [True]  # the overlapped path ran
    assert remote.list_refs("sio") == {}
    assert not remote.fs.find(remote.path("locks"))
    monkeypatch.setattr(sync, "transfer", real_transfer)
    rival = Store.at_path(tmp_path / "rival").init()
    S.add(write_dataset(tmp_path / "b.h5", 4, start=50), "sio", store=rival)
    ran: list = []

    def rival_first(remote_, need):  # the rival's whole push lands after our first round, before our commit
        if not ran:
            ran.append(True)
            S.push("sio", "s3", store=rival)
        ok = real_alongside(remote_, need)
        ran.append(ok)
        return ok

    monkeypatch.setattr(sync, "_commit_alongside", rival_first)
    with pytest.raises(ConflictError, match="nothing was published"):
        S.push("sio", "s3")
    assert ran == [True, True, True]  # both pushes took the overlapped path
    refs = remote.list_refs("sio")
    assert refs == {"v1": rival.read_ref("sio", "v1"), "latest": rival.read_ref("sio", "v1")}
    assert not remote.fs.find(remote.path("locks"))
