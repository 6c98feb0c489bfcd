"""RDMClient against the local fake GakuNin RDM server."""

from __future__ import annotations

import hashlib
import os

import httpx
import pytest

from mlds.errors import AuthError, ConflictError, RemoteError
from mlds.remotes.rdm.client import (
    RDMClient,
    RDMIntegrityError,
    RDMNotFoundError,
    RDMProjectNotFound,
    RDMQuotaError,
)
from tests.servers.rdm_server import (
    TOKEN_ADMIN,
    TOKEN_OUTSIDER,
    TOKEN_READ_SCOPE,
    TOKEN_READER,
    TOKEN_WRITER,
)


def root(client, guid="abcde", name=None):
    provs = client.providers(guid)
    p = client.pick_provider(provs) if name is None else next(p for p in provs if p.name == name)
    return p.root()


def test_me_project_contributors_providers(client):
    me = client.me()
    assert me.id == "uadmn" and me.full_name == "Ada Admin"
    proj = client.project("abcde")
    assert proj.title == "DFT training data" and proj.permission == "admin" and not proj.public
    contribs = client.contributors("abcde")  # 3 per page -> exercises links.next
    assert {c["user"]: c["permission"] for c in contribs} == {
        "uadmn": "admin", "uwrtr": "write", "uread": "read"}
    provs = client.providers("abcde")
    assert [p.name for p in provs] == ["osfstorage", "s3compatinstitutions"]
    assert provs[1].for_institutions and not provs[0].for_institutions
    assert client.pick_provider(provs).name == "osfstorage"
    assert client.pick_provider(client.providers("fghij")).name == "s3compatinstitutions"


def test_links_are_discovered_not_built(client, srv):
    r = root(client)
    assert r.links["upload"].startswith(srv.files_url)
    assert r.links["new_folder"].endswith("?kind=folder")


def test_upload_update_download_versions(client):
    r = root(client)
    e = client.upload_new(r, "a.bin", b"one")
    assert e.kind == "file" and e.version == 1 and e.size == 3
    assert e.hashes["sha256"] == hashlib.sha256(b"one").hexdigest()
    assert e.hashes["md5"] == hashlib.md5(b"one").hexdigest()
    assert len(e.path.strip("/")) == 24  # opaque osfstorage id
    with pytest.raises(ConflictError) as ei:
        client.upload_new(r, "a.bin", b"two")
    assert isinstance(ei.value, FileExistsError)
    e2 = client.update(e, b"two!")
    assert e2.version == 2 and e2.etag != e.etag
    same = client.update(e2, b"two!")  # identical bytes: no new version
    assert same.version == 2
    assert client.read(e2) == b"two!"
    assert client.read(e2, start=1, end=3) == b"wo"
    assert client.read(e2, start=-2) == b"o!"
    assert client.read(e2, version=1) == b"one"
    vs = client.versions(e2)
    assert [v["version"] for v in vs] == ["2", "1"]
    assert vs[1]["hashes"]["sha256"] == hashlib.sha256(b"one").hexdigest()
    meta = client.metadata(e2)
    assert meta.version == 2 and meta.hashes["sha512"]
    # API v2 view of the same file
    [api] = [x for x in client.list_folder_api("abcde", "osfstorage") if x.name == "a.bin"]
    assert api.hashes == {"md5": e2.hashes["md5"], "sha256": e2.hashes["sha256"]}
    assert api.id == e.path.strip("/")
    av = client.file_versions_api(api.id)
    assert [v["id"] for v in av] == ["2", "1"] and av[0]["size"] == 4
    # upload() on an existing name updates instead of failing
    e3 = client.upload(r, "a.bin", b"three")
    assert e3.version == 3


def test_folders_delete_move_rename_copy(client):
    r = root(client)
    d = client.create_folder(r, "data")
    assert d.kind == "folder" and d.path.endswith("/")
    assert client.create_folder(r, "data").path == d.path  # exist_ok
    with pytest.raises(ConflictError):
        client.create_folder(r, "data", exist_ok=False)
    sub = client.create_folder(d, "sub")
    f = client.upload_new(sub, "x.txt", b"x")
    assert [e.materialized for e in client.list_folder(sub)] == ["/data/sub/x.txt"]
    f2 = client.rename(f, "y.txt")
    assert f2.materialized == "/data/sub/y.txt" and f2.path == f.path
    f3 = client.move(f2, r)
    assert f3.materialized == "/y.txt"
    assert client.versions(f3)[0]["version"] == "1"  # versions survive moves
    c = client.copy(f3, d, "copy.txt")
    assert client.read(c) == b"x"
    client.upload_new(sub, "y.txt", b"other")
    with pytest.raises(ConflictError):
        client._movecopy("move", f3, sub, None, "warn")
    kept = client._movecopy("copy", f3, sub, None, "keep")
    assert kept.name == "y (1).txt"
    client.delete(d)  # recursive
    assert [e.name for e in client.list_folder(r)] == ["y.txt"]
    with pytest.raises(RDMNotFoundError) as ei:
        client.list_folder(d)
    assert isinstance(ei.value, FileNotFoundError)


