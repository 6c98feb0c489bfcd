"""Remote URL -> fsspec filesystem, and backend errors -> one-line mlds errors.

:func:`open_remote_fs` returns ``(fs, root)`` for a :class:`Remote`; the store
works on ``root + "/" + key`` with ordinary fsspec calls and never looks at the
backend type.  Differences between backends are absorbed here:

* writes create missing parent directories everywhere (local, SFTP; S3 has
  none), so ``fs.pipe_file(root + "/objects/ab/cd", data)`` just works;
* ``fs.pipe_file(path, data, mode="create")`` is an atomic create-if-absent on
  local (O_EXCL), SFTP (SSH_FXF_EXCL) and S3 (``If-None-Match: *``), raising
  ``FileExistsError`` if the object exists;
* listing caches are off, so another writer's refs are seen;
* the ``https://`` mirror is read-only: writes raise :class:`RemoteError`.

Wrap every operation on the fs in ``with translate_errors(remote):`` to turn
backend exceptions into :class:`AuthError` / :class:`RemoteError` (one line,
naming the remote, never a secret).  ``FileNotFoundError`` and
``FileExistsError`` pass through unchanged.

Each call opens a new filesystem instance (no fsspec instance cache: the
credentials in the environment may change); keep the returned fs for the
duration of an operation.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import socket
import warnings
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import unquote, urlsplit

import fsspec

from mlds.errors import AuthError, ConflictError, MldsError, RemoteError
from mlds.remotes.config import CREDENTIAL_HELP, Remote, redact_url, url_scheme

SFTP_PASSWORD_ENV = "MLDS_SFTP_PASSWORD"
S3_ENDPOINT_ENVS = ("MLDS_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
# Environment variables whose values must never appear in a message.
_SECRET_ENVS = (
    "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", SFTP_PASSWORD_ENV,
    "MLDS_RDM_TOKEN", "RDM_TOKEN", "OSF_TOKEN",
)

_S3_AUTH_CODES = {
    "InvalidAccessKeyId": "access key not recognised",
    "SignatureDoesNotMatch": "secret key does not match the access key",
    "AccessDenied": "access denied",
    "AllAccessDisabled": "access denied",
    "InvalidToken": "session token invalid",
    "ExpiredToken": "credentials expired",
    "TokenRefreshRequired": "credentials expired",
    "InvalidClientTokenId": "access key not recognised",
    "UnrecognizedClientException": "access key not recognised",
    "AuthorizationHeaderMalformed": "credentials malformed (wrong region?)",
    "403": "access denied",
    "Forbidden": "access denied",
}


# -- opening --------------------------------------------------------------------

def open_remote_fs(remote: Remote) -> tuple[fsspec.AbstractFileSystem, str]:
    """An fsspec filesystem for ``remote`` and the store root inside it.

    Raises :class:`AuthError` / :class:`RemoteError` if the backend cannot be
    reached or refuses the credentials (SFTP connects here; S3 and HTTP
    connect lazily on the first operation).
    """
    scheme = url_scheme(remote.url)
    opener = _OPENERS.get(scheme)
    if opener is None:
        raise RemoteError(remote.name, f"unsupported URL scheme {scheme!r} in {redact_url(remote.url)}")
    with translate_errors(remote):
        return opener(remote)


def _opt_bool(remote: Remote, key: str, default: bool | None = None) -> bool | None:
    value = remote.options.get(key, default)
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on", "false", "no", "0", "off"):
        return value.lower() in ("true", "yes", "1", "on")
    raise RemoteError(remote.name, f"option {key!r} must be true or false")


def _exclusive_pipe_file(self, path, value, mode="overwrite", **kwargs):
    """``pipe_file`` whose ``mode="create"`` is an atomic exclusive create
    (fsspec's generic version checks ``exists`` first, which races)."""
    if mode != "create":
        return super(type(self), self).pipe_file(path, value, mode=mode, **kwargs)
    with self.open(path, "xb", **kwargs) as f:
        f.write(value)


@functools.cache
def _local_class():
    from fsspec.implementations.local import LocalFileSystem

    return type("MldsLocalFileSystem", (LocalFileSystem,), {"pipe_file": _exclusive_pipe_file})


def _open_local(remote: Remote):
    LocalFileSystem = _local_class()
    url = remote.url
    path = url[len("file://"):] if url.lower().startswith("file://") else url
    root = Path(unquote(path)).expanduser()
    if not root.is_absolute():
        root = root.resolve()
    fs = LocalFileSystem(auto_mkdir=True, skip_instance_cache=True)
    return fs, fs._strip_protocol(str(root))


class _S3Stream:
    """File-like ``read`` over the body of one ``GetObject``, driven from a synchronous caller.

    A reader task on the event loop keeps up to ``DEPTH`` blocks of about ``BLOCK`` bytes ahead of
    the caller, so the network is not idle while the caller hashes and writes (and a slow
    disk write does not stall the download), with bounded memory.  A block is the list of pieces as
    they came off the socket (:meth:`read_parts`): the event loop, which receives every byte, copies
    none of them into bigger buffers (the caller hashes and writes the pieces as they are)."""

    BLOCK = 4 * 1024 * 1024
    DEPTH = 4
    RECEIVE_BUFFER = 1024 * 1024  # aiohttp's, per stream (it reads the socket until twice this waits)

    def __init__(self, fs, path: str) -> None:
        import asyncio
        from fsspec.asyn import sync

        self._asyncio, self._loop = asyncio, fs.loop
        bucket, key, _ = fs.split_path(path)
        resp = sync(fs.loop, fs._call_s3, "get_object", Bucket=bucket, Key=key)
        self._body = resp["Body"]
        self._queue, self._task = sync(fs.loop, self._start)
        self._parts: list = []
        self._eof = False

    async def _start(self):
        queue = self._asyncio.Queue(maxsize=self.DEPTH)  # made on the loop it is used on
        return queue, self._asyncio.ensure_future(self._produce(queue))

    async def _produce(self, queue) -> None:
        try:
            content = _aiohttp_content(self._body)
            if content is not None:
                # aiohttp stops reading the socket while more than twice its buffer limit (64 KiB by
                # default) waits in it: raised, the body flows with far fewer pauses
                content.set_read_chunk_size(self.RECEIVE_BUFFER)
            while True:
                parts = await (self._read_pieces(content) if content is not None else self._read_block())
                await queue.put(parts)
                if not parts:
                    return
        except self._asyncio.CancelledError:
            raise  # closed by the reader
        except Exception as err:  # noqa: BLE001 - handed to the reader, raised there
            await queue.put(err)

    async def _read_pieces(self, content) -> list:
        """About ``BLOCK`` bytes as the pieces received (``readchunk``: no copy); [] at the end."""
        parts, got = [], 0
        try:
            while got < self.BLOCK:
                piece, end_of_http_chunk = await content.readchunk()
                if not piece:
                    if end_of_http_chunk:
                        continue  # a chunk boundary of a chunked body, not its end
                    break
                parts.append(piece)
                got += len(piece)
        except self._asyncio.TimeoutError as err:  # as aiobotocore's own read reports them
            from aiobotocore.response import AioReadTimeoutError

            raise AioReadTimeoutError(endpoint_url=str(getattr(self._body.raw_stream, "url", "")), error=err) from err
        except _aiohttp_connection_errors() as err:
            from botocore.response import ResponseStreamingError

            raise ResponseStreamingError(error=err) from err
        return parts

    async def _read_block(self) -> list:
        """Another body (not aiohttp's): ``BLOCK`` bytes through its own ``read``; [] at the end."""
        parts, got = [], 0
        while got < self.BLOCK:
            block = await self._body.read(self.BLOCK - got)
            if not block:
                break
            parts.append(block)
            got += len(block)
        return parts

    def _next_block(self) -> list:
        parts = self._asyncio.run_coroutine_threadsafe(self._queue.get(), self._loop).result()
        if isinstance(parts, BaseException):
            self._eof = True
            raise parts
        if not parts:
            self._eof = True
        return parts

    def read_parts(self, n: int) -> list:
        """The next pieces of the body, at most ``n`` bytes in all (only a piece that would go past
        ``n`` is cut); [] at the end."""
        if not self._parts:
            if self._eof:
                return []
            self._parts = list(reversed(self._next_block()))  # popped from the end, in order
        out, got = [], 0
        while self._parts and got < n:
            piece = self._parts.pop()
            if got + len(piece) > n:
                cut = n - got
                self._parts.append(piece[cut:])
                piece = piece[:cut]
            out.append(piece)
            got += len(piece)
        return out

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            parts = list(reversed(self._parts))
            self._parts = []
            while not self._eof:
                parts += self._next_block()
            return b"".join(parts)
        parts = self.read_parts(n)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def close(self) -> None:
        if getattr(self, "_task", None) is not None:
            self._loop.call_soon_threadsafe(self._task.cancel)
            self._task = None
        with contextlib.suppress(Exception):
            self._body.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _aiohttp_content(body):
    """The aiohttp ``StreamReader`` under an aiobotocore body, if that is what it is."""
    try:
        content = getattr(getattr(body, "raw_stream", None), "content", None)
    except Exception:  # noqa: BLE001 - another backend's response (httpx's raises until it is read)
        return None
    if content is None or not all(hasattr(content, a) for a in ("readchunk", "set_read_chunk_size")):
        return None
    return content


def _aiohttp_connection_errors() -> tuple:
    try:
        import aiohttp
    except ImportError:
        return ()
    return (aiohttp.ClientConnectionError,)


_PARALLEL_GET_MIN = 64 * 1024 * 1024
_RANGE_PART = 16 * 1024 * 1024
_RANGE_CONCURRENCY = 8


class _S3RangeReader:
    """``read`` over concurrent ranged GETs of one object, in order, at most 8 x 16 MiB in memory.

    Reads up to one byte past ``size`` (when the object has it), so a caller that stops at the
    declared size still notices an object that is longer than declared.
    """

    def __init__(self, fs, path: str, size: int) -> None:
        import asyncio
        from collections import deque

        self._fs, self._path, self._asyncio = fs, path, asyncio
        actual = fs.mlds_size(path)
        if actual is None:
            raise FileNotFoundError(path)
        self._end = min(actual, size + 1)
        self._next = 0
        self._parts: deque = deque()
        self._cur = memoryview(b"")
        self._fill()

    def _fill(self) -> None:
        while len(self._parts) < _RANGE_CONCURRENCY and self._next < self._end:
            stop = min(self._end, self._next + _RANGE_PART)
            coro = self._fs._cat_file(self._path, start=self._next, end=stop)
            self._parts.append(self._asyncio.run_coroutine_threadsafe(coro, self._fs.loop))
            self._next = stop

    def read(self, n: int = -1) -> bytes:
        if not len(self._cur):
            if not self._parts:
                return b""
            self._cur = memoryview(self._parts.popleft().result())
            self._fill()
        n = len(self._cur) if n is None or n < 0 else n
        out, self._cur = self._cur[:n], self._cur[n:]
        return bytes(out)

    def close(self) -> None:
        for f in self._parts:
            f.cancel()
        self._parts.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@functools.cache
def _s3_class():
    import s3fs

    class MldsS3FileSystem(s3fs.S3FileSystem):
        """s3fs plus what the store needs on an object store: conditional replace for compare-and-swap
        on refs, a size probe that is one HEAD (s3fs's ``info`` lists the prefix on a miss, to look for
        a "directory"), and ``mlds_multipart``: the transfer engine drives multipart uploads itself, so
        an object's hash is checked before the upload is completed."""

        mlds_multipart = True
        mlds_thread_safe = True  # one event loop serves every thread

        async def _cat_file(self, path, version_id=None, start=None, end=None, **kwargs):
            # a whole small object in one GET (s3fs asks for its size first, to split big reads)
            if start is not None or end is not None or kwargs:
                return await super()._cat_file(path, version_id=version_id, start=start, end=end, **kwargs)
            data, _ = await self._mlds_get(path, version_id)
            return data

        async def _mlds_get(self, path: str, version_id=None) -> tuple[bytes, str | None]:
            from s3fs.core import version_id_kw

            bucket, key, vers = self.split_path(path)
            resp = await self._call_s3("get_object", Bucket=bucket, Key=key, **version_id_kw(version_id or vers))
            try:
                return await resp["Body"].read(), resp.get("ETag")
            finally:
                resp["Body"].close()

        def mlds_cat_etag(self, path: str) -> tuple[bytes, str | None]:
            """Content and ETag of a small object, from one GET (``FileNotFoundError`` if absent)."""
            from fsspec.asyn import sync

            return sync(self.loop, self._mlds_get, path)

        mlds_parallel_get = False  # remote option parallel_get=true

        def mlds_open_stream(self, path: str, size: int | None = None):
            """A sequential reader of an object: one streaming GET (s3fs's ``open`` issues a ranged GET per
            block).  With ``parallel_get`` (a remote option: worth it on AWS, not on a server that reads the
            whole object for every range, as moto does), a large object whose ``size`` is known comes in
            concurrent ranged GETs handed out in order (the caller hashes and writes them as they come)."""
            if self.mlds_parallel_get and size is not None and size >= _PARALLEL_GET_MIN:
                return _S3RangeReader(self, path, size)
            return _S3Stream(self, path)

        def mlds_list_files(self, path: str) -> list[str]:
            """Names of the objects directly under ``path`` (one ``ListObjectsV2`` per 1,000; s3fs's ``ls``
            lists twice when there are none, to tell a missing "directory" from an empty one)."""
            bucket, key, _ = self.split_path(path)
            prefix = key.rstrip("/") + "/"
            names: list[str] = []
            kw: dict[str, Any] = {}
            while True:
                out = self.call_s3("list_objects_v2", Bucket=bucket, Prefix=prefix, Delimiter="/", **kw)
                names += [c["Key"][len(prefix):] for c in out.get("Contents", [])]
                if not out.get("IsTruncated"):
                    return names
                kw = {"ContinuationToken": out["NextContinuationToken"]}

        def mlds_size(self, path: str) -> int | None:
            bucket, key, _ = self.split_path(path)
            try:
                out = self.call_s3("head_object", Bucket=bucket, Key=key)
            except FileNotFoundError:
                return None
            return int(out["ContentLength"])

        def mlds_put_if(self, path: str, data: bytes, etag: str | None) -> None:
            """Write ``path`` only if its ETag is still ``etag`` (``If-Match``), or, with ``etag=None``,
            only if it does not exist (``If-None-Match: *``); ``FileExistsError`` otherwise (412).
            A server without conditional writes ignores the headers (see :mod:`mlds.store.locks`)."""
            kw = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
            try:
                self.pipe_file(path, data, **kw)
            except FileExistsError:
                raise
            except OSError as err:
                text = f"{err} {err.__cause__ or ''}"
                if "Precondition" in text or "412" in text or "ConditionalRequestConflict" in text:
                    raise FileExistsError(errno.EEXIST, "changed concurrently (precondition failed)", path) from err
                raise

    return MldsS3FileSystem


def _open_s3(remote: Remote):
    try:
        cls = _s3_class()
    except ImportError:
        raise RemoteError(remote.name, "s3:// remotes need s3fs: pip install 'mlds[s3]'") from None
    parts = urlsplit(remote.url)
    bucket = parts.netloc
    if not bucket:
        raise RemoteError(remote.name, f"no bucket in {redact_url(remote.url)}")
    o = remote.options
    kwargs: dict[str, Any] = {"skip_instance_cache": True, "use_listings_cache": False}
    endpoint = o.get("endpoint_url") or next((os.environ[e] for e in S3_ENDPOINT_ENVS if os.environ.get(e)), None)
    if endpoint:
        kwargs["endpoint_url"] = endpoint
    if o.get("profile"):
        kwargs["profile"] = o["profile"]
    if _opt_bool(remote, "anon"):
        kwargs["anon"] = True
    client_kwargs = dict(o.get("client_kwargs") or {})
    if o.get("region"):
        client_kwargs["region_name"] = o["region"]
    if client_kwargs:
        kwargs["client_kwargs"] = client_kwargs
    config_kwargs = dict(o.get("config_kwargs") or {})
    if o.get("connect_timeout") is not None:
        config_kwargs["connect_timeout"] = o["connect_timeout"]
    if o.get("max_attempts") is not None:
        config_kwargs["retries"] = {"max_attempts": int(o["max_attempts"])}
    if config_kwargs:
        kwargs["config_kwargs"] = config_kwargs
    if o.get("requester_pays") is not None:
        kwargs["requester_pays"] = _opt_bool(remote, "requester_pays")
    fs = cls(**kwargs)
    fs.mlds_parallel_get = bool(_opt_bool(remote, "parallel_get", False))
    root = "/".join(p for p in (bucket, parts.path.strip("/")) if p)
    return fs, root


class _KnownHostsPolicy:
    """Check the server key against ~/.ssh/known_hosts.

    A changed key is refused; an unknown host is accepted with a warning
    (``strict=True`` refuses it).  Built lazily to import paramiko only for SFTP.
    """

    def __new__(cls, strict: bool = False, known_hosts: str | None = None):
        import paramiko

        class Policy(paramiko.MissingHostKeyPolicy):
            def missing_host_key(self, client, hostname, key):
                path = os.path.expanduser(known_hosts or "~/.ssh/known_hosts")
                known = paramiko.HostKeys()
                with contextlib.suppress(OSError):
                    known.load(path)
                entry = known.lookup(hostname)
                if entry is not None and key.get_name() in entry:
                    if entry[key.get_name()] == key:
                        return
                    raise paramiko.BadHostKeyException(hostname, key, entry[key.get_name()])
                if strict:
                    raise paramiko.SSHException(f"host key for {hostname} is not in {path}")
                warnings.warn(f"SFTP host {hostname} is not in {path}; accepting its key for this session", stacklevel=2)

        return Policy()


@functools.cache
def _sftp_class():
    from fsspec.implementations.sftp import SFTPFileSystem

    class MldsSFTPFileSystem(SFTPFileSystem):
        """fsspec's SFTP filesystem, creating parent directories on write."""

        pipe_file = _exclusive_pipe_file

        def _open(self, path, mode="rb", block_size=None, **kwargs):
            if any(c in mode for c in "wxa"):
                parent = self._parent(path)
                if parent and parent != path:
                    self.makedirs(parent, exist_ok=True)
            if "x" not in mode:
                return super()._open(path, mode, block_size=block_size, **kwargs)
            if "w" not in mode:
                # paramiko maps "x" to CREATE|EXCL without WRITE; add it
                mode = "w" + mode
            try:
                return super()._open(path, mode, block_size=block_size, **kwargs)
            except (FileNotFoundError, PermissionError):
                raise
            except OSError as err:
                # SFTPv3 has no "exists" status: servers answer a generic failure
                if self.exists(path):
                    raise FileExistsError(errno.EEXIST, "File exists", path) from err
                raise

        def mv(self, old, new, *args, **kwargs):
            parent = self._parent(self._strip_protocol(new))
            if parent:
                self.makedirs(parent, exist_ok=True)
            return super().mv(old, new)

    return MldsSFTPFileSystem


def _open_sftp(remote: Remote):
    try:
        cls = _sftp_class()
    except ImportError:
        raise RemoteError(remote.name, "sftp:// remotes need paramiko: pip install 'mlds[sftp]'") from None
    parts = urlsplit(remote.url)
    host = parts.hostname
    if not host:
        raise RemoteError(remote.name, f"no host in {redact_url(remote.url)}")
    o = remote.options
    timeout = float(o.get("timeout", 20))
    kwargs: dict[str, Any] = {
        "port": parts.port or int(o.get("port", 22)),
        "timeout": timeout,
        "banner_timeout": timeout,
        "auth_timeout": timeout,
        "skip_instance_cache": True,
    }
    user = parts.username or o.get("username") or o.get("user")
    if user:
        kwargs["username"] = unquote(user)
    if o.get("key_file"):
        kwargs["key_filename"] = os.path.expanduser(str(o["key_file"]))
    for flag in ("allow_agent", "look_for_keys"):
        if flag in o:
            kwargs[flag] = _opt_bool(remote, flag)
    password = os.environ.get(SFTP_PASSWORD_ENV)
    if password:
        kwargs["password"] = password
    policy = str(o.get("host_key_policy", "known_hosts"))
    if policy in ("known_hosts", "strict"):
        kwargs["host_key_policy"] = _KnownHostsPolicy(strict=policy == "strict", known_hosts=o.get("known_hosts_file"))
    elif policy in ("auto_add", "warning", "reject"):
        kwargs["host_key_policy"] = policy
    else:
        raise RemoteError(remote.name, "option host_key_policy must be known_hosts, strict, auto_add, warning or reject")
    fs = cls(host, **kwargs)
    root = "/" + unquote(parts.path).strip("/")
    return fs, root.rstrip("/") or "/"


_HTTP_WRITE_METHODS = (
    "pipe_file", "pipe", "put_file", "put", "rm_file", "rm", "mv", "copy", "cp_file",
    "mkdir", "makedirs", "rmdir", "touch",
)


@functools.cache
def _http_class():
    from fsspec.implementations.http import HTTPFileSystem

    def _refuse(self, *args, **kwargs):
        raise RemoteError(self._mlds_remote, "is a read-only mirror (http/https); push to a writable remote instead")

    async def _arefuse(self, *args, **kwargs):
        _refuse(self)

    namespace: dict[str, Any] = {"_mlds_remote": "?", "__doc__": "Read-only HTTP(S) mirror of a store.",
                                 "mlds_read_only": True}
    for name in _HTTP_WRITE_METHODS:
        namespace[name] = _refuse
        namespace["_" + name] = _arefuse

    def _open(self, path, mode="rb", *args, **kwargs):
        if mode != "rb":
            _refuse(self)
        return HTTPFileSystem._open(self, path, mode, *args, **kwargs)

    namespace["_open"] = _open
    return type("ReadOnlyHTTPFileSystem", (HTTPFileSystem,), namespace)


def _open_http(remote: Remote):
    cls = _http_class()
    timeout = float(remote.options.get("timeout", 30))
    import aiohttp

    fs = cls(
        skip_instance_cache=True,
        use_listings_cache=False,
        client_kwargs={"timeout": aiohttp.ClientTimeout(total=None, sock_connect=timeout, sock_read=timeout)},
    )
    fs._mlds_remote = remote.name
    return fs, remote.url.rstrip("/")


_RDM_NUMERIC_OPTIONS = {"retries": int, "backoff": float, "max_backoff": float, "listing_ttl": float}


def _open_rdm(remote: Remote):
    """GakuNin RDM: the token comes from the environment or the token file (never config);
    ``api_url`` (and ``retries``/``backoff``/``max_backoff``) are remote options.

    A WaterButler PUT is all-or-nothing (osfstorage commits the file record only after the
    whole body arrived; an update becomes visible as a new version when complete), so rdm
    the store writes objects and refs on rdm in place (a ref keeps its file id and gains a
    version per commit) instead of staging them in ``tmp/`` and moving them.
    """
    opts = {}
    for k, v in remote.options.items():
        conv = _RDM_NUMERIC_OPTIONS.get(k)
        if conv is not None and v is not None:
            try:
                v = conv(v)
            except (TypeError, ValueError):
                raise RemoteError(remote.name, f"option {k!r} must be a number") from None
        opts[k] = v
    opts.setdefault("remote", remote.name)
    # the store re-reads what must be fresh (under its locks); within one operation a folder listing is
    # trusted for a minute, so a push does not list the same folder again for every object it checks
    opts.setdefault("listing_ttl", 60.0)
    try:
        fs, root = fsspec.core.url_to_fs(remote.url, skip_instance_cache=True, **opts)
    except (ImportError, ValueError) as err:
        if isinstance(err, ValueError) and "rdm" not in str(err).lower():
            raise
        raise RemoteError(remote.name, "rdm:// (GakuNin RDM) support is not available in this installation") from None
    return fs, root


_OPENERS = {
    "file": _open_local,
    "s3": _open_s3,
    "sftp": _open_sftp,
    "http": _open_http,
    "https": _open_http,
    "rdm": _open_rdm,
}


# -- errors ---------------------------------------------------------------------

_PASS_THROUGH = (FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError)
_CONNECT_ERRNOS = {
    errno.ECONNREFUSED, errno.ECONNRESET, errno.ECONNABORTED, errno.EHOSTUNREACH, errno.ENETUNREACH,
    errno.ETIMEDOUT, errno.EPIPE, errno.EHOSTDOWN,
}


def _one_line(text: str, limit: int = 200) -> str:
    text = " ".join(str(text).split())
    for env in _SECRET_ENVS:
        secret = os.environ.get(env)
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _classify(exc: BaseException, name: str, where: str) -> MldsError | None:
    chain = list(_chain(exc))
    names = {type(e).__name__ for e in chain}
    modules = {type(e).__module__.split(".")[0] for e in chain}

    # botocore: client errors carry a code
    for e in chain:
        response = getattr(e, "response", None)
        if type(e).__name__ == "ClientError" and isinstance(response, dict):
            err = response.get("Error", {}) or {}
            code = str(err.get("Code", ""))
            status = (response.get("ResponseMetadata", {}) or {}).get("HTTPStatusCode")
            if code in _S3_AUTH_CODES or status in (401, 403):
                what = _S3_AUTH_CODES.get(code, "access denied")
                return AuthError(name, f"{what} at {where} ({code or status}); {_S3_HINT}")
            if code in ("PreconditionFailed", "412") or status == 412:
                return ConflictError(f"remote {name!r}: {where}: the object changed concurrently (precondition failed)")
            if code in ("NoSuchBucket",):
                return RemoteError(name, f"bucket does not exist at {where}")
            return RemoteError(name, f"{code or 'error'} at {where}: {_one_line(err.get('Message', ''))}")
    if "NoCredentialsError" in names or "PartialCredentialsError" in names:
        return AuthError(name, f"no S3 credentials found for {where}; {_S3_HINT}")
    if "ProfileNotFound" in names:
        return AuthError(name, f"AWS profile not found for {where}; check --option profile=NAME and ~/.aws/config")
    if names & {"EndpointConnectionError", "ConnectTimeoutError", "ConnectionClosedError", "ReadTimeoutError"}:
        return RemoteError(name, f"cannot reach {where}: {_one_line(next(e for e in chain if type(e).__name__ in names))}")

    # paramiko
    if "BadHostKeyException" in names:
        return AuthError(name, f"SSH host key of {where} does not match known_hosts (possible man-in-the-middle); refusing to connect")
    if names & {"AuthenticationException", "BadAuthenticationType", "PasswordRequiredException"}:
        return AuthError(
            name,
            f"SSH authentication failed at {where}; use the ssh agent, --option key_file=PATH, or a password in {SFTP_PASSWORD_ENV}",
        )
    if any(type(e).__name__ == "SSHException" and "No authentication methods" in str(e) for e in chain):
        return AuthError(
            name,
            f"no SSH credentials for {where}; start the ssh agent, set --option key_file=PATH, or a password in {SFTP_PASSWORD_ENV}",
        )
    if "NoValidConnectionsError" in names:
        return RemoteError(name, f"cannot reach {where}: connection refused")
    if "paramiko" in modules and any(type(e).__name__ == "SSHException" for e in chain):
        msg = next(str(e) for e in chain if type(e).__name__ == "SSHException")
        if "not in" in msg and "known_hosts" in msg or "host key" in msg.lower():
            return AuthError(name, f"{_one_line(msg)} (add it with ssh-keyscan, or set --option host_key_policy=auto_add)")
        return RemoteError(name, f"SSH error at {where}: {_one_line(msg)}")

    # aiohttp (HTTP mirror, and anything else on aiohttp)
    for e in chain:
        status = getattr(e, "status", None)
        if type(e).__name__ == "ClientResponseError" and isinstance(status, int):
            if status in (401, 403):
                return AuthError(name, f"HTTP {status} from {where}: access refused")
            return RemoteError(name, f"HTTP {status} from {where}")
    for e in chain:
        if type(e).__name__ in ("ClientConnectorError", "ServerDisconnectedError", "ClientOSError", "ServerTimeoutError"):
            return RemoteError(name, f"cannot reach {where}: {_one_line(type(e).__name__)}")

    # plain sockets / OS errors
    for e in chain:
        if isinstance(e, socket.gaierror):
            return RemoteError(name, f"cannot resolve host of {where}")
        if isinstance(e, (ConnectionError, TimeoutError, socket.timeout)) or (
            isinstance(e, OSError) and e.errno in _CONNECT_ERRNOS
        ):
            return RemoteError(name, f"cannot reach {where}: {_one_line(e.strerror or type(e).__name__)}")
    if isinstance(exc, PermissionError):
        return AuthError(name, f"permission denied at {where}: {_one_line(exc.strerror or exc)}")
    if isinstance(exc, OSError):
        return RemoteError(name, f"I/O error at {where}: {_one_line(exc.strerror or exc)}")
    return None


_S3_HINT = "check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or the AWS profile (--option profile=NAME)"


@contextlib.contextmanager
def translate_errors(remote: Remote | str, url: str | None = None) -> Iterator[None]:
    """Turn backend exceptions inside the block into one-line mlds errors.

    ``remote`` is a :class:`Remote` (its URL is named in messages, without
    credentials) or a remote name.  FileNotFoundError, FileExistsError,
    IsADirectoryError, NotADirectoryError and MldsError pass through; errors
    that are not about the remote (bugs: TypeError, ...) are not touched.
    """
    if isinstance(remote, Remote):
        name, url = remote.name, url or remote.url
    else:
        name = remote
    where = redact_url(url) if url else "the remote"
    try:
        yield
    except (MldsError, *_PASS_THROUGH):
        raise
    except Exception as exc:
        translated = _classify(exc, name, where)
        if translated is None:
            raise
        raise translated from exc


__all__ = ["open_remote_fs", "translate_errors", "SFTP_PASSWORD_ENV", "CREDENTIAL_HELP"]
