"""fsspec ``rdm://`` filesystem against the local fake server."""

from __future__ import annotations

import hashlib
import os

import fsspec
import pytest

from mlds.errors import AuthError
from mlds.remotes.rdm.filesystem import RDMFileSystem
from tests.servers.rdm_server import TOKEN_ADMIN, TOKEN_READER


@pytest.fixture
def fs(srv):
    return fsspec.filesystem("rdm", token=TOKEN_ADMIN, api_url=srv.api_url, backoff=0.001,
                             skip_instance_cache=True)


def test_entry_point_and_open(srv):
    assert fsspec.get_filesystem_class("rdm") is RDMFileSystem
    opts = dict(token=TOKEN_ADMIN, api_url=srv.api_url)
    with fsspec.open("rdm://abcde/osfstorage/a/b.bin", "wb", **opts) as f:
        f.write(b"x" * 100)
        f.write(b"y" * 100)
    with fsspec.open("rdm://abcde/osfstorage/a/b.bin", "rb", **opts) as f:
        assert f.read() == b"x" * 100 + b"y" * 100
    # provider omitted -> default storage (osfstorage)
    with fsspec.open("rdm://abcde/a/b.bin", "rb", **opts) as f:
        f.seek(95)
        assert f.read(10) == b"xxxxxyyyyy"


def test_ls_info_cat_ranges(fs):
    fs.pipe("rdm://abcde/osfstorage/d/one.txt", b"0123456789")
    fs.pipe("abcde/osfstorage/d/two.txt", b"two")
    fs.mkdir("abcde/osfstorage/d/sub")
    assert fs.ls("rdm://abcde", detail=False) == ["abcde/osfstorage", "abcde/s3compatinstitutions"]
    assert sorted(fs.ls("abcde/osfstorage/d", detail=False)) == [
        "abcde/osfstorage/d/one.txt", "abcde/osfstorage/d/sub", "abcde/osfstorage/d/two.txt"]
    info = fs.info("rdm://abcde/d/one.txt")
    assert info["name"] == "abcde/osfstorage/d/one.txt" and info["type"] == "file" and info["size"] == 10
    assert info["sha256"] == hashlib.sha256(b"0123456789").hexdigest()
    assert info["md5"] == hashlib.md5(b"0123456789").hexdigest()
    assert info["version"] == 1 and info["etag"]
    assert fs.info("abcde/osfstorage/d/sub")["type"] == "directory"
    assert fs.isdir("abcde/osfstorage/d") and fs.isfile("abcde/osfstorage/d/one.txt")
    assert fs.ls("abcde/osfstorage/d/one.txt", detail=False) == ["abcde/osfstorage/d/one.txt"]
    assert fs.cat_file("abcde/osfstorage/d/one.txt", start=2, end=5) == b"234"
    assert fs.cat_file("abcde/osfstorage/d/one.txt", start=-3) == b"789"
    assert fs.cat_file("abcde/osfstorage/d/one.txt", start=8, end=100) == b"89"
    assert fs.cat_file("abcde/osfstorage/d/one.txt", start=20) == b""
    with fs.open("abcde/osfstorage/d/one.txt", block_size=4) as f:
        f.seek(3)
        assert f.read(4) == b"3456"
    assert fs.checksum("abcde/osfstorage/d/one.txt") == int(info["sha256"], 16)
    assert not fs.exists("abcde/osfstorage/nope") and not fs.exists("abcde/osfstorage/d/nope/deeper")
    with pytest.raises(FileNotFoundError):
        fs.info("abcde/osfstorage/nope")
    with pytest.raises(FileNotFoundError):
        fs.cat("abcde/osfstorage/d/nope")
    assert fs.find("abcde/osfstorage") == ["abcde/osfstorage/d/one.txt", "abcde/osfstorage/d/two.txt"]


def test_overwrite_makes_new_version_and_cache_stays_correct(fs):
    p = "abcde/osfstorage/v.txt"
    fs.pipe(p, b"v1")
    i1 = fs.info(p)
    fs.pipe(p, b"version two")  # no 409: a new version
    i2 = fs.info(p)
    assert (i1["version"], i2["version"]) == (1, 2)
    assert i1["etag"] != i2["etag"] and i2["size"] == 11
    assert fs.cat(p) == b"version two"
    assert fs.cat_file(p, version=1) == b"v1"
    with fs.open(p, "rb", version=1) as f:
        assert f.read() == b"v1"
    assert [v["version"] for v in fs.versions(p)] == ["2", "1"]
    # cache after writes, deletes, moves
    fs.ls("abcde/osfstorage")
    fs.pipe("abcde/osfstorage/w.txt", b"w")
    assert "abcde/osfstorage/w.txt" in fs.ls("abcde/osfstorage", detail=False)
    fs.rm("abcde/osfstorage/w.txt")
    assert "abcde/osfstorage/w.txt" not in fs.ls("abcde/osfstorage", detail=False)
    fs.mv(p, "abcde/osfstorage/moved/v2.txt")
    assert fs.ls("abcde/osfstorage", detail=False) == ["abcde/osfstorage/moved"]
    assert fs.ls("abcde/osfstorage/moved", detail=False) == ["abcde/osfstorage/moved/v2.txt"]
    assert fs.info("abcde/osfstorage/moved/v2.txt")["version"] == 2  # history moved along
    assert not fs.exists(p)


