"""open_remote_fs + translate_errors against real servers (moto S3, asyncssh SFTP, HTTP)."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import asyncssh
import pytest

from mlds.errors import AuthError, ConflictError, RemoteError
from mlds.remotes.config import Remote
from mlds.remotes.filesystems import open_remote_fs, translate_errors


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _round_trip(remote: Remote) -> None:
    """What the store does: write into new 'directories', read back, list,
    rename, create-if-absent, delete - with no backend-specific code."""
    fs, root = open_remote_fs(remote)
    with translate_errors(remote):
        obj = f"{root}/objects/sha256/ab/cdef"
        fs.pipe_file(obj, b"shard bytes")
        assert fs.cat_file(obj) == b"shard bytes"
        assert fs.exists(obj) and fs.info(obj)["size"] == 11
        tmp = f"{root}/refs/ds/.v1.tmp"
        fs.pipe_file(tmp, b"manifest-hash")
        fs.mv(tmp, f"{root}/refs/ds/v1")
        assert not fs.exists(tmp)
        assert sorted(p.rsplit("/", 1)[1] for p in fs.ls(f"{root}/refs/ds", detail=False)) == ["v1"]
        assert fs.cat_file(f"{root}/refs/ds/v1") == b"manifest-hash"
        # create-if-absent is atomic and uniform across backends
        fs.pipe_file(f"{root}/refs/ds/v2", b"h2", mode="create")
        with pytest.raises(FileExistsError):
            fs.pipe_file(f"{root}/refs/ds/v2", b"other", mode="create")
        assert fs.cat_file(f"{root}/refs/ds/v2") == b"h2"
        with fs.open(f"{root}/locks/ds/v3.lock", "xb") as fh:
            fh.write(b"lock")
        with pytest.raises(FileExistsError):
            with fs.open(f"{root}/locks/ds/v3.lock", "xb") as fh:
                fh.write(b"other")
        assert fs.cat_file(f"{root}/locks/ds/v3.lock") == b"lock"
        fs.rm_file(f"{root}/locks/ds/v3.lock")
        with pytest.raises(FileNotFoundError):
            fs.cat_file(f"{root}/refs/ds/missing")
        fs.rm(f"{root}/refs/ds/v2")
        assert not fs.exists(f"{root}/refs/ds/v2")
        assert {p.rsplit("/", 1)[1] for p in fs.find(root)} == {"cdef", "v1"}


def test_local_round_trip(tmp_path: Path):
    _round_trip(Remote("here", str(tmp_path / "store")))
    _round_trip(Remote("here-url", f"file://{tmp_path}/store2"))


def test_s3_round_trip(s3_bucket: str):
    _round_trip(Remote("lab-s3", f"s3://{s3_bucket}/mlds/store", tier="group"))


def test_s3_if_match_conflict(s3_bucket: str):
    remote = Remote("lab-s3", f"s3://{s3_bucket}/store")
    fs, root = open_remote_fs(remote)
    with translate_errors(remote):
        fs.pipe_file(f"{root}/refs/x", b"1")
        etag = fs.info(f"{root}/refs/x")["ETag"]
        fs.pipe_file(f"{root}/refs/x", b"2", IfMatch=etag)
        with pytest.raises(ConflictError, match="lab-s3"):
            with translate_errors(remote):
                fs.pipe_file(f"{root}/refs/x", b"3", IfMatch=etag)
        assert fs.cat_file(f"{root}/refs/x") == b"2"


def test_sftp_round_trip(sftp_server):
    _round_trip(Remote("login", sftp_server.url("/data/store"), options=sftp_server.remote_options))
    assert (sftp_server.root / "data" / "store" / "refs" / "ds" / "v1").read_bytes() == b"manifest-hash"


def test_sftp_password_from_env(sftp_server, monkeypatch):
    monkeypatch.setenv("MLDS_SFTP_PASSWORD", sftp_server.password)
    opts = {k: v for k, v in sftp_server.remote_options.items() if k != "key_file"}
    fs, root = open_remote_fs(Remote("login", sftp_server.url("/pw"), options=opts))
    fs.pipe_file(f"{root}/a", b"x")
    assert fs.cat_file(f"{root}/a") == b"x"


def _assert_one_line(err: Exception, remote: str, *secrets: str) -> str:
    msg = str(err)
    assert "\n" not in msg and f"'{remote}'" in msg, msg
    for s in secrets:
        assert s not in msg, msg
    return msg


def test_sftp_wrong_password_is_auth_error(sftp_server, monkeypatch):
    secret = "wrong-password-6f1e"
    monkeypatch.setenv("MLDS_SFTP_PASSWORD", secret)
    opts = {k: v for k, v in sftp_server.remote_options.items() if k != "key_file"}
    with pytest.raises(AuthError) as info:
        open_remote_fs(Remote("login", sftp_server.url("/data"), options=opts))
    msg = _assert_one_line(info.value, "login", secret)
    assert "MLDS_SFTP_PASSWORD" in msg


def test_sftp_wrong_key_is_auth_error(sftp_server, tmp_path):
    other = asyncssh.generate_private_key("ssh-ed25519")
    other.write_private_key(str(tmp_path / "id"), format_name="openssh")
    opts = dict(sftp_server.remote_options, key_file=str(tmp_path / "id"))
    with pytest.raises(AuthError) as info:
        open_remote_fs(Remote("login", sftp_server.url("/data"), options=opts))
    _assert_one_line(info.value, "login")


def test_sftp_host_key_mismatch_refused(sftp_server, tmp_path):
    fake = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()
    kh = tmp_path / "known_hosts"
    kh.write_text(f"[{sftp_server.host}]:{sftp_server.port} {fake}\n")
    opts = dict(sftp_server.remote_options, known_hosts_file=str(kh))
    with pytest.raises(AuthError, match="host key"):
        open_remote_fs(Remote("login", sftp_server.url("/data"), options=opts))


def test_s3_wrong_secret_is_auth_error(s3_bucket, monkeypatch):
    secret = "wrong-secret-8c2d9f"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    remote = Remote("lab-s3", f"s3://{s3_bucket}/store")
    fs, root = open_remote_fs(remote)
    for op in (lambda: fs.ls(root), lambda: fs.pipe_file(f"{root}/x", b"1"), lambda: fs.cat_file(f"{root}/x")):
        with pytest.raises(AuthError) as info:
            with translate_errors(remote):
                op()
        msg = _assert_one_line(info.value, "lab-s3", secret)
        assert f"s3://{s3_bucket}/store" in msg


def test_s3_unknown_key_is_auth_error(s3_bucket, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIANOTAREALKEY00000")
    remote = Remote("lab-s3", f"s3://{s3_bucket}/store")
    fs, root = open_remote_fs(remote)
    with pytest.raises(AuthError, match="access key not recognised") as info:
        with translate_errors(remote):
            fs.ls(root)
    _assert_one_line(info.value, "lab-s3", "AKIANOTAREALKEY00000"[4:] + "x")


def test_http_mirror_read_only(tmp_path, http_mirror_factory):
    store = tmp_path / "public"
    (store / "refs" / "ds").mkdir(parents=True)
    (store / "catalog.json").write_text(json.dumps({"datasets": ["ds"]}))
    (store / "refs" / "ds" / "v1").write_text("abc123")
    mirror = http_mirror_factory(store)
    remote = Remote("mirror", mirror.url + "/", tier="public")
    fs, root = open_remote_fs(remote)
    with translate_errors(remote):
        assert json.loads(fs.cat_file(f"{root}/catalog.json")) == {"datasets": ["ds"]}
        assert fs.cat_file(f"{root}/refs/ds/v1") == b"abc123"
        assert fs.info(f"{root}/refs/ds/v1")["size"] == 6
        assert fs.exists(f"{root}/catalog.json") and not fs.exists(f"{root}/refs/ds/v9")
        with pytest.raises(FileNotFoundError):
            fs.cat_file(f"{root}/refs/ds/v9")
    for write in (
        lambda: fs.pipe_file(f"{root}/refs/ds/v2", b"x"),
        lambda: fs.pipe(f"{root}/refs/ds/v2", b"x"),
        lambda: fs.put(str(store / "catalog.json"), f"{root}/c.json"),
        lambda: fs.rm(f"{root}/catalog.json"),
        lambda: fs.mv(f"{root}/catalog.json", f"{root}/c2.json"),
        lambda: fs.open(f"{root}/new", "wb"),
        lambda: fs.makedirs(f"{root}/d", exist_ok=True),
    ):
        with pytest.raises(RemoteError, match="read-only mirror") as info:
            write()
        _assert_one_line(info.value, "mirror")
    assert sorted(p.name for p in store.rglob("*")) == ["catalog.json", "ds", "refs", "v1"]


@pytest.mark.parametrize("scheme", ["sftp", "http", "s3"])
def test_unreachable_is_remote_error(scheme, tmp_path, monkeypatch):
    port = _closed_port()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAX")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t-unreachable")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    url, opts = {
        "sftp": (f"sftp://u@127.0.0.1:{port}/data", {"allow_agent": False, "look_for_keys": False, "timeout": 3}),
        "http": (f"http://127.0.0.1:{port}/store", {"timeout": 3}),
        "s3": ("s3://bucket/store", {"endpoint_url": f"http://127.0.0.1:{port}", "connect_timeout": 1, "max_attempts": 1}),
    }[scheme]
    remote = Remote("gone", url, options=opts)
    t0 = time.monotonic()
    with pytest.raises(RemoteError) as info:
        fs, root = open_remote_fs(remote)
        with translate_errors(remote):
            fs.cat_file(f"{root}/catalog.json")
    assert not isinstance(info.value, AuthError)
    msg = _assert_one_line(info.value, "gone", "s3cr3t-unreachable")
    assert "cannot reach" in msg
    assert time.monotonic() - t0 < 20


def _raise_in(remote: str, exc: BaseException):
    with translate_errors(remote, "s3://bucket/x"):
        raise exc


def test_translate_errors_classification():
    import aiohttp
    import botocore.exceptions
    import paramiko

    cases = [
        (aiohttp.ClientResponseError(None, (), status=403, message="Forbidden"), AuthError),
        (aiohttp.ClientResponseError(None, (), status=500, message="oops"), RemoteError),
        (botocore.exceptions.NoCredentialsError(), AuthError),
        (paramiko.AuthenticationException("Authentication failed."), AuthError),
        (paramiko.SSHException("Error reading SSH protocol banner"), RemoteError),
        (ConnectionRefusedError(111, "Connection refused"), RemoteError),
        (socket.gaierror(-2, "Name or service not known"), RemoteError),
    ]
    for exc, kind in cases:
        with pytest.raises(kind) as info:
            _raise_in("r", exc)
        _assert_one_line(info.value, "r")
    for exc in (FileNotFoundError("x"), FileExistsError("x"), KeyError("bug"), ValueError("bug")):
        with pytest.raises(type(exc)):
            _raise_in("r", exc)


def test_s3_large_object_read_in_parallel_ranges_and_uploads_verified_before_completion(s3_bucket, monkeypatch):
    """Large objects: ranged GETs handed out in order (a longer-than-declared object shows its extra
    byte); a multipart upload is completed only when the hash of what was sent matches, else aborted."""
    import hashlib
    import io
    import os

    from mlds.errors import IntegrityError
    from mlds.remotes import filesystems as F
    from mlds.store import transfer
    from mlds.store.store import Store

    remote = Remote("s3r", f"s3://{s3_bucket}/big")
    fs, root = open_remote_fs(remote)
    fs.mlds_parallel_get = True  # remote option parallel_get=true
    monkeypatch.setattr(F, "_PARALLEL_GET_MIN", 1 << 20)  # small sizes, same code paths
    monkeypatch.setattr(F, "_RANGE_PART", 1 << 20)
    data = os.urandom(5 * 1024 * 1024 + 123)
    fs.pipe_file(f"{root}/obj", data)
    reader = fs.mlds_open_stream(f"{root}/obj", len(data))
    assert isinstance(reader, F._S3RangeReader)
    assert b"".join(iter(lambda: reader.read(4 << 20), b"")) == data
    reader = fs.mlds_open_stream(f"{root}/obj", len(data) - 1000)
    assert len(b"".join(iter(lambda: reader.read(4 << 20), b""))) == len(data) - 999

    monkeypatch.setattr(transfer, "PART_SIZE", 5 * 1024 * 1024)  # S3's smallest part
    monkeypatch.setattr(transfer, "SINGLE_PUT_MAX", 10 * 1024 * 1024)
    store = Store(fs, root, name="s3r")
    body = os.urandom(12 * 1024 * 1024)
    h = hashlib.sha256(body).hexdigest()
    bad = bytearray(body)
    bad[-1] ^= 1
    with pytest.raises(IntegrityError, match="corrupt"):
        transfer.copy_stream(io.BytesIO(bytes(bad)), store, h, len(body), what="test")
    assert not store.has_object(h)
    bucket = s3_bucket
    assert not fs.call_s3("list_multipart_uploads", Bucket=bucket).get("Uploads")  # aborted, nothing left
    transfer.copy_stream(io.BytesIO(body), store, h, len(body), what="test")
    assert fs.cat_file(store.object_path(h)) == body


def test_s3_stream_hands_out_received_pieces_and_copies_them_verified(s3_bucket, tmp_path):
    """One streaming GET: ``read_parts`` never goes past what was asked (a piece is cut, the rest comes
    next), ``read`` joins; copied into a local store in pieces (one writev per block), the object is
    byte-identical, and a corrupt or longer object stores nothing."""
    import hashlib
    import os

    from mlds.errors import IntegrityError
    from mlds.remotes import filesystems as F
    from mlds.store import transfer
    from mlds.store.store import Store

    fs, root = open_remote_fs(Remote("s3r", f"s3://{s3_bucket}/stream"))
    data = os.urandom(9 * 1024 * 1024 + 77)
    fs.pipe_file(f"{root}/obj", data)
    with fs.mlds_open_stream(f"{root}/obj", len(data)) as reader:
        assert isinstance(reader, F._S3Stream)
        got, sizes = [], []
        while True:
            parts = reader.read_parts(1_000_003)
            if not parts:
                break
            sizes.append(sum(len(p) for p in parts))
            got += parts
        assert b"".join(got) == data and max(sizes) <= 1_000_003
    with fs.mlds_open_stream(f"{root}/obj", len(data)) as reader:
        assert reader.read(10) == data[:10] and reader.read() == data[10:]

    h = hashlib.sha256(data).hexdigest()
    src = Store(fs, root, name="s3r")
    fs.pipe_file(src.object_path(h), data)
    local = Store.at_path(tmp_path / "local").init()
    transfer.copy_object(src, local, h, len(data))
    assert open(local.object_path(h), "rb").read() == data
    bad = Store.at_path(tmp_path / "bad").init()
    fs.pipe_file(src.object_path("0" * 64), data)  # its name is not its hash
    with pytest.raises(IntegrityError, match="corrupt"):
        transfer.copy_object(src, bad, "0" * 64, len(data))
    with pytest.raises(IntegrityError, match="longer"):
        fs.pipe_file(src.object_path("1" * 64), data)
        transfer.copy_object(src, bad, "1" * 64, len(data) - 5)
    assert not list(bad.iter_objects()) and not os.listdir(bad.path("tmp"))
