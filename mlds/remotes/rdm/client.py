"""Synchronous client for GakuNin RDM (OSF API v2 + WaterButler v1), on httpx.

Only the API base URL is configured; every file-service (WaterButler) URL is read
from ``links`` in responses, never built from a host name.  The HTTP transport is
separate (``transport=`` is passed to :class:`httpx.Client`), so tests can inject one.

Behaviour (see ``/work/shared/reference/gakunin-rdm-api.md``):

* ``Content-Length`` on every upload; bodies are streamed from bytes, paths or file
  objects in chunks, never read whole into memory.
* md5/sha256 computed while streaming and compared with the server's hashes after
  each upload and each full download.
* Retries with exponential backoff on 429 (honouring ``Retry-After``), 502/503/504 and
  dropped connections (:class:`httpx.TransportError`); interrupted downloads resume
  with a ``Range`` request.
* Download redirects are followed by hand; ``Authorization`` is never sent to another
  origin (presigned storage URLs reject it).
* 401/403 → :class:`RDMAuthError` (``AuthError``), 404 → :class:`RDMNotFoundError`
  (also ``FileNotFoundError``), 409 → :class:`RDMConflictError` (``ConflictError``),
  406 → :class:`RDMQuotaError`, everything else → ``RemoteError``; messages are one
  line and never contain the token.
"""

from __future__ import annotations

import email.utils
import hashlib
import io
import json
import os
import random
import time
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Callable, Iterable, Iterator
from urllib.parse import urlsplit, urlunsplit

import httpx

from mlds.errors import AuthError, ConflictError, IntegrityError, RemoteError

DEFAULT_API_URL = "https://api.rdm.nii.ac.jp/v2/"
OSF_API_URL = "https://api.osf.io/v2/"
CHUNK_SIZE = 1 << 20
RETRY_STATUSES = (429, 502, 503, 504)
API_ACCEPT = "application/vnd.api+json"


# ----------------------------------------------------------------------------- errors


class RDMAuthError(AuthError, PermissionError):
    """401/403: token missing, rejected, or lacking permission/scope."""


class RDMNotFoundError(RemoteError, FileNotFoundError):
    """404: no such project, provider, file or folder."""


class RDMProjectNotFound(RemoteError):
    """The project does not exist, or this token may not see it.  Deliberately *not* a
    FileNotFoundError: a missing project is not an empty store."""


class RDMConflictError(ConflictError, FileExistsError):
    """409: a file or folder of that name already exists."""

    def __init__(self, remote: str, message: str):
        self.remote = remote
        super().__init__(f"remote {remote!r}: {message}")


class RDMQuotaError(RemoteError):
    """406: not enough quota left on the project."""


class RDMIntegrityError(IntegrityError):
    """Hashes after a transfer do not match."""


# storage providers GakuNin RDM knows (rdmclient KNOWN_PROVIDERS + RDM-waterbutler providers): a second URL
# component with one of these names means that storage, never a folder in the default one
KNOWN_PROVIDERS = frozenset(
    "osfstorage github figshare googledrive azureblobstorage bitbucket box dataverse dropbox dropboxbusiness "
    "gitlab iqbrims nextcloud nextcloudinstitutions ociinstitutions owncloud onedrive onedrivebusiness rushfiles "
    "s3 s3compat s3compatb3 s3compatinstitutions s3compatsigv4 swift weko".split())


def check_guid(guid: str) -> str:
    """A project id must be a bare GUID: user info (``TOKEN@guid``) is refused without echoing it."""
    if "@" in guid or ":" in guid:
        raise AuthError("rdm", "refusing user info (a token?) in an rdm:// URL: the token must come from "
                               "MLDS_RDM_TOKEN or an owner-only token file, never the URL")
    if not guid or not guid.replace("-", "").replace("_", "").isalnum():
        raise RemoteError("rdm", f"{guid[:40]!r} is not a project id (rdm://<project>/<storage>/<path>)")
    return guid


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def strip_query(url: str) -> str:
    p = urlsplit(url)
    return urlunsplit((p.scheme, p.netloc, p.path, "", ""))


def _origin(url: str) -> tuple:
    p = urlsplit(url)
    port = p.port or {"http": 80, "https": 443}.get(p.scheme)
    return (p.scheme, (p.hostname or "").lower(), port)


# ----------------------------------------------------------------------------- models