def test_changes_by_another_client_are_seen_on_miss(fs, srv):
    other = fsspec.filesystem("rdm", token=TOKEN_ADMIN, api_url=srv.api_url, skip_instance_cache=True)
    fs.ls("abcde/osfstorage")
    other.pipe("abcde/osfstorage/late.txt", b"late")
    assert fs.cat("abcde/osfstorage/late.txt") == b"late"


def test_put_get_mkdir_rm_mv(fs, tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(300_000))
    fs.put_file(str(src), "rdm://abcde/osfstorage/up/src.bin")
    dst = tmp_path / "dst.bin"
    fs.get_file("rdm://abcde/osfstorage/up/src.bin", str(dst))
    assert dst.read_bytes() == src.read_bytes()
    # recursive put/get through fsspec's generic machinery
    tree = tmp_path / "tree"
    (tree / "a" / "b").mkdir(parents=True)
    (tree / "a" / "f1").write_bytes(b"f1")
    (tree / "a" / "b" / "f2").write_bytes(b"f2")
    fs.put(str(tree) + "/", "abcde/osfstorage/tree", recursive=True)
    assert sorted(fs.find("abcde/osfstorage/tree")) == [
        "abcde/osfstorage/tree/a/b/f2", "abcde/osfstorage/tree/a/f1"]
    out = tmp_path / "out"
    fs.get("abcde/osfstorage/tree/", str(out), recursive=True)
    assert (out / "a" / "b" / "f2").read_bytes() == b"f2"
    fs.makedirs("abcde/osfstorage/x/y/z", exist_ok=True)
    assert fs.isdir("abcde/osfstorage/x/y/z")
    with pytest.raises(FileExistsError):
        fs.makedirs("abcde/osfstorage/x/y/z")
    with pytest.raises(IsADirectoryError):
        fs.rm("abcde/osfstorage/tree")
    fs.rm("abcde/osfstorage/tree", recursive=True)
    assert not fs.exists("abcde/osfstorage/tree")
    fs.rmdir("abcde/osfstorage/x/y/z")
    assert fs.ls("abcde/osfstorage/x/y") == []
    # mv into an existing directory, rename, replace an existing file
    fs.mv("abcde/osfstorage/up/src.bin", "abcde/osfstorage/x/")
    assert fs.exists("abcde/osfstorage/x/src.bin")
    fs.pipe("abcde/osfstorage/x/target.bin", b"old")
    fs.mv("abcde/osfstorage/x/src.bin", "abcde/osfstorage/x/target.bin")
    assert fs.cat("abcde/osfstorage/x/target.bin") == src.read_bytes()
    fs.cp_file("abcde/osfstorage/x/target.bin", "abcde/osfstorage/copy.bin")
    assert fs.info("abcde/osfstorage/copy.bin")["sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    # move a folder across providers
    fs.mv("abcde/osfstorage/x", "abcde/s3compatinstitutions/xx")
    assert fs.ls("abcde/s3compatinstitutions/xx", detail=False) == [
        "abcde/s3compatinstitutions/xx/y", "abcde/s3compatinstitutions/xx/target.bin"]


def test_institutional_only_project_default(srv):
    fs = RDMFileSystem(token=TOKEN_ADMIN, api_url=srv.api_url, skip_instance_cache=True)
    fs.pipe("rdm://fghij/data/x.bin", b"inst")
    assert fs.ls("fghij/s3compatinstitutions", detail=False) == ["fghij/s3compatinstitutions/data"]
    for i in range(7):  # next_token pages of 3
        fs.pipe(f"rdm://fghij/data/n{i}", b"n")
    fs.invalidate_cache()
    assert len(fs.ls("fghij/data")) == 8


def test_reader_fs(srv, fs):
    fs.pipe("abcde/osfstorage/r.txt", b"r")
    ro = RDMFileSystem(token=TOKEN_READER, api_url=srv.api_url, backoff=0.001, skip_instance_cache=True)
    assert ro.cat("abcde/r.txt") == b"r"
    with pytest.raises(AuthError) as ei:
        ro.pipe("abcde/r.txt", b"no")
    assert "403" in str(ei.value) and TOKEN_READER not in str(ei.value)
    with pytest.raises(PermissionError):
        ro.rm("abcde/r.txt")


def test_nfc_names(fs):
    import unicodedata
    nfd = unicodedata.normalize("NFD", "データ/ファイル.bin")
    fs.pipe("abcde/osfstorage/" + nfd, b"jp")
    nfc = unicodedata.normalize("NFC", "データ/ファイル.bin")
    assert fs.ls("abcde/osfstorage", detail=False) == ["abcde/osfstorage/" + nfc.split("/")[0]]
    assert fs.cat("abcde/osfstorage/" + nfd) == b"jp" == fs.cat("abcde/osfstorage/" + nfc)