def test_root_delete_needs_confirm(client, srv):
    r = root(client)
    client.upload_new(r, "a", b"a")
    import httpx as _h
    resp = _h.delete(r.links["move"], headers={"Authorization": f"Bearer {TOKEN_ADMIN}"})
    assert resp.status_code == 400
    client.delete(r, confirm_root=True)
    assert client.list_folder(r) == []


def test_wb_pagination_next_token(client):
    r = root(client, name="s3compatinstitutions")
    d = client.create_folder(r, "many")
    names = [f"f{i:02d}" for i in range(8)]
    for n in names:
        client.upload_new(d, n, n.encode())
    assert sorted(e.name for e in client.list_folder(d)) == names  # page size 3 -> 3 pages


def test_api_pagination_both_envelopes(client, srv):
    r = root(client)
    for i in range(7):
        client.upload_new(r, f"p{i}", b"p")
    assert len(client.list_folder_api("abcde", "osfstorage")) == 7
    assert len(client.list_folder_api("abcde", "osfstorage", page_size=2)) == 7
    h = {"Authorization": f"Bearer {TOKEN_ADMIN}"}
    body = httpx.get(srv.api_url + "nodes/abcde/files/osfstorage/", headers=h).json()
    assert body["links"]["meta"] == {"total": 7, "per_page": 3} and body["links"]["next"]
    body21 = httpx.get(srv.api_url + "nodes/abcde/files/osfstorage/?version=2.1", headers=h).json()
    assert body21["meta"]["total"] == 7 and body21["links"]["next"]
    assert httpx.get(srv.api_url + "nodes/abcde/files/osfstorage/?page=9", headers=h).status_code == 404
    # the client follows links.next for the 2.1 envelope too
    got = list(client._api_pages(srv.api_url + "nodes/abcde/files/osfstorage/?version=2.1", "x"))
    assert len(got) == 7


def test_wrong_token_is_one_line_auth_error(make_client):
    bad = "sekrit-token-value-1234567890"
    c = make_client(bad)
    with pytest.raises(AuthError) as ei:
        c.me()
    msg = str(ei.value)
    assert "\n" not in msg and bad not in msg and "401" in msg
    assert bad not in repr(c)
    with pytest.raises(AuthError) as ei:
        c.providers("abcde")
    assert bad not in str(ei.value)


def test_anonymous_and_outsider(make_client):
    anon = make_client(None)
    with pytest.raises(AuthError):
        anon.project("abcde")
    assert anon.project("pubpj").public  # public project readable anonymously
    r = anon.providers("pubpj")[0].root()
    with pytest.raises(AuthError) as ei:
        anon.upload_new(r, "x", b"x")
    assert "401" in str(ei.value)
    out = make_client(TOKEN_OUTSIDER)
    with pytest.raises(AuthError) as ei:
        out.providers("abcde")
    assert "403" in str(ei.value)
    # a missing project is said as such (not a FileNotFoundError: it is not an empty store)
    with pytest.raises(RDMProjectNotFound, match="project zzzzz not found or not visible to this token"):
        out.project("zzzzz")
    with pytest.raises(RDMProjectNotFound) as ei:
        out.providers("zzzzz")
    assert not isinstance(ei.value, FileNotFoundError)


@pytest.mark.parametrize("token", [TOKEN_READER, TOKEN_READ_SCOPE])
def test_read_only_can_read_not_write(make_client, client, token):
    r = root(client)
    e = client.upload_new(r, "shared.bin", b"shared")
    ro = make_client(token)
    rr = root(ro)
    [seen] = ro.list_folder(rr)
    assert ro.read(seen) == b"shared"
    for op in (lambda: ro.upload_new(rr, "new.bin", b"x"), lambda: ro.update(seen, b"y"),
               lambda: ro.create_folder(rr, "d"), lambda: ro.delete(seen), lambda: ro.rename(seen, "z")):
        with pytest.raises(AuthError) as ei:
            op()
        assert "403" in str(ei.value) and "permission" in str(ei.value)
    assert client.read(e) == b"shared"
    writer = make_client(TOKEN_WRITER)
    assert writer.update(seen, b"by writer").version == 2


def test_quota_406(client, srv):
    srv.nodes["abcde"].quota = 10
    r = root(client)
    client.upload_new(r, "small", b"12345")
    with pytest.raises(RDMQuotaError) as ei:
        client.upload_new(r, "big", b"x" * 6)
    assert "406" in str(ei.value) and "quota" in str(ei.value)


