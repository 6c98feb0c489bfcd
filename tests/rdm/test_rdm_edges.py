"""GakuNin RDM messages and edge cases (issue 13), against the stand-in with the real commit semantics."""

from __future__ import annotations

import re
import warnings

import fsspec
import pytest

import mlds.store as S
from mlds.errors import AuthError, MldsError, RemoteError
from tests.servers.rdm_server import TOKEN_ADMIN
from tests.store.conftest import add_remote, public_meta, write_dataset

from .test_store_on_rdm import GROUP_URL, local, one_line, rdm_opts, server_tree  # noqa: F401 (fixture)


def _fs(srv, **kw):
    return fsspec.filesystem("rdm", token=TOKEN_ADMIN, api_url=srv.api_url, backoff=0.001, max_backoff=0.01,
                             skip_instance_cache=True, **kw)


def test_a_wrong_project_is_named_as_such_everywhere(srv, local, tmp_path, capsys):
    from mlds.cli import run
    from mlds.remotes.config import add_remote as configure

    configure("nope", "rdm://zzzzz/osfstorage/mlds", tier="group", options=rdm_opts(srv))
    S.add(write_dataset(tmp_path / "a.h5", 5, public_meta()), "sio", store=local)
    for op in (lambda: S.pull("sio", "nope", store=local), lambda: S.push("sio", "nope", store=local),
               lambda: S.ls("nope"), lambda: S.fsck("nope")):
        with pytest.raises(RemoteError) as info:
            op()
        assert "project zzzzz not found or not visible to this token" in str(info.value)
        assert "no dataset" not in str(info.value)
    capsys.readouterr()
    assert run(["remote", "check", "nope"]) == 2
    out, err = capsys.readouterr()
    assert "project zzzzz not found or not visible to this token" in one_line(err)
    assert "reachable: yes" not in out and "does not exist yet" not in out


def test_a_storage_the_project_lacks_is_refused(srv, local, tmp_path):
    add_remote("gd", "rdm://abcde/googledrive/mlds", tier="group", options=rdm_opts(srv), init=False)
    S.add(write_dataset(tmp_path / "a.h5", 5, public_meta()), "sio")
    before = server_tree(srv)
    with pytest.raises(RemoteError, match="has no storage 'googledrive'"):
        S.init("gd", tier="group")
    with pytest.raises(RemoteError, match="has no storage 'googledrive'"):
        S.push("sio", "gd")
    assert server_tree(srv) == before  # no folder "googledrive" appeared in osfstorage


def test_a_token_in_the_url_is_refused_and_never_sent(srv, local, tmp_path):
    from mlds.remotes.config import ConfigError, add_remote as configure

    secret = "tokvalue0123456789"
    with pytest.raises(ConfigError) as info:
        configure("leak", f"rdm://{secret}@abcde/osfstorage/mlds", options=rdm_opts(srv))
    assert secret not in str(info.value)
    n = len(srv.requests)
    with pytest.raises(AuthError) as info:
        _fs(srv).ls(f"rdm://{secret}@abcde/osfstorage")
    assert secret not in str(info.value)
    assert not [r for r in srv.requests[n:] if secret in r[2]]


def test_lock_release_is_retried_and_reported(srv, local, tmp_path):
    add_remote("group", GROUP_URL, tier="group", options=rdm_opts(srv, lock_release_backoff_seconds=0.001))
    S.add(write_dataset(tmp_path / "a.h5", 5, public_meta()), "sio")
    srv.faults.fail_next(2, status=500, methods=("DELETE",))  # the first releases fail once each
    S.push("sio", "group")
    remote = S.open_store("group")
    assert not remote.fs.find(remote.path("locks"))  # retried: nothing left behind
    assert all(r.remaining == 0 for r in srv.faults.rules)
    # a release that keeps failing is said, and the push itself still succeeded
    S.add(write_dataset(tmp_path / "b.h5", 6, public_meta()), "sio")
    srv.faults.fail_next(1000, status=500, methods=("DELETE",))
    from mlds.store.locks import LockReleaseWarning

    with pytest.warns(LockReleaseWarning, match="could not remove lock"):
        res = S.push("sio", "group")
    srv.faults.clear()
    assert res["tags"] == ["latest", "v2"] and remote.read_ref("sio", "latest") == res["manifest"]


def test_mv_after_a_lost_answer_succeeds(srv):
    fs = _fs(srv)
    fs.pipe("abcde/osfstorage/mv/a.bin", b"payload")
    fs.makedirs("abcde/osfstorage/mv/dest", exist_ok=True)
    srv.faults.lose_next_responses(1)  # the move happens, its answer never arrives; the retry gets a 404
    fs.mv("abcde/osfstorage/mv/a.bin", "abcde/osfstorage/mv/dest/b.bin")
    assert fs.cat("abcde/osfstorage/mv/dest/b.bin") == b"payload"
    assert not fs.exists("abcde/osfstorage/mv/a.bin")
    # ... but a failed move is still an error
    with pytest.raises((FileNotFoundError, MldsError)):
        fs.mv("abcde/osfstorage/mv/missing.bin", "abcde/osfstorage/mv/dest/c.bin")


def _listings(reqs):
    return [p for m, _, p, _ in reqs if m == "GET" and "/v1/resources/" in p and "?" not in p and p.endswith("/")]


def test_a_push_lists_each_folder_at_most_once_in_a_row_and_few_times(srv, local, tmp_path):
    add_remote("group", GROUP_URL, tier="group", options=rdm_opts(srv))
    S.add(write_dataset(tmp_path / "a.h5", 30, public_meta()), "sio", shard_max_frames=25)  # 2 shards
    n = len(srv.requests)
    S.push("sio", "group")
    reqs = srv.requests[n:]
    listings = _listings(reqs)
    assert not [a for a, b in zip(reqs, reqs[1:]) if a[0] == b[0] == "GET" and a[2] == b[2] and a[2].endswith("/")]
    assert len(listings) <= 10 and len(reqs) <= 45, (len(listings), len(reqs))  # 61 and 89 before


def test_quota_from_the_web_apps_endpoint_when_it_answers(srv, local):
    from mlds.remotes.rdm.auth import check

    srv.nodes["pubpj"].quota = 5 * 1024 ** 3
    res = check("rdm://pubpj/osfstorage/x", api_url=srv.api_url)
    assert (res.quota_max, res.quota_used) == (5 * 1024 ** 3, 0)
    assert any(re.match(r"quota: 0 of 5368709120 bytes used", line) for line in res.lines())
    # a private project: the endpoint wants a web login (a token is not accepted there, so none is sent)
    n = len(srv.requests)
    res = check("rdm://abcde/osfstorage/x", api_url=srv.api_url)
    assert res.quota_max is None and any("quota: not reported" in line for line in res.lines())
    quota_calls = [r for r in srv.requests[n:] if "get_creator_quota" in r[2]]
    assert quota_calls and not any(r[3] for r in quota_calls)  # no Authorization header went there