@dataclass
class Entry:
    """A file or folder (WaterButler entity, API v2 file, or a provider root)."""

    name: str
    kind: str  # "file" | "folder"
    path: str  # WaterButler path: opaque id for osfstorage, real path for others
    materialized: str  # human path, "/a/b.bin" or "/a/"
    provider: str
    resource: str  # project guid
    size: int | None = None
    hashes: dict = field(default_factory=dict)
    version: int | None = None
    etag: str | None = None
    modified: str | None = None
    created: str | None = None
    links: dict = field(default_factory=dict)
    id: str | None = None
    api: bool = False  # came from API v2 (its links.download is the web host)

    @property
    def is_dir(self) -> bool:
        return self.kind == "folder"

    @property
    def url(self) -> str:
        """The WaterButler URL of this entity (listing for folders, download for files)."""
        if self.links.get("download") and not self.api:
            return self.links["download"]
        for key in ("move", "delete", "upload"):
            if self.links.get(key):
                return strip_query(self.links[key])
        raise RemoteError(self.resource, f"no file-service link for {self.materialized}")

    @classmethod
    def from_wb(cls, d: dict) -> "Entry":
        a = d.get("attributes", {})
        extra = a.get("extra") or {}
        size = a.get("sizeInt", a.get("size"))
        try:
            size = int(size) if size is not None else None
        except (TypeError, ValueError):
            size = None
        version = extra.get("version")
        return cls(name=a.get("name", ""), kind=a.get("kind", "file"), path=a.get("path", ""),
                   materialized=a.get("materialized", a.get("path", "")), provider=a.get("provider", ""),
                   resource=a.get("resource", ""), size=size,
                   hashes={k: v for k, v in (extra.get("hashes") or {}).items() if v},
                   version=int(version) if isinstance(version, (int, str)) and str(version).isdigit() else None,
                   etag=a.get("etag"), modified=a.get("modified_utc") or a.get("modified"),
                   created=a.get("created_utc"), links=dict(d.get("links") or {}), id=d.get("id"))

    @classmethod
    def from_api(cls, d: dict, resource: str = "") -> "Entry":
        a = d.get("attributes", {})
        extra = a.get("extra") or {}
        return cls(name=a.get("name", ""), kind=a.get("kind", "file"), path=a.get("path", ""),
                   materialized=a.get("materialized_path", a.get("path", "")), provider=a.get("provider", ""),
                   resource=resource, size=a.get("size"),
                   hashes={k: v for k, v in (extra.get("hashes") or {}).items() if v},
                   version=a.get("current_version") if a.get("kind") == "file" else None,
                   etag=None, modified=a.get("date_modified"), created=a.get("date_created"),
                   links=dict(d.get("links") or {}), id=d.get("id"), api=True)


@dataclass
class Provider:
    name: str
    for_institutions: bool
    links: dict
    resource: str

    def root(self) -> Entry:
        up = self.links.get("upload", "")
        return Entry(name="", kind="folder", path="/", materialized="/", provider=self.name,
                     resource=self.resource,
                     links={"upload": up, "new_folder": self.links.get("new_folder", ""), "move": strip_query(up)})


@dataclass
class Project:
    id: str
    title: str
    public: bool
    permissions: list
    raw: dict = field(repr=False, default_factory=dict)

    @property
    def permission(self) -> str | None:
        for p in ("admin", "write", "read"):
            if p in self.permissions:
                return p
        return None


@dataclass
class User:
    id: str
    full_name: str


# ----------------------------------------------------------------------------- upload sources


