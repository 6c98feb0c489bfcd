"""A local stand-in for GakuNin RDM: OSF API v2 (``/v2/...``) and WaterButler v1
(``/v1/resources/...``) on one 127.0.0.1 port.

Behaviour follows ``/work/shared/reference/gakunin-rdm-api.md`` §5.  Every ``links``
value is an absolute URL to this server, so a client that follows links (as a real
client must) works unchanged.  File bodies live on disk in a temp dir.

Use in tests::

    with RDMServer.default() as srv:          # thread on 127.0.0.1, free port
        srv.api_url                           # "http://127.0.0.1:PORT/v2/"
        srv.faults.fail_next(3, status=429, retry_after=0)
        srv.faults.drop_next_upload(1)
        srv.faults.redirect_downloads = True  # 302 to http://localhost:PORT/_blob/...

or as a subprocess: ``python -m tests.servers.rdm_server [--port N]`` prints one JSON
line with ``api_url`` and the default tokens, then serves until killed.

Commit semantics follow the real service: a file create's 409 is decided *before* the body is
read (RDM-waterbutler ``create.py`` ``postvalidate_put``); a create that loses a race at commit
adds a new version to the other's file and answers 200 (``osfstorage_create_child``).  Folder
creation answers 409 at commit.  ``faults.commit_delay`` widens the gap between check and commit.

Not reproduced: OAuth scopes beyond full_read/full_write, checkouts, comments, guids
of files, ``?zip=``, cross-node copy tasks (202), web-host ``links.download``, 410 for
deleted nodes beyond a flag, API versions other than the 2.0/2.1 pagination envelopes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import secrets
import shutil
import socket
import tempfile
import threading
import time
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

READ_SCOPES = {"osf.full_read", "osf.full_write"}
WRITE_SCOPES = {"osf.full_write"}
ID_BASED = {"osfstorage"}
CHUNK = 1 << 20

# default fixture tokens
TOKEN_ADMIN = "tok-admin-0123456789abcdef"
TOKEN_WRITER = "tok-writer-0123456789abcdef"
TOKEN_READER = "tok-reader-0123456789abcdef"
TOKEN_OUTSIDER = "tok-outsider-0123456789abcd"
TOKEN_READ_SCOPE = "tok-admin-readscope-012345"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def _new_id() -> str:
    return secrets.token_hex(12)


# ----------------------------------------------------------------------------- state


@dataclass
class Version:
    n: int
    blob: str
    size: int
    md5: str
    sha256: str
    sha512: str
    created: str
    user: str


@dataclass
class Entry:
    id: str
    kind: str  # "file" | "folder"
    name: str
    parent: "Entry | None"
    provider: "Provider"
    children: list = field(default_factory=list)
    versions: list = field(default_factory=list)
    created: str = field(default_factory=_now)
    modified: str = field(default_factory=_now)

    @property
    def materialized(self) -> str:
        if self.parent is None:
            return "/"
        p = self.parent.materialized + self.name
        return p + "/" if self.kind == "folder" else p

    @property
    def wb_path(self) -> str:
        if self.parent is None:
            return "/"
        if self.provider.id_based:
            return f"/{self.id}/" if self.kind == "folder" else f"/{self.id}"
        return self.materialized

    def walk(self):
        yield self
        for c in self.children:
            yield from c.walk()


@dataclass
class Provider:
    name: str
    node: "Node"
    for_institutions: bool = False
    root: Entry | None = None
    index: dict = field(default_factory=dict)

    @property
    def id_based(self) -> bool:
        return self.name in ID_BASED


@dataclass
class Node:
    guid: str
    title: str
    creator: str
    public: bool = False
    contributors: dict = field(default_factory=dict)  # user id -> read|write|admin
    providers: dict = field(default_factory=dict)
    quota: int | None = None
    deleted: bool = False
    created: str = field(default_factory=_now)


@dataclass
class User:
    id: str
    full_name: str


@dataclass
class Token:
    user: str
    scopes: set


@dataclass
class _Rule:
    remaining: int
    status: int
    retry_after: float | None
    prefix: str | None
    methods: tuple | None


class Faults:
    """Switchable faults.  All counters are consumed by matching requests only."""

    def __init__(self):
        self._lock = threading.Lock()
        self.rules: list[_Rule] = []
        self.drops: list[list] = []  # [remaining, after_bytes]
        self.download_drops: list[list] = []  # [remaining, after_bytes]
        self.lost_responses = 0  # PUT/POST/DELETE applied, then the socket closes with no answer
        self.redirect_downloads = False
        self.require_content_length = True
        self.drain_limit = 1 << 20  # error responses to bigger bodies close the socket unread
        self.delay = 0.0
        self.commit_delay = 0.0  # seconds between a file upload's name check (before the body) and its commit

    def fail_next(self, n: int, status: int = 503, retry_after: float | None = None,
                  prefix: str | None = None, methods: tuple | None = None) -> None:
        """Answer the next ``n`` matching requests with ``status`` (429 adds Retry-After)."""
        with self._lock:
            self.rules.append(_Rule(n, status, retry_after, prefix, methods))

    def drop_next_upload(self, n: int = 1, after_bytes: int = 64 * 1024) -> None:
        """Close the socket after reading ``after_bytes`` of the next ``n`` file uploads."""
        with self._lock:
            self.drops.append([n, after_bytes])

    def drop_next_download(self, n: int = 1, after_bytes: int = 64 * 1024) -> None:
        """Close the socket after sending ``after_bytes`` of the next ``n`` downloads."""
        with self._lock:
            self.download_drops.append([n, after_bytes])

    def lose_next_responses(self, n: int = 1) -> None:
        """Apply the next ``n`` writes but drop the connection instead of answering."""
        with self._lock:
            self.lost_responses += n

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()
            self.drops.clear()
            self.download_drops.clear()
            self.lost_responses = 0
        self.redirect_downloads = False
        self.require_content_length = True
        self.delay = 0.0
        self.commit_delay = 0.0

    def _take_rule(self, method: str, path: str) -> _Rule | None:
        with self._lock:
            for r in self.rules:
                if r.remaining <= 0:
                    continue
                if r.prefix and not path.startswith(r.prefix):
                    continue
                if r.methods and method not in r.methods:
                    continue
                r.remaining -= 1
                return r
        return None

    def _take_lost(self) -> bool:
        with self._lock:
            if self.lost_responses > 0:
                self.lost_responses -= 1
                return True
        return False

    def _take_download_drop(self) -> int | None:
        with self._lock:
            for d in self.download_drops:
                if d[0] > 0:
                    d[0] -= 1
                    return d[1]
        return None

    def _take_drop(self) -> int | None:
        with self._lock:
            for d in self.drops:
                if d[0] > 0:
                    d[0] -= 1
                    return d[1]
        return None


class HTTPFail(Exception):
    def __init__(self, status: int, body: dict, headers: dict | None = None):
        self.status, self.body, self.headers = status, body, headers or {}


def api_error(status: int, detail: str, headers=None) -> HTTPFail:
    if status == 401:
        headers = dict(headers or {}, **{"WWW-Authenticate": 'Documentation realm="https://127.0.0.1/v2/docs/"'})
    return HTTPFail(status, {"errors": [{"detail": detail}], "meta": {"version": "2.0"}}, headers)


def wb_error(status: int, message: str) -> HTTPFail:
    return HTTPFail(status, {"code": status, "message": message})


def osf_auth_error(status: int) -> HTTPFail:
    short = {401: "Unauthorized", 403: "Forbidden", 404: "Not found", 400: "Bad request", 410: "Gone"}[status]
    long_ = {401: "You must log in to access this resource.",
             403: "You do not have permission to perform this action.",
             404: "The requested resource could not be found.",
             400: "The request was invalid.",
             410: "The requested resource is no longer available."}[status]
    return HTTPFail(status, {"message_short": short, "message_long": long_, "code": status, "referrer": None})


# ----------------------------------------------------------------------------- server


class RDMServer:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, page_size: int = 3,
                 wb_page_size: int = 3, storage_dir: str | None = None):
        self.host = host
        self.page_size = page_size
        self.wb_page_size = wb_page_size
        self.lock = threading.RLock()
        self.users: dict[str, User] = {}
        self.tokens: dict[str, Token] = {}
        self.nodes: dict[str, Node] = {}
        self.faults = Faults()
        self.blobs: dict[str, tuple] = {}  # redirect key -> (blob, size, expiry)
        self.requests: list[tuple] = []  # (method, host, path, has_authorization)
        self._own_dir = storage_dir is None
        self.storage_dir = storage_dir or tempfile.mkdtemp(prefix="rdm-server-")
        self.httpd = ThreadingHTTPServer((host, port), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.rdm = self  # type: ignore[attr-defined]
        self.port = self.httpd.server_address[1]
        self._thread: threading.Thread | None = None

    # --- urls
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.url}/v2/"

    @property
    def files_url(self) -> str:
        return f"{self.url}/v1"

    @property
    def other_host_url(self) -> str:
        """Same socket, different host name: what a presigned storage URL looks like."""
        return f"http://localhost:{self.port}"

    # --- lifecycle
    def start(self) -> "RDMServer":
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"rdm-server-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._own_dir:
            shutil.rmtree(self.storage_dir, ignore_errors=True)

    def __enter__(self):
        return self.start() if self._thread is None else self

    def __exit__(self, *exc):
        self.stop()

    # --- configuration
    def add_user(self, full_name: str, user_id: str | None = None) -> str:
        uid = user_id or secrets.token_hex(3)[:5]
        with self.lock:
            self.users[uid] = User(uid, full_name)
        return uid

    def add_token(self, token: str, user_id: str, scopes=("osf.full_read", "osf.full_write")) -> str:
        with self.lock:
            self.tokens[token] = Token(user_id, set(scopes))
        return token

    def add_project(self, guid: str, title: str, creator: str, *, public: bool = False,
                    providers=("osfstorage",), institutional=(), quota: int | None = None) -> Node:
        with self.lock:
            node = Node(guid, title, creator, public=public, quota=quota)
            node.contributors[creator] = "admin"
            for name in providers:
                self._add_provider(node, name, False)
            for name in institutional:
                self._add_provider(node, name, True)
            self.nodes[guid] = node
        return node

    def _add_provider(self, node: Node, name: str, inst: bool) -> None:
        p = Provider(name, node, for_institutions=inst)
        p.root = Entry(_new_id(), "folder", "", None, p)
        p.index[p.root.id] = p.root
        node.providers[name] = p

    def add_contributor(self, guid: str, user_id: str, permission: str) -> None:
        with self.lock:
            self.nodes[guid].contributors[user_id] = permission

    @classmethod
    def default(cls, **kw) -> "RDMServer":
        """Fixture: admin/writer/reader/outsider users; projects ``abcde`` (osfstorage +
        institutional ``s3compatinstitutions``), ``fghij`` (institutional only), ``pubpj``
        (public, osfstorage)."""
        srv = cls(**kw)
        admin = srv.add_user("Ada Admin", "uadmn")
        writer = srv.add_user("Wes Writer", "uwrtr")
        reader = srv.add_user("Rea Reader", "uread")
        outsider = srv.add_user("Otto Outsider", "uouts")
        srv.add_token(TOKEN_ADMIN, admin)
        srv.add_token(TOKEN_WRITER, writer)
        srv.add_token(TOKEN_READER, reader)
        srv.add_token(TOKEN_OUTSIDER, outsider)
        srv.add_token(TOKEN_READ_SCOPE, admin, scopes=("osf.full_read",))
        srv.add_project("abcde", "DFT training data", admin, providers=("osfstorage",),
                        institutional=("s3compatinstitutions",))
        srv.add_contributor("abcde", writer, "write")
        srv.add_contributor("abcde", reader, "read")
        srv.add_project("fghij", "Institutional only", admin, providers=(), institutional=("s3compatinstitutions",))
        srv.add_project("pubpj", "Public project", admin, public=True)
        return srv

    # --- helpers used by handler
    def lookup_wb(self, provider: Provider, path: str) -> Entry:
        """Resolve a WaterButler path; trailing slash must match the kind."""
        if path == "/":
            return provider.root
        is_folder = path.endswith("/")
        if provider.id_based:
            ident = path.strip("/")
            if "/" in ident:
                raise wb_error(404, f"Could not retrieve file or directory {path}")
            e = provider.index.get(ident)
        else:
            parts = path.strip("/").split("/")
            e = provider.root
            for i, part in enumerate(parts):
                want_folder = i < len(parts) - 1 or is_folder
                e = next((c for c in e.children if c.name == part and (c.kind == "folder") == want_folder), None)
                if e is None:
                    break
        if e is None or (e.kind == "folder") != is_folder:
            raise wb_error(404, f"Could not retrieve file or directory {path}")
        return e

    def quota_used(self, node: Node) -> int:
        used = 0
        for p in node.providers.values():
            for e in p.root.walk():
                if e.kind == "file" and e.versions:
                    used += e.versions[-1].size
        return used

    # serialisers
    def wb_url(self, e: Entry) -> str:
        return f"{self.files_url}/resources/{e.provider.node.guid}/providers/{e.provider.name}{quote(e.wb_path)}"

    def wb_entity(self, e: Entry, version: Version | None = None) -> dict:
        url = self.wb_url(e)
        prov = e.provider.name
        if e.kind == "file":
            v = version or e.versions[-1]
            attrs = {
                "extra": {"guid": None, "version": v.n, "downloads": 0, "checkout": None, "locked": False,
                          "latestVersionSeen": None,
                          "hashes": {"md5": v.md5, "sha256": v.sha256, "sha512": v.sha512}},
                "kind": "file", "name": e.name, "path": e.wb_path, "provider": prov,
                "materialized": e.materialized,
                "etag": hashlib.sha256(f"{prov}::{v.n}::{e.wb_path}".encode()).hexdigest(),
                "contentType": None, "modified": v.created, "modified_utc": v.created,
                "created_utc": e.versions[0].created, "size": v.size, "sizeInt": v.size,
                "resource": e.provider.node.guid,
            }
            links = {"move": url, "upload": url + "?kind=file", "delete": url, "download": url}
        else:
            attrs = {"extra": {}, "kind": "folder", "name": e.name, "path": e.wb_path, "provider": prov,
                     "materialized": e.materialized,
                     "etag": hashlib.sha256(f"{prov}::{e.wb_path}".encode()).hexdigest(),
                     "size": None, "sizeInt": None, "created": None, "created_utc": None,
                     "modified": None, "modified_utc": None, "resource": e.provider.node.guid}
            links = {"move": url, "upload": url + "?kind=file", "delete": url, "new_folder": url + "?kind=folder"}
        return {"id": f"{prov}{e.wb_path}", "type": "files", "attributes": attrs, "links": links}

    def api_file(self, e: Entry) -> dict:
        guid = e.provider.node.guid
        url = self.wb_url(e)
        attrs = {"guid": None, "checkout": None, "name": e.name, "kind": e.kind, "path": e.wb_path,
                 "size": None, "provider": e.provider.name, "materialized_path": e.materialized,
                 "last_touched": None, "date_modified": e.modified, "date_created": e.created,
                 "extra": {"hashes": {"md5": None, "sha256": None}, "downloads": 0}, "tags": [],
                 "current_user_can_comment": True, "current_version": 1, "delete_allowed": True}
        rel = {"node": {"links": {"related": {"href": f"{self.api_url}nodes/{guid}/", "meta": {}}}}}
        links = {"info": f"{self.api_url}files/{e.id}/", "move": url, "upload": url + "?kind=file", "delete": url}
        if e.kind == "file":
            v = e.versions[-1]
            attrs.update(size=v.size, current_version=v.n, date_modified=v.created,
                         extra={"hashes": {"md5": v.md5, "sha256": v.sha256}, "downloads": 0})
            rel["versions"] = {"links": {"related": {"href": f"{self.api_url}files/{e.id}/versions/", "meta": {}}}}
            links["download"] = f"{self.url}/download/{e.id}/"  # web host in production
        else:
            sub = "" if e.parent is None else e.wb_path.lstrip("/")
            rel["files"] = {"links": {"related": {
                "href": f"{self.api_url}nodes/{guid}/files/{e.provider.name}/{quote(sub)}", "meta": {}}}}
            links["new_folder"] = url + "?kind=folder"
        if e.parent is not None:
            rel["parent_folder"] = {"links": {"related": {"href": f"{self.api_url}files/{e.parent.id}/", "meta": {}}}}
        return {"id": e.id, "type": "files", "attributes": attrs, "relationships": rel, "links": links}


# ----------------------------------------------------------------------------- handler


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "FakeRDM/1.0"

    def log_message(self, format, *args):  # noqa: A002 - silence
        pass

    @property
    def rdm(self) -> RDMServer:
        return self.server.rdm  # type: ignore[attr-defined]

    # ---- plumbing
    def do_GET(self):
        self._dispatch("GET")

    def do_HEAD(self):
        self._dispatch("HEAD")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_POST(self):
        self._dispatch("POST")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def do_PATCH(self):
        self._dispatch("PATCH")

    def _dispatch(self, method: str) -> None:
        self._body_read = False
        parts = urlsplit(self.path)
        self.q = parse_qs(parts.query, keep_blank_values=True)
        path = parts.path
        rdm = self.rdm
        with rdm.lock:
            rdm.requests.append((method, self.headers.get("Host", ""), self.path,
                                 "Authorization" in self.headers))
            del rdm.requests[:-500]
        try:
            if rdm.faults.delay:
                time.sleep(rdm.faults.delay)
            if not path.startswith("/_blob/"):
                rule = rdm.faults._take_rule(method, path)
                if rule is not None:
                    hdrs = {}
                    wb = path.startswith("/v1/")
                    if rule.status == 429:
                        ra = 0 if rule.retry_after is None else rule.retry_after
                        hdrs["Retry-After"] = str(ra)
                        if wb:  # upstream WaterButler's optional limiter
                            hdrs.update({"X-Waterbutler-RateLimiting-Window": "3600",
                                         "X-Waterbutler-RateLimiting-Limit": "3600",
                                         "X-Waterbutler-RateLimiting-Remaining": "0",
                                         "X-Waterbutler-RateLimiting-Reset": str(math.ceil(ra))})
                            raise HTTPFail(429, {"error": "API rate-limiting active due to too many requests",
                                                 "retry_after": ra}, hdrs)
                        raise api_error(429, f"Request was throttled. Expected available in {math.ceil(ra)} seconds.", hdrs)
                    if wb:
                        raise wb_error(rule.status, "Service Unavailable")
                    raise api_error(rule.status, "Service temporarily unavailable.", hdrs)
            if path.startswith("/v2/"):
                self._api(method, path[len("/v2"):])
            elif path.startswith("/v1/resources/"):
                self._wb(method, path[len("/v1/resources/"):])
            elif path.startswith("/_blob/"):
                self._blob(method, path[len("/_blob/"):])
            elif path.startswith("/api/v1/project/"):
                self._web_quota(method, path)
            else:
                raise api_error(404, "Not found.")
        except HTTPFail as f:
            self._send_json(f.status, f.body, f.headers)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _web_quota(self, method: str, path: str) -> None:
        """``/api/v1/project/<guid>/get_creator_quota/`` of the *web app* (RDM-osf.io
        ``website/project/views/quota.py``, ``@must_be_contributor_or_public``): the web app
        authenticates by session cookie or HTTP Basic login (``framework/sessions``
        ``before_request``) and ignores a bearer token, so a private project answers with a
        redirect to the login page; a public one with ``{"max": bytes, "used": bytes}``."""
        parts = path.strip("/").split("/")
        if method != "GET" or len(parts) != 5 or parts[4] != "get_creator_quota":
            raise HTTPFail(404, {"message_short": "Not found", "code": 404})
        node = self.rdm.nodes.get(parts[3])
        if node is None or node.deleted:
            raise HTTPFail(404, {"message_short": "Not found", "message_long": "The requested resource could not "
                                 "be found.", "code": 404})
        if not node.public:
            return self._send_json(302, None, {"Location": f"{self.rdm.url}/login/?next={quote(path)}"})
        with self.rdm.lock:
            used = self.rdm.quota_used(node)
        self._send_json(200, {"max": node.quota if node.quota is not None else 100 * 1024 ** 3, "used": used})

    def _finish_body(self) -> None:
        """Before an error answer: drain a small unread body, or close the connection."""
        if self._body_read:
            return
        self._body_read = True
        cl = self.headers.get("Content-Length")
        if cl is None:
            if self.headers.get("Transfer-Encoding"):
                self.close_connection = True
            return
        n = int(cl)
        if n > self.rdm.faults.drain_limit:
            self.close_connection = True
            return
        while n > 0:
            b = self.rfile.read(min(n, CHUNK))
            if not b:
                break
            n -= len(b)

    def _send_json(self, status: int, body, headers=None, ctype="application/json") -> None:
        self._finish_body()
        if (self.command in ("PUT", "POST", "DELETE") and 200 <= status < 300
                and self.rdm.faults._take_lost()):
            self._abort()
            return
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _abort(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _qget(self, name: str, default=None):
        v = self.q.get(name)
        return default if v is None else v[0]

    # ---- auth
    def _token(self):
        """(user id | None, scopes); raises 401 for a malformed or unknown token."""
        h = self.headers.get("Authorization")
        if h is None:
            return None, set()
        if not h.startswith("Bearer "):
            return "__bad__", set()
        tok = self.rdm.tokens.get(h[len("Bearer "):].strip())
        if tok is None:
            return "__bad__", set()
        return tok.user, tok.scopes

    def _check(self, node: Node, user, scopes, write: bool, wb: bool) -> str | None:
        def err(status, detail):
            return osf_auth_error(status) if wb else api_error(status, detail)
        if user == "__bad__":
            raise err(401, "User provided an invalid OAuth2 access token")
        if node.deleted:
            raise err(410, "The requested node is no longer available.")
        perm = node.contributors.get(user) if user else None
        if write or not node.public:
            if user is None:
                raise err(401, "Authentication credentials were not provided.")
            if perm is None or (write and perm == "read"):
                raise err(403, "You do not have permission to perform this action.")
            if not (scopes & (WRITE_SCOPES if write else READ_SCOPES)):
                raise err(403, "You do not have permission to perform this action.")
        return perm

    def _node(self, guid: str, wb: bool) -> Node:
        node = self.rdm.nodes.get(guid)
        if node is None:
            raise osf_auth_error(404) if wb else api_error(404, "Not found.")
        return node

    # ---- OSF API v2
    def _api_version(self) -> tuple:
        v = self._qget("version")
        if v is None:
            acc = self.headers.get("Accept", "")
            if "version=" in acc:
                v = acc.split("version=")[1].split(";")[0].strip()
        try:
            return tuple(int(x) for x in (v or "2.0").split("."))
        except ValueError:
            raise api_error(404, f'Invalid version in query parameter.')

    def _page(self, items: list, base: str) -> dict:
        rdm = self.rdm
        try:
            page = int(self._qget("page", "1"))
            size = min(int(self._qget("page[size]", str(rdm.page_size))), 100)
        except ValueError:
            raise api_error(404, "Invalid page.")
        total = len(items)
        pages = max(1, math.ceil(total / size)) if size > 0 else 1
        if page < 1 or page > pages:
            raise api_error(404, "Invalid page.")
        keep = [(k, v) for k, vs in self.q.items() if k != "page" for v in vs]

        def link(n):
            qs = keep + ([("page", str(n))] if n > 1 else [])
            return base + ("?" + urlencode(qs) if qs else "")
        data = items[(page - 1) * size: page * size]
        first = None if page == 1 else link(1)
        prev = None if page == 1 else link(page - 1)
        nxt = None if page == pages else link(page + 1)
        last = None if page == pages else link(pages)
        ver = self._api_version()
        if ver >= (2, 1):
            return {"data": data, "meta": {"total": total, "per_page": size, "version": "%d.%d" % ver},
                    "links": {"self": link(page), "first": first, "last": last, "prev": prev, "next": nxt}}
        return {"data": data, "links": {"first": first, "last": last, "prev": prev, "next": nxt,
                                        "meta": {"total": total, "per_page": size}},
                "meta": {"version": "2.0"}}

    def _api(self, method: str, path: str) -> None:
        rdm = self.rdm
        user, scopes = self._token()
        parts = [p for p in path.split("/") if p != ""]
        trailing = path.endswith("/")
        if method not in ("GET", "HEAD"):
            raise api_error(405, f'Method "{method}" not allowed.')
        with rdm.lock:
            if parts[:2] == ["users", "me"] and len(parts) == 2:
                if user == "__bad__":
                    raise api_error(401, "User provided an invalid OAuth2 access token")
                if user is None:
                    raise api_error(401, "Authentication credentials were not provided.")
                return self._send_api(200, {"data": self._api_user(rdm.users[user]), "meta": {"version": "2.0"}})
            if parts[:3] == ["users", "me", "nodes"] and len(parts) == 3:
                if user in (None, "__bad__"):
                    raise api_error(401, "Authentication credentials were not provided.")
                nodes = [self._api_node(n, user) for n in rdm.nodes.values()
                         if user in n.contributors and not n.deleted]
                return self._send_api(200, self._page(nodes, f"{rdm.api_url}users/me/nodes/"))
            if len(parts) >= 2 and parts[0] == "nodes":
                node = self._node(parts[1], wb=False)
                self._check(node, user, scopes, write=False, wb=False)
                base = f"{rdm.api_url}nodes/{node.guid}/"
                if len(parts) == 2:
                    return self._send_api(200, {"data": self._api_node(node, user), "meta": {"version": "2.0"}})
                if parts[2] == "contributors" and len(parts) == 3:
                    items = [self._api_contrib(node, uid, perm, i) for i, (uid, perm) in
                             enumerate(node.contributors.items())]
                    return self._send_api(200, self._page(items, base + "contributors/"))
                if parts[2] == "files":
                    if len(parts) == 3:
                        items = [self._api_provider(p) for p in node.providers.values()]
                        return self._send_api(200, self._page(items, base + "files/"))
                    if parts[3] == "providers" and len(parts) == 5:
                        p = node.providers.get(parts[4])
                        if p is None:
                            raise api_error(404, "Not found.")
                        return self._send_api(200, {"data": self._api_provider(p), "meta": {"version": "2.0"}})
                    p = node.providers.get(parts[3])
                    if p is None:
                        raise api_error(404, "Not found.")
                    sub = "/" + "/".join(parts[4:]) + ("/" if trailing and len(parts) > 4 else "")
                    try:
                        e = rdm.lookup_wb(p, sub)
                    except HTTPFail:
                        raise api_error(404, "Not found.")
                    if e.kind == "file":
                        return self._send_api(200, {"data": rdm.api_file(e), "meta": {"version": "2.0"}})
                    kids = e.children
                    fname, fkind = self._qget("filter[name]"), self._qget("filter[kind]")
                    if fname is not None:
                        kids = [c for c in kids if c.name == fname]
                    if fkind is not None:
                        kids = [c for c in kids if c.kind == fkind]
                    items = [rdm.api_file(c) for c in kids]
                    url = f"{base}files/{p.name}/" + (quote(sub.lstrip("/")) if e.parent is not None else "")
                    return self._send_api(200, self._page(items, url))
            if len(parts) >= 2 and parts[0] == "files":
                e = None
                for node in rdm.nodes.values():
                    for p in node.providers.values():
                        e = e or p.index.get(parts[1])
                if e is None:
                    raise api_error(404, "Not found.")
                self._check(e.provider.node, user, scopes, write=False, wb=False)
                if len(parts) == 2:
                    return self._send_api(200, {"data": rdm.api_file(e), "meta": {"version": "2.0"}})
                if parts[2] == "versions" and len(parts) == 3 and e.kind == "file":
                    items = [{"id": str(v.n), "type": "file_versions",
                              "attributes": {"size": v.size, "content_type": "application/octet-stream",
                                             "date_created": v.created, "name": e.name},
                              "links": {"self": f"{rdm.api_url}files/{e.id}/versions/{v.n}/",
                                        "download": f"{rdm.wb_url(e)}?version={v.n}"}}
                             for v in reversed(e.versions)]
                    return self._send_api(200, self._page(items, f"{rdm.api_url}files/{e.id}/versions/"))
        raise api_error(404, "Not found.")

    def _send_api(self, status, body):
        self._send_json(status, body, ctype="application/vnd.api+json")

    def _api_user(self, u: User) -> dict:
        given, _, family = u.full_name.partition(" ")
        return {"id": u.id, "type": "users",
                "attributes": {"full_name": u.full_name, "given_name": given, "family_name": family,
                               "active": True, "timezone": "Etc/UTC", "locale": "en_US"},
                "links": {"self": f"{self.rdm.api_url}users/{u.id}/", "html": f"{self.rdm.url}/{u.id}/"}}

    def _api_node(self, n: Node, user) -> dict:
        perm = n.contributors.get(user) if user and user != "__bad__" else None
        perms = {"admin": ["admin", "write", "read"], "write": ["write", "read"], "read": ["read"]}.get(perm, [])
        if perm is None and n.public and self._api_version() < (2, 11):
            perms = ["read"]
        return {"id": n.guid, "type": "nodes",
                "attributes": {"title": n.title, "description": "", "category": "project",
                               "custom_citation": None, "date_created": n.created, "date_modified": n.created,
                               "registration": False, "preprint": False, "fork": False, "collection": False,
                               "tags": [], "current_user_can_comment": perm is not None,
                               "current_user_permissions": perms, "current_user_is_contributor": perm is not None,
                               "current_user_is_contributor_or_group_member": perm is not None,
                               "wiki_enabled": True, "public": n.public},
                "relationships": {"files": {"links": {"related": {
                    "href": f"{self.rdm.api_url}nodes/{n.guid}/files/", "meta": {}}}}},
                "links": {"self": f"{self.rdm.api_url}nodes/{n.guid}/", "html": f"{self.rdm.url}/{n.guid}/"}}

    def _api_contrib(self, n: Node, uid: str, perm: str, index: int) -> dict:
        api = self.rdm.api_url
        return {"id": f"{n.guid}-{uid}", "type": "contributors",
                "attributes": {"index": index, "bibliographic": True, "permission": perm,
                               "unregistered_contributor": None},
                "relationships": {"users": {"links": {"related": {"href": f"{api}users/{uid}/", "meta": {}}},
                                            "data": {"id": uid, "type": "users"}},
                                  "node": {"links": {"related": {"href": f"{api}nodes/{n.guid}/", "meta": {}}}}},
                "embeds": {"users": {"data": self._api_user(self.rdm.users[uid])}},
                "links": {"self": f"{api}nodes/{n.guid}/contributors/{uid}/"}}

    def _api_provider(self, p: Provider) -> dict:
        rdm = self.rdm
        g = p.node.guid
        wb = f"{rdm.files_url}/resources/{g}/providers/{p.name}/"
        return {"id": f"{g}:{p.name}", "type": "files",
                "attributes": {"kind": "folder", "name": p.name, "path": "/", "node": g, "provider": p.name,
                               "for_institutions": p.for_institutions},
                "relationships": {
                    "files": {"links": {"related": {"href": f"{rdm.api_url}nodes/{g}/files/{p.name}/", "meta": {}}}},
                    "root_folder": {"links": {"related": {"href": f"{rdm.api_url}files/{p.root.id}/", "meta": {}}}}},
                "links": {"upload": wb, "new_folder": wb + "?kind=folder",
                          "storage_addons": f"{rdm.api_url}addons/?filter%5Bcategories%5D=storage"}}

    # ---- WaterButler v1
    def _wb(self, method: str, rest: str) -> None:
        rdm = self.rdm
        # {guid}/providers/{provider}{path}
        guid, _, rest2 = rest.partition("/")
        kw, _, rest3 = rest2.partition("/")
        if kw != "providers" or not rest3:
            raise wb_error(404, "Not found")
        pname, slash, path = rest3.partition("/")
        path = "/" + path
        path = unquote(path)
        user, scopes = self._token()
        write = method in ("PUT", "POST", "DELETE")
        with rdm.lock:
            node = self._node(guid, wb=True)
            self._check(node, user, scopes, write=write, wb=True)
            p = node.providers.get(pname)
            if p is None:
                raise osf_auth_error(400)
            e = rdm.lookup_wb(p, path)
        if method == "GET":
            return self._wb_get(e)
        if method == "HEAD":
            if e.kind == "folder":
                raise wb_error(501, "HEAD on folders is not implemented")
            v = self._version(e)
            return self._file_headers(200, e, v, v.size, head=True)
        if method == "PUT":
            return self._wb_put(e, user)
        if method == "DELETE":
            with rdm.lock:
                if e.parent is None:
                    if self._qget("confirm_delete") != "1":
                        raise wb_error(400, "confirm_delete=1 is required for deleting root provider folder")
                    for c in list(e.children):
                        self._detach(c)
                else:
                    self._detach(e)
            return self._send_json(204, None)
        if method == "POST":
            return self._wb_post(e, user, scopes)
        raise wb_error(405, "Method not allowed")

    def _detach(self, e: Entry) -> None:
        e.parent.children.remove(e)
        e.parent.modified = _now()
        for x in e.walk():
            x.provider.index.pop(x.id, None)

    def _version(self, e: Entry) -> Version:
        v = self._qget("version", self._qget("revision"))
        if v is None:
            return e.versions[-1]
        for ver in e.versions:
            if str(ver.n) == v:
                return ver
        raise osf_auth_error(400)

    def _wb_get(self, e: Entry) -> None:
        rdm = self.rdm
        if e.kind == "folder":
            kids = [rdm.wb_entity(c) for c in e.children]
            body: dict = {"data": kids}
            if not e.provider.id_based and rdm.wb_page_size:
                start = 0
                tok = self._qget("next_token")
                if tok:
                    try:
                        start = int(base64.urlsafe_b64decode(tok.encode()).decode().split(":")[1])
                    except Exception:
                        raise wb_error(400, "Invalid next_token")
                body["data"] = kids[start:start + rdm.wb_page_size]
                if start + rdm.wb_page_size < len(kids):
                    body["next_token"] = base64.urlsafe_b64encode(
                        f"{secrets.token_hex(4)}:{start + rdm.wb_page_size}".encode()).decode()
            return self._send_json(200, body)
        if "versions" in self.q or "revisions" in self.q:
            data = []
            for v in reversed(e.versions):
                data.append({"id": str(v.n), "type": "file_versions",
                             "attributes": {"extra": {"user": {"name": rdm.users[v.user].full_name if v.user in rdm.users else "",
                                                               "url": f"/{v.user}/"},
                                                      "downloads": 0,
                                                      "hashes": {"md5": v.md5, "sha256": v.sha256, "sha512": v.sha512}},
                                            "version": str(v.n), "modified": v.created, "modified_utc": v.created,
                                            "versionIdentifier": "version"}})
            return self._send_json(200, {"data": data})
        v = self._version(e)
        if "meta" in self.q:
            return self._send_json(200, {"data": rdm.wb_entity(e, v)})
        if rdm.faults.redirect_downloads and "direct" not in self.q:
            key = secrets.token_urlsafe(16)
            with rdm.lock:
                rdm.blobs[key] = (v.blob, v.size, time.time() + 300)
            loc = f"{rdm.other_host_url}/_blob/{key}?X-Amz-Signature={secrets.token_hex(8)}"
            return self._send_json(302, None, {"Location": loc})
        self._send_blob(e, v)

    def _file_headers(self, status, e, v, length, head=False, extra=None):
        self._finish_body()
        self.send_response(status)
        self.send_header("Content-Length", str(length))
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Accept-Ranges", "bytes")
        if e is not None:
            self.send_header("Content-Disposition", f"attachment; filename*=UTF-8''{quote(e.name)}")
            self.send_header("Last-Modified", v.created)
            if head:
                self.send_header("X-Waterbutler-Metadata", json.dumps(self.rdm.wb_entity(e, v)["attributes"]))
        for k, val in (extra or {}).items():
            self.send_header(k, val)
        self.end_headers()

    def _send_blob(self, e, v_or_blob, size=None) -> None:
        if isinstance(v_or_blob, Version):
            blob, size = v_or_blob.blob, v_or_blob.size
        else:
            blob = v_or_blob
        start, end = 0, size - 1
        status = 200
        extra = {}
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes=") and size > 0:
            a, _, b = rng[6:].split(",")[0].partition("-")
            try:
                if a == "":
                    start, end = max(0, size - int(b)), size - 1
                else:
                    start = int(a)
                    end = min(int(b), size - 1) if b else size - 1
            except ValueError:
                start, end = 0, size - 1
            else:
                if start >= size or start > end:
                    return self._send_json(416, {"code": 416, "message": "Requested range not satisfiable"},
                                           {"Content-Range": f"bytes */{size}"})
                status = 206
                extra["Content-Range"] = f"bytes {start}-{end}/{size}"
        length = max(0, end - start + 1)
        self._file_headers(status, e, v_or_blob if isinstance(v_or_blob, Version) else None, length,
                           extra=extra) if e is not None else self._file_headers(status, None, None, length, extra=extra)
        if self.command == "HEAD":
            return
        drop = self.rdm.faults._take_download_drop()
        with open(blob, "rb") as f:
            f.seek(start)
            left = length
            sent = 0
            while left > 0:
                want = min(CHUNK, left)
                if drop is not None:
                    want = min(want, drop - sent)
                    if want <= 0:
                        return self._abort()
                b = f.read(want)
                if not b:
                    break
                self.wfile.write(b)
                left -= len(b)
                sent += len(b)

    def _blob(self, method: str, key: str) -> None:
        rdm = self.rdm
        host = self.headers.get("Host", "")
        if not host.startswith("localhost"):
            raise wb_error(404, "wrong host")
        if "Authorization" in self.headers:
            # what S3 says to a presigned URL that also carries a bearer header
            raise HTTPFail(400, {"Code": "InvalidArgument",
                                 "Message": "Only one auth mechanism allowed; only the X-Amz-Algorithm query "
                                            "parameter, Signature query string parameter or the Authorization "
                                            "header should be specified"})
        with rdm.lock:
            item = rdm.blobs.get(key)
        if item is None or item[2] < time.time():
            raise HTTPFail(403, {"Code": "AccessDenied", "Message": "Request has expired"})
        self._send_blob(None, item[0], item[1])

    def _read_body_to_blob(self, length: int | None, drop_after: int | None):
        """Stream the body to a new blob file, hashing on the way. Returns Version fields or None
        if the connection broke."""
        rdm = self.rdm
        fd, tmp = tempfile.mkstemp(dir=rdm.storage_dir, prefix="up-")
        md5, s256, s512 = hashlib.md5(), hashlib.sha256(), hashlib.sha512()
        got = 0
        ok = True
        self._body_read = True
        with os.fdopen(fd, "wb") as out:
            def feed(b):
                nonlocal got
                md5.update(b)
                s256.update(b)
                s512.update(b)
                out.write(b)
                got += len(b)
            if length is not None:
                left = length
                while left > 0:
                    want = min(CHUNK, left)
                    if drop_after is not None:
                        want = min(want, max(1, drop_after - got))
                    b = self.rfile.read(want)
                    if not b:
                        ok = False
                        break
                    feed(b)
                    left -= len(b)
                    if drop_after is not None and got >= drop_after and left > 0:
                        ok = False
                        break
            else:  # chunked
                while True:
                    line = self.rfile.readline()
                    if not line:
                        ok = False
                        break
                    n = int(line.split(b";")[0].strip() or b"0", 16)
                    if n == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        break
                    left = n
                    while left > 0:
                        b = self.rfile.read(min(CHUNK, left))
                        if not b:
                            ok = False
                            break
                        feed(b)
                        left -= len(b)
                    self.rfile.readline()
                    if not ok:
                        break
                    if drop_after is not None and got >= drop_after:
                        ok = False
                        break
        if not ok:
            os.unlink(tmp)
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return None
        s = s256.hexdigest()
        final = os.path.join(rdm.storage_dir, f"blob-{s}")
        os.replace(tmp, final)
        return got, md5.hexdigest(), s, s512.hexdigest(), final

    def _wb_put(self, target: Entry, user: str) -> None:
        rdm = self.rdm
        kind = self._qget("kind", "file") or "file"
        if kind not in ("file", "folder"):
            raise wb_error(400, 'Kind must be "file" or "folder"')
        name = self._qget("name")
        if target.kind == "folder":
            if name is None:
                raise wb_error(400, "Missing required parameter 'name'")
            name = unicodedata.normalize("NFC", name)
            if name in ("", ".", "..") or "/" in name:
                raise wb_error(400, f"Invalid name {name!r}")
        else:
            if name is not None:
                raise wb_error(400, "'name' parameter doesn't apply to actions on files")
            if kind == "folder":
                raise wb_error(409, "Cannot create a folder at a file path")
        cl = self.headers.get("Content-Length")
        if kind == "folder":
            if cl is not None and int(cl) > 0:
                raise wb_error(413, "Request body must be empty when creating a folder")
            with rdm.lock:
                if any(c.name == name and c.kind == "folder" for c in target.children):
                    raise wb_error(409, f'Cannot complete action: file or folder "{name}" already exists in this location')
                e = Entry(_new_id(), "folder", name, target, target.provider)
                target.children.append(e)
                target.provider.index[e.id] = e
                data = rdm.wb_entity(e)
            return self._send_json(201, {"data": data})
        if cl is None and rdm.faults.require_content_length:
            raise wb_error(411, "Content-Length is required for file uploads")
        length = int(cl) if cl is not None else None
        node = target.provider.node
        with rdm.lock:
            if node.quota is not None and rdm.quota_used(node) + (length or 0) > node.quota:
                raise wb_error(406, "You do not have enough available quota.")
            if target.kind == "folder" and any(c.name == name and c.kind == "file" for c in target.children):
                raise wb_error(409, f'Cannot complete action: file or folder "{name}" already exists in this location')
        res = self._read_body_to_blob(length, rdm.faults._take_drop())
        if res is None:
            return
        size, md5, s256, s512, blob = res
        if rdm.faults.commit_delay:
            time.sleep(rdm.faults.commit_delay)
        with rdm.lock:
            existing = None
            if target.kind == "folder":
                if target.provider.index.get(target.id) is not target and target.parent is not None:
                    raise wb_error(404, "Parent folder was deleted")
                existing = next((c for c in target.children if c.name == name and c.kind == "file"), None)
            if target.kind == "folder" and existing is None:
                e = Entry(_new_id(), "file", name, target, target.provider)
                e.versions.append(Version(1, blob, size, md5, s256, s512, _now(), user))
                target.children.append(e)
                target.provider.index[e.id] = e
                status = 201
            elif existing is not None:
                # The real commit path (RDM-osf.io addons/osfstorage/views.py osfstorage_create_child): the
                # 409 above was decided before the body was read; a file of that name committed since then
                # gets our bytes as a new version (identical bytes: none), answered 200 -- not 409.
                e = existing
                if e.versions[-1].sha256 != s256:
                    e.versions.append(Version(len(e.versions) + 1, blob, size, md5, s256, s512, _now(), user))
                    e.modified = _now()
                status = 200
            else:
                e = target
                if e.versions[-1].sha256 != s256:
                    e.versions.append(Version(len(e.versions) + 1, blob, size, md5, s256, s512, _now(), user))
                    e.modified = _now()
                status = 200
            data = rdm.wb_entity(e)
        self._send_json(status, {"data": data})

    def _wb_post(self, src: Entry, user, scopes) -> None:
        rdm = self.rdm
        cl = self.headers.get("Content-Length")
        if cl is None:
            raise wb_error(411, "Content-Length is required")
        if int(cl) > 1 << 20:
            raise wb_error(413, "Request body too large")
        raw = self.rfile.read(int(cl))
        self._body_read = True
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            raise wb_error(400, "Invalid JSON body")
        action = body.get("action")
        if action not in ("move", "copy", "rename"):
            raise wb_error(400, 'Action must be one of "move", "copy", "rename"')
        with rdm.lock:
            if action == "rename":
                if not body.get("rename"):
                    raise wb_error(400, '"rename" is required')
                if src.parent is None:
                    raise wb_error(400, "Cannot rename the root")
                dest = src.parent
                action = "move"
            else:
                dpath = body.get("path")
                if not dpath or not dpath.endswith("/"):
                    raise wb_error(400, '"path" must be a folder path ending with "/"')
                dguid = body.get("resource") or src.provider.node.guid
                dnode = self._node(dguid, wb=True)
                self._check(dnode, user, scopes, write=True, wb=True)
                dprov = dnode.providers.get(body.get("provider") or src.provider.name)
                if dprov is None:
                    raise osf_auth_error(400)
                dest = rdm.lookup_wb(dprov, dpath)
            if action == "move" and src.parent is None:
                raise wb_error(400, "Cannot move the root")
            name = unicodedata.normalize("NFC", body.get("rename") or src.name)
            x = dest
            while x is not None:
                if x is src:
                    raise wb_error(400, "Cannot move or copy a folder into itself")
                x = x.parent
            conflict = body.get("conflict", "warn")
            existing = [c for c in dest.children if c.name == name and c.kind == src.kind]
            status = 201
            if existing:
                if existing[0] is src:
                    raise wb_error(400, "Cannot overwrite a file or folder with itself")
                if conflict == "replace":
                    self._detach(existing[0])
                    status = 200
                elif conflict == "keep":
                    stem, dot, ext = name.rpartition(".") if "." in name.lstrip(".") else (name, "", "")
                    i = 1
                    while True:
                        cand = f"{stem} ({i}){dot}{ext}"
                        if not any(c.name == cand and c.kind == src.kind for c in dest.children):
                            break
                        i += 1
                    name = cand
                else:
                    raise wb_error(409, f'Cannot complete action: file or folder "{name}" already exists in this location')
            if action == "move":
                for y in src.walk():
                    y.provider.index.pop(y.id, None)
                src.parent.children.remove(src)
                src.name = name
                src.parent = dest
                dest.children.append(src)
                for y in src.walk():
                    y.provider = dest.provider
                    y.provider.index[y.id] = y
                out = src
            else:
                out = self._clone(src, dest, name)
            data = rdm.wb_entity(out)
        self._send_json(status, {"data": data})

    def _clone(self, src: Entry, parent: Entry, name: str) -> Entry:
        e = Entry(_new_id(), src.kind, name, parent, parent.provider)
        e.versions = [Version(**vars(v)) for v in src.versions]
        parent.children.append(e)
        parent.provider.index[e.id] = e
        for c in src.children:
            self._clone(c, e, c.name)
        return e


def main(argv=None) -> None:
    import argparse
    ap = argparse.ArgumentParser(description="Fake GakuNin RDM server (OSF API v2 + WaterButler) on 127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--page-size", type=int, default=3)
    a = ap.parse_args(argv)
    srv = RDMServer.default(port=a.port, page_size=a.page_size)
    print(json.dumps({"api_url": srv.api_url, "port": srv.port,
                      "tokens": {"admin": TOKEN_ADMIN, "writer": TOKEN_WRITER, "reader": TOKEN_READER,
                                 "outsider": TOKEN_OUTSIDER, "read_scope": TOKEN_READ_SCOPE}}), flush=True)
    try:
        srv.httpd.serve_forever(poll_interval=0.1)
    finally:
        srv.stop()


if __name__ == "__main__":
    main()