def test_content_length_always_sent(client, srv):
    # the server rejects uploads without Content-Length (411); ours always pass
    r = root(client)

    def gen():
        yield b"abc"
    with open(__file__, "rb") as f:
        e = client.upload_new(r, "self.py", f)
    assert e.size == len(open(__file__, "rb").read())
    resp = httpx.put(r.links["upload"], params={"kind": "file", "name": "chunked"}, content=gen(),
                     headers={"Authorization": f"Bearer {TOKEN_ADMIN}"})
    assert resp.status_code == 411


def test_429_storm_with_retry_after(make_client, srv):
    slept = []
    c = make_client(sleep=slept.append, retries=6)
    srv.faults.fail_next(4, status=429, retry_after=0.2)
    assert c.me().id == "uadmn"
    assert slept == [0.2] * 4  # Retry-After honoured, not the tiny backoff


def test_5xx_storm_survived(make_client, srv):
    c = make_client(retries=8)
    r = root(c)
    for status in (502, 503, 504):
        srv.faults.fail_next(2, status=status)
    e = c.upload_new(r, "storm.bin", b"storm" * 1000)
    srv.faults.fail_next(3, status=503, prefix="/v1/")
    assert c.read(e) == b"storm" * 1000
    srv.faults.fail_next(3, status=429, retry_after=0, prefix="/v1/")  # WaterButler-style limiter
    assert c.read(e) == b"storm" * 1000
    assert all(r.remaining == 0 for r in srv.faults.rules)


def test_retries_are_bounded(make_client, srv):
    c = make_client(retries=3)
    srv.faults.fail_next(10, status=503)
    with pytest.raises(RemoteError) as ei:
        c.me()
    assert "503" in str(ei.value)
    assert srv.faults.rules[0].remaining == 7


def test_dropped_connection_during_upload_is_retried(client, srv):
    r = root(client)
    data = bytes(range(256)) * 4096  # 1 MiB
    srv.faults.drop_next_upload(2, after_bytes=100_000)
    e = client.upload_new(r, "dropped.bin", data)
    assert srv.faults.drops[0][0] == 0  # both drops happened
    assert e.hashes["sha256"] == hashlib.sha256(data).hexdigest()
    assert client.read(e) == data
    assert [x.name for x in client.list_folder(r)] == ["dropped.bin"]  # no half file left


def test_redirect_does_not_forward_token(client, srv):
    r = root(client)
    e = client.upload_new(r, "redir.bin", b"presigned bytes")
    srv.faults.redirect_downloads = True
    assert client.read(e) == b"presigned bytes"
    assert client.read(e, start=3, end=7) == b"sign"
    blob_reqs = [q for q in srv.requests if q[2].startswith("/_blob/")]
    assert blob_reqs and all(host.startswith("localhost") and not has_auth for _, host, _, has_auth in blob_reqs)
    # the fake storage really rejects a bearer header
    wb = [q for q in srv.requests if q[2].startswith("/v1/")][-1]
    resp = httpx.get(e.url, headers={"Authorization": f"Bearer {TOKEN_ADMIN}"})
    assert resp.status_code == 302
    bad = httpx.get(resp.headers["Location"], headers={"Authorization": f"Bearer {TOKEN_ADMIN}"})
    assert bad.status_code == 400
    assert wb


def test_download_hash_mismatch_detected(client):
    r = root(client)
    e = client.upload_new(r, "h.bin", b"hello")
    e.hashes["sha256"] = "0" * 64
    with pytest.raises(RDMIntegrityError):
        client.read(e)


def test_injected_transport(srv):
    """The transport is separate from the client, as in httpx."""
    seen = []
    inner = httpx.HTTPTransport()

    class Spy(httpx.BaseTransport):
        def handle_request(self, request):
            seen.append(request.url.path)
            return inner.handle_request(request)

    with RDMClient(TOKEN_ADMIN, srv.api_url, transport=Spy()) as c:
        assert c.me().id == "uadmn"
    assert seen == ["/v2/users/me/"]


def test_dropped_download_resumes_with_range(client, srv):
    r = root(client)
    data = os.urandom(3 * 2**20 + 5)
    e = client.upload_new(r, "resume.bin", data)
    srv.faults.drop_next_download(2, after_bytes=2**20 + 7)
    assert client.read(e) == data
    assert srv.faults.download_drops[0][0] == 0


def test_lost_response_on_create_is_idempotent(client, srv):
    r = root(client)
    srv.faults.lose_next_responses(1)  # file is created, answer never arrives; retry sees 409
    e = client.upload(r, "once.bin", b"payload")
    assert e.version == 1 and client.read(e) == b"payload"
    assert [x.name for x in client.list_folder(r)] == ["once.bin"]
    srv.faults.lose_next_responses(1)
    d = client.create_folder(r, "dir")  # retried mkdir -> 409 -> existing folder
    assert d.kind == "folder"
    srv.faults.lose_next_responses(1)
    client.delete(d)  # retried delete -> 404 -> fine
    assert [x.name for x in client.list_folder(r)] == ["once.bin"]