class _UploadSource:
    """A re-playable upload body: bytes, a local path or a seekable binary file."""

    def __init__(self, data: bytes | bytearray | memoryview | str | os.PathLike | BinaryIO, chunk_size: int):
        self.chunk_size = chunk_size
        self._bytes = None
        self._path = None
        self._file = None
        if isinstance(data, (bytes, bytearray, memoryview)):
            self._bytes = bytes(data)
            self.size = len(self._bytes)
        elif isinstance(data, (str, os.PathLike)):
            self._path = os.fspath(data)
            self.size = os.stat(self._path).st_size
        else:
            self._file = data
            self._start = data.tell()
            data.seek(0, io.SEEK_END)
            self.size = data.tell() - self._start
            data.seek(self._start)
        self.md5 = self.sha256 = None
        self.sent = 0

    def body(self) -> tuple[Iterable[bytes], int]:
        md5, sha = hashlib.md5(), hashlib.sha256()
        self.md5, self.sha256, self.sent = md5, sha, 0

        def gen() -> Iterator[bytes]:
            if self._bytes is not None:
                view = memoryview(self._bytes)
                for i in range(0, len(view), self.chunk_size):
                    b = bytes(view[i:i + self.chunk_size])
                    md5.update(b)
                    sha.update(b)
                    self.sent += len(b)
                    yield b
                return
            f = open(self._path, "rb") if self._path is not None else self._file
            try:
                if self._file is not None:
                    f.seek(self._start)
                left = self.size
                while left > 0:
                    b = f.read(min(self.chunk_size, left))
                    if not b:
                        break
                    md5.update(b)
                    sha.update(b)
                    self.sent += len(b)
                    left -= len(b)
                    yield b
            finally:
                if self._path is not None:
                    f.close()
        return gen(), self.size


# ----------------------------------------------------------------------------- client


class RDMClient:
    """GakuNin RDM / OSF client.

    ``api_url``: API v2 base (default GakuNin's; ``OSF_API_URL`` for osf.io or a private
    installation's).  ``token``: personal access token (``None`` → anonymous).
    ``retries``: total tries per request; ``backoff``/``max_backoff``: seconds for the
    exponential backoff; ``max_retry_after``: cap on an honoured ``Retry-After``.
    """

    def __init__(self, token: str | None = None, api_url: str = DEFAULT_API_URL, *,
                 transport: httpx.BaseTransport | None = None, retries: int = 6, backoff: float = 0.5,
                 max_backoff: float = 30.0, max_retry_after: float = 300.0, timeout: float | httpx.Timeout | None = None,
                 chunk_size: int = CHUNK_SIZE, remote: str | None = None, verify_hashes: bool = True,
                 sleep: Callable[[float], None] = time.sleep):
        self.api_url = api_url if api_url.endswith("/") else api_url + "/"
        self.__token = token or None
        self.retries = max(1, int(retries))
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_retry_after = max_retry_after
        self.chunk_size = chunk_size
        self.verify_hashes = verify_hashes
        self.remote = remote or f"rdm:{urlsplit(self.api_url).hostname}"
        self._sleep_fn = sleep
        if timeout is None:
            timeout = httpx.Timeout(connect=30.0, read=300.0, write=300.0, pool=60.0)
        self._http = httpx.Client(transport=transport, timeout=timeout, follow_redirects=False,
                                  headers={"User-Agent": "mlds-rdm/0.1"})

    def __repr__(self) -> str:
        return f"RDMClient(api_url={self.api_url!r}, token={'<set>' if self.__token else None})"

    @property
    def has_token(self) -> bool:
        return self.__token is not None

    def close(self) -> None:
        self._http.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ------------------------------------------------------------------ low level

    def _auth_headers(self) -> dict:
        return {"Authorization": f"Bearer {self.__token}"} if self.__token else {}

    def _scrub(self, text: str) -> str:
        if self.__token:
            text = text.replace(self.__token, "***")
        return _one_line(text)

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        if retry_after:
            try:
                return min(self.max_retry_after, max(0.0, float(retry_after)))
            except ValueError:
                try:
                    when = email.utils.parsedate_to_datetime(retry_after).timestamp()
                    return min(self.max_retry_after, max(0.0, when - time.time()))
                except (TypeError, ValueError):
                    pass
        d = min(self.max_backoff, self.backoff * (2 ** (attempt - 1)))
        return d * (0.5 + random.random() / 2)

    def _send(self, method: str, url: str, *, params: dict | None = None, headers: dict | None = None,
              body: bytes | _UploadSource | None = None, stream: bool = False, auth: bool = True,
              json_body: Any = None) -> httpx.Response:
        """One logical request with retries. Returns the final response (any status)."""
        attempt = 0
        while True:
            attempt += 1
            h = self._auth_headers() if auth else {}
            h.update(headers or {})
            content: Any = None
            if json_body is not None:
                content = json.dumps(json_body).encode()
                h["Content-Type"] = "application/json"
                h["Content-Length"] = str(len(content))
            elif isinstance(body, _UploadSource):
                content, length = body.body()
                h["Content-Length"] = str(length)
                h.setdefault("Content-Type", "application/octet-stream")
            elif body is not None:
                content = body
                h["Content-Length"] = str(len(body))
            try:
                req = self._http.build_request(method, url, params=params, headers=h, content=content)
                resp = self._http.send(req, stream=stream)
            except httpx.TransportError as exc:
                if attempt >= self.retries:
                    raise RemoteError(self.remote, f"{method} {urlsplit(url).path}: connection failed after "
                                                   f"{attempt} tries ({type(exc).__name__})") from None
                self._sleep_fn(self._delay(attempt, None))
                continue
            resp.mlds_attempts = attempt  # type: ignore[attr-defined]
            if resp.status_code in RETRY_STATUSES and attempt < self.retries:
                ra = resp.headers.get("Retry-After")
                resp.close()
                self._sleep_fn(self._delay(attempt, ra))
                continue
            return resp

    def _error(self, resp: httpx.Response, what: str) -> Exception:
        """Map an error response to a one-line typed exception."""
        try:
            if not resp.is_closed:
                resp.read()
            body = resp.json()
        except Exception:
            body = None
        detail = ""
        if isinstance(body, dict):
            if isinstance(body.get("errors"), list) and body["errors"]:
                detail = str(body["errors"][0].get("detail", ""))
            else:
                detail = str(body.get("message_long") or body.get("message") or body.get("Message") or
                             body.get("error") or "")
        s = resp.status_code
        hint = {401: "authentication failed (token missing, invalid or expired)",
                403: "permission denied (read-only contributor, not a contributor, or token lacks write scope)",
                404: "not found", 406: "not enough quota on the project",
                409: "already exists", 411: "server requires Content-Length",
                429: "rate limited; retries exhausted"}.get(s, f"HTTP {s}")
        msg = f"{what}: {hint}"
        if detail and s not in (404,):
            msg += f" ({detail})"
        msg = f"{msg} [HTTP {s}]" if str(s) not in msg else msg
        tries = getattr(resp, "mlds_attempts", 1)
        if tries > 1 and s in RETRY_STATUSES:
            msg += f" after {tries} tries"
        msg = self._scrub(msg)
        if s in (401, 403):
            return RDMAuthError(self.remote, msg)
        if s == 404 or s == 410:
            return RDMNotFoundError(self.remote, msg)
        if s == 409:
            return RDMConflictError(self.remote, msg)
        if s == 406:
            return RDMQuotaError(self.remote, msg)
        return RemoteError(self.remote, msg)

    def _json(self, method: str, url: str, what: str, ok=(200,), **kw) -> Any:
        resp = self._send(method, url, **kw)
        if resp.status_code not in ok:
            raise self._error(resp, what)
        if resp.status_code == 204 or not resp.content:
            return None
        try:
            return resp.json()
        except ValueError:
            raise RemoteError(self.remote, f"{what}: response is not JSON [HTTP {resp.status_code}]") from None

    def _api(self, path_or_url: str, what: str, params: dict | None = None) -> Any:
        url = path_or_url if "://" in path_or_url else self.api_url + path_or_url.lstrip("/")
        return self._json("GET", url, what, params=params, headers={"Accept": API_ACCEPT})

    def _api_pages(self, path_or_url: str, what: str, params: dict | None = None) -> Iterator[dict]:
        """Follow ``links.next`` until null (works for both 2.0 and 2.1+ envelopes)."""
        url: str | None = path_or_url
        while url:
            body = self._api(url, what, params=params)
            params = None  # the next link carries the query
            yield from body.get("data") or []
            url = (body.get("links") or {}).get("next")

    # ------------------------------------------------------------------ API v2

    def me(self) -> User:
        d = self._api("users/me/", "token check")["data"]
        return User(d["id"], (d.get("attributes") or {}).get("full_name", ""))

    def _project_scope(self, guid: str):
        """Errors about the project itself, said as such (404/410: not found or not visible; 401/403: not visible)."""
        import contextlib

        @contextlib.contextmanager
        def scope():
            try:
                yield
            except RDMNotFoundError:
                raise RDMProjectNotFound(self.remote, f"project {guid} not found or not visible to this token") from None
            except RDMAuthError as err:
                if "401" in str(err) and not self.has_token:
                    raise RDMAuthError(self.remote, f"project {guid} is private: a token is needed "
                                                    f"(MLDS_RDM_TOKEN or the token file)") from None
                raise RDMAuthError(self.remote, f"project {guid} not found or not visible to this token "
                                                f"[{'HTTP 401' if '401' in str(err) else 'HTTP 403'}]") from None
        return scope()

    def project(self, guid: str) -> Project:
        with self._project_scope(guid):
            d = self._api(f"nodes/{guid}/", f"project {guid}")["data"]
        a = d.get("attributes") or {}
        return Project(d["id"], a.get("title", ""), bool(a.get("public")),
                       list(a.get("current_user_permissions") or []), raw=d)

    def contributors(self, guid: str) -> list[dict]:
        out = []
        for c in self._api_pages(f"nodes/{guid}/contributors/", f"contributors of {guid}"):
            uid = (((c.get("relationships") or {}).get("users") or {}).get("data") or {}).get("id")
            name = ((((c.get("embeds") or {}).get("users") or {}).get("data") or {}).get("attributes") or {}).get(
                "full_name", "")
            out.append({"user": uid, "name": name, "permission": (c.get("attributes") or {}).get("permission")})
        return out

    def providers(self, guid: str) -> list[Provider]:
        out = []
        with self._project_scope(guid):
            for d in self._api_pages(f"nodes/{guid}/files/", f"storage of {guid}"):
                a = d.get("attributes") or {}
                out.append(Provider(a.get("provider") or a.get("name"), bool(a.get("for_institutions")),
                                    dict(d.get("links") or {}), guid))
        return out

    def creator_quota(self, project: "Project") -> dict | None:
        """``{"max": bytes, "used": bytes}`` from the web app's per-project quota endpoint
        (``/api/v1/project/<guid>/get_creator_quota/`` on the host of the project's ``links.html``).

        That endpoint belongs to the web UI (RDM-osf.io ``website/project/views/quota.py``,
        ``@must_be_contributor_or_public``), whose requests are authenticated by a session cookie
        or HTTP Basic login only (``framework/sessions`` ``before_request``): a personal access
        token is not accepted there, so the token is not sent.  It answers for public projects;
        for private ones the answer is a login redirect and ``None`` is returned ("not reported").
        """
        html = ((project.raw.get("links") or {}).get("html")) or ""
        p = urlsplit(html)
        if not p.scheme or not p.netloc:
            return None
        url = urlunsplit((p.scheme, p.netloc, f"/api/v1/project/{project.id}/get_creator_quota/", "", ""))
        try:
            resp = self._send("GET", url, auth=False, headers={"Accept": "application/json"})
        except RemoteError:
            return None
        try:
            if resp.status_code != 200:
                return None
            body = resp.json()
        except ValueError:
            return None
        finally:
            resp.close()
        if isinstance(body, dict) and isinstance(body.get("max"), (int, float)) and isinstance(body.get("used"), (int, float)):
            return {"max": int(body["max"]), "used": int(body["used"])}
        return None

    @staticmethod
    def pick_provider(providers: list[Provider]) -> Provider:
        """``osfstorage`` when present, else the first institutional storage, else the first."""
        if not providers:
            raise RemoteError("rdm", "project has no storage providers")
        for p in providers:
            if p.name == "osfstorage":
                return p
        for p in providers:
            if p.for_institutions:
                return p
        return providers[0]

    def list_folder_api(self, guid: str, provider: str, folder_path: str = "/",
                        page_size: int | None = None) -> list[Entry]:
        """Folder listing through API v2 (paginated with ``links.next``).  ``folder_path`` is
        the WaterButler path of the folder ("/" for the root, "/<id>/" for osfstorage)."""
        sub = folder_path.strip("/")
        url = f"nodes/{guid}/files/{provider}/" + (sub + "/" if sub else "")
        params = {"page[size]": str(page_size)} if page_size else None
        return [Entry.from_api(d, guid) for d in self._api_pages(url, f"listing {provider}:{folder_path}", params)]

    def file_versions_api(self, file_id: str) -> list[dict]:
        return [dict(id=d["id"], **(d.get("attributes") or {}))
                for d in self._api_pages(f"files/{file_id}/versions/", f"versions of {file_id}")]

    # ------------------------------------------------------------------ WaterButler

    def list_folder(self, folder: Entry) -> list[Entry]:
        """Direct children of a folder via WaterButler; follows ``next_token`` pages."""
        url = strip_query(folder.links.get("move") or folder.links.get("upload") or folder.url)
        what = f"listing {folder.provider}:{folder.materialized}"
        out: list[Entry] = []
        params: dict | None = None
        seen = set()
        while True:
            body = self._json("GET", url, what, params=params)
            out.extend(Entry.from_wb(d) for d in body.get("data") or [])
            tok = body.get("next_token")
            if not tok or tok in seen:
                return out
            seen.add(tok)
            params = {"next_token": tok}

    def metadata(self, entry: Entry, version: int | str | None = None) -> Entry:
        params = {"meta": ""}
        if version is not None:
            params["version"] = str(version)
        body = self._json("GET", entry.url, f"metadata of {entry.materialized}", params=params)
        return Entry.from_wb(body["data"])

    def versions(self, entry: Entry) -> list[dict]:
        """Newest first: ``{"version", "modified", "hashes", "user"}``."""
        body = self._json("GET", entry.url, f"versions of {entry.materialized}", params={"versions": ""})
        out = []
        for d in body.get("data") or []:
            a = d.get("attributes") or {}
            extra = a.get("extra") or {}
            out.append({"version": a.get("version", d.get("id")), "modified": a.get("modified_utc") or a.get("modified"),
                        "hashes": extra.get("hashes") or {}, "user": (extra.get("user") or {}).get("name")})
        return out

    def _open_download(self, url: str, params: dict | None, rng: str | None) -> httpx.Response:
        """GET with manual redirect handling; never sends Authorization to another origin."""
        headers = {"Range": rng} if rng else {}
        resp = self._send("GET", url, params=params, headers=headers, stream=True)
        hops = 0
        origin = _origin(url)
        while resp.status_code in (301, 302, 303, 307, 308):
            loc = resp.headers.get("Location")
            resp.close()
            hops += 1
            if not loc or hops > 5:
                raise RemoteError(self.remote, f"download of {urlsplit(url).path}: bad redirect")
            nxt = str(httpx.URL(str(resp.request.url)).join(loc))
            same = _origin(nxt) == origin
            resp = self._send("GET", nxt, headers=headers, stream=True, auth=same)
        return resp

    def iter_download(self, entry: Entry, *, start: int | None = None, end: int | None = None,
                      version: int | str | None = None, verify: bool | None = None) -> Iterator[bytes]:
        """Yield the bytes of ``entry`` (``[start, end)`` if given), streaming.

        A full download is checked against ``entry.hashes`` (md5/sha256) and size.
        Interrupted transfers resume with a Range request."""
        verify = self.verify_hashes if verify is None else verify
        params = {"version": str(version)} if version is not None else None
        full = start in (None, 0) and end is None
        lo = start or 0
        if lo < 0:
            if entry.size is None:
                entry = self.metadata(entry, version)
            lo = max(0, (entry.size or 0) + lo)
        hi = end
        if hi is not None and hi < 0:
            if entry.size is None:
                entry = self.metadata(entry, version)
            hi = max(0, (entry.size or 0) + hi)
        if hi is not None and hi <= lo:
            return
        if full and verify and version is not None and str(entry.version) != str(version):
            entry = self.metadata(entry, version)  # hashes of that version
        md5 = hashlib.md5() if full and verify else None
        sha = hashlib.sha256() if full and verify else None
        pos = lo
        attempt = 0
        what = f"download of {entry.materialized}"
        while True:
            rng = None
            if pos > 0 or hi is not None:
                rng = f"bytes={pos}-" + (str(hi - 1) if hi is not None else "")
            resp = self._open_download(entry.url, params, rng)
            try:
                if resp.status_code == 416:
                    return
                if resp.status_code not in (200, 206):
                    raise self._error(resp, what)
                skip = pos if (resp.status_code == 200 and rng) else 0
                limit = None if hi is None else hi - pos
                try:
                    for chunk in resp.iter_bytes(self.chunk_size):
                        if skip:
                            if len(chunk) <= skip:
                                skip -= len(chunk)
                                continue
                            chunk = chunk[skip:]
                            skip = 0
                        if limit is not None:
                            chunk = chunk[:limit]
                            limit -= len(chunk)
                        if md5 is not None:
                            md5.update(chunk)
                            sha.update(chunk)
                        pos += len(chunk)
                        if chunk:
                            yield chunk
                        if limit is not None and limit <= 0:
                            break
                except httpx.TransportError as exc:
                    attempt += 1
                    if attempt >= self.retries:
                        raise RemoteError(self.remote, f"{what}: connection lost after {attempt} tries "
                                                       f"({type(exc).__name__})") from None
                    self._sleep_fn(self._delay(attempt, None))
                    continue
            finally:
                resp.close()
            break
        if md5 is not None:
            self._verify(entry, pos, md5.hexdigest(), sha.hexdigest(), what)

    def _verify(self, entry: Entry, size: int, md5: str, sha256: str, what: str, check_size: bool = True) -> None:
        if check_size and entry.size is not None and size != entry.size:
            raise RDMIntegrityError(f"{self.remote}: {what}: got {size} bytes, expected {entry.size}")
        want = entry.hashes
        if want.get("sha256") and want["sha256"] != sha256:
            raise RDMIntegrityError(f"{self.remote}: {what}: sha256 mismatch (got {sha256}, expected {want['sha256']})")
        if want.get("md5") and want["md5"] != md5:
            raise RDMIntegrityError(f"{self.remote}: {what}: md5 mismatch (got {md5}, expected {want['md5']})")

    def download(self, entry: Entry, dest: str | os.PathLike | BinaryIO, **kw) -> int:
        """Stream to a path (written beside it, renamed into place when complete) or a binary file."""
        if isinstance(dest, (str, os.PathLike)):
            from mlds.util import atomic_path

            with atomic_path(dest) as tmp, open(tmp, "wb") as f:
                return self.download(entry, f, **kw)
        n = 0
        for chunk in self.iter_download(entry, **kw):
            dest.write(chunk)
            n += len(chunk)
        return n

    def read(self, entry: Entry, **kw) -> bytes:
        return b"".join(self.iter_download(entry, **kw))

    def _upload(self, url: str, params: dict | None, source: _UploadSource, what: str, ok: tuple) -> Entry:
        resp = self._send("PUT", url, params=params, body=source)
        if resp.status_code not in ok:
            raise self._error(resp, what)
        return self._uploaded(resp, source, what)

    def _uploaded(self, resp: httpx.Response, source: _UploadSource, what: str) -> Entry:
        entry = Entry.from_wb(resp.json()["data"])
        if source.sent != source.size:
            raise RDMIntegrityError(f"{self.remote}: {what}: source changed size while uploading")
        if self.verify_hashes:
            self._verify(entry, source.size, source.md5.hexdigest(), source.sha256.hexdigest(), what)
        return entry

    def upload_new(self, parent: Entry, name: str, data) -> Entry:
        """Create file ``name`` in folder ``parent``; 409 → :class:`RDMConflictError`."""
        src = _UploadSource(data, self.chunk_size)
        url = parent.links.get("upload") or parent.url
        return self._upload(url, {"kind": "file", "name": name}, src,
                            f"upload of {parent.materialized}{name}", (201, 200))

    def create(self, parent: Entry, name: str, data) -> Entry:
        """Create ``parent/name``, never turning an existing file into an update on purpose:
        a 409 (the name exists) raises :class:`RDMConflictError` (a ``FileExistsError``).

        This is **not** an atomic exclusive create on the real service: WaterButler decides the
        409 before reading the body, and a create that loses a race at commit becomes a new
        version of the other's file, answered 200 (RDM-osf.io ``osfstorage_create_child``).  A
        200 is therefore reported as the lost race it is (``RDMConflictError``) -- but the other
        file has gained our bytes as its latest version.  Locks use folder creation instead
        (409 at commit time), see :mod:`mlds.store.locks`.

        A 409 that answers a *retried* PUT may be our own first try, applied but unanswered
        (dropped connection): it counts as success when the file there has exactly our bytes.
        For big bodies a server may reset the connection instead of answering 409 (it decides
        before reading the body); after the retries, an existing file with other bytes is
        reported as the conflict it is."""
        src = _UploadSource(data, self.chunk_size)
        url = parent.links.get("upload") or parent.url
        what = f"create of {parent.materialized}{name}"
        try:
            resp = self._send("PUT", url, params={"kind": "file", "name": name}, body=src)
        except RemoteError:
            found = self.find_child(parent, name, kind="file")
            if found is None:
                raise
            if self._same_bytes(found, src):
                return found
            raise RDMConflictError(self.remote, f"{what}: already exists") from None
        if resp.status_code == 409:
            err = self._error(resp, what)
            if getattr(resp, "mlds_attempts", 1) > 1:
                found = self.find_child(parent, name, kind="file")
                if found is not None and self._same_bytes(found, src):
                    return found
            raise err
        if resp.status_code == 200:
            resp.read()
            raise RDMConflictError(self.remote, f"{what}: another writer created it first (the service kept our "
                                                f"bytes as a new version of that file)")
        if resp.status_code != 201:
            raise self._error(resp, what)
        return self._uploaded(resp, src, what)

    @staticmethod
    def _same_bytes(entry: Entry, src: _UploadSource) -> bool:
        want = entry.hashes.get("sha256")
        if not want or entry.size != src.size:
            return False
        gen, _ = src.body()
        for _ in gen:  # hashes the source without sending it
            pass
        return src.sha256.hexdigest() == want

    def update(self, entry: Entry, data) -> Entry:
        """New version of an existing file (200)."""
        src = _UploadSource(data, self.chunk_size)
        url = entry.links.get("upload") or entry.url + "?kind=file"
        return self._upload(url, None, src, f"update of {entry.materialized}", (200, 201))

    def upload(self, parent: Entry, name: str, data, existing: Entry | None = None) -> Entry:
        """Create or update ``parent/name``.  A 409 (e.g. a retried upload that had already
        landed) falls back to finding the file and updating it."""
        if existing is None:
            try:
                return self.upload_new(parent, name, data)
            except RDMConflictError:
                existing = self.find_child(parent, name, kind="file")
                if existing is None:
                    raise
        return self.update(existing, data)

    def find_child(self, parent: Entry, name: str, kind: str | None = None) -> Entry | None:
        for e in self.list_folder(parent):
            if e.name == name and (kind is None or e.kind == kind):
                return e
        return None

    def create_folder(self, parent: Entry, name: str, exist_ok: bool = True) -> Entry:
        url = parent.links.get("new_folder") or (parent.url + "?kind=folder")
        what = f"mkdir {parent.materialized}{name}/"
        resp = self._send("PUT", url, params={"kind": "folder", "name": name}, body=b"")
        if resp.status_code == 409 and exist_ok:
            found = self.find_child(parent, name, kind="folder")
            if found is not None:
                return found
        if resp.status_code not in (200, 201):
            raise self._error(resp, what)
        return Entry.from_wb(resp.json()["data"])

    def delete(self, entry: Entry, confirm_root: bool = False) -> None:
        url = entry.links.get("delete") or entry.url
        params = {"confirm_delete": "1"} if confirm_root else None
        resp = self._send("DELETE", url, params=params)
        if resp.status_code == 404 and getattr(resp, "mlds_attempts", 1) > 1:
            return  # an earlier try went through
        if resp.status_code not in (200, 204):
            raise self._error(resp, f"delete of {entry.materialized}")

    def _movecopy(self, action: str, entry: Entry, dest_folder: Entry | None, new_name: str | None,
                  conflict: str) -> Entry | None:
        body: dict = {"action": action, "conflict": conflict}
        if new_name:
            body["rename"] = new_name
        if dest_folder is not None:
            body.update(path=dest_folder.path if dest_folder.path.endswith("/") else dest_folder.path + "/",
                        resource=dest_folder.resource or entry.resource, provider=dest_folder.provider)
        url = strip_query(entry.links.get("move") or entry.url)
        resp = self._send("POST", url, json_body=body)
        what = f"{action} of {entry.materialized}"
        if resp.status_code == 202:
            return None
        if resp.status_code not in (200, 201):
            raise self._error(resp, what)
        return Entry.from_wb(resp.json()["data"])

    def move(self, entry: Entry, dest_folder: Entry, new_name: str | None = None,
             conflict: str = "replace") -> Entry | None:
        return self._movecopy("move", entry, dest_folder, new_name, conflict)

    def copy(self, entry: Entry, dest_folder: Entry, new_name: str | None = None,
             conflict: str = "replace") -> Entry | None:
        return self._movecopy("copy", entry, dest_folder, new_name, conflict)

    def rename(self, entry: Entry, new_name: str, conflict: str = "replace") -> Entry | None:
        return self._movecopy("rename", entry, None, new_name, conflict)
