"""One content-addressed store over any fsspec filesystem (design §3).

Layout under ``root``::

    mlds-store.json             layout version, tier, policy
    objects/sha256/ab/cd<rest>  immutable blobs (shards and manifests), named by sha256
    refs/<dataset>/<tag>        text: the manifest hash of a version
    locks/<dataset>/<tag>.lock  short-lived compare-and-swap locks for ref updates (mlds.store.locks)
    tmp/                        staging for writes that are not atomic on the backend
    catalog.json                dataset summaries for search (rebuildable)

The same class serves the local personal/project store and every remote; nothing
here or in :mod:`mlds.store.sync` asks which backend it runs on.  The only
backend-dependent choice is a *capability*: whether a single ``put`` is atomic
(object stores: the object appears whole or not at all).  Where it is not (POSIX,
SFTP), every write goes to ``tmp/`` first and is renamed into place, so a reader
never sees a half-written object or ref.  ``atomic_put`` can be forced per remote
with the remote option ``atomic_put``.

Test hook: when the environment variable ``MLDS_TEST_KILL_AFTER_N_WRITES=k`` is
set, the process SIGKILLs itself right after its k-th write to any store (a write
is one put, rename, delete or lock creation).  The kill tests use it to cut a push
at every point; it costs one integer comparison when unset.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import posixpath
import re
import signal
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

from mlds.errors import ConflictError, IntegrityError, StoreError

LAYOUT_VERSION = 1
CHUNK = 1 << 20
STREAM_BLOCK = 32 << 20  # read-ahead block when streaming an object from a remote
HEX64 = re.compile(r"^[0-9a-f]{64}$")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
TIERS = ("personal", "group", "public")
_NO_DIR_PROTOCOLS = {"s3", "s3a", "gs", "gcs", "abfs", "az"}
_ATOMIC_PUT_PROTOCOLS = {"s3", "s3a", "gs", "gcs", "abfs", "az", "adl", "memory", "rdm"}  # a WaterButler PUT is all-or-nothing

DEFAULT_POLICY: dict[str, Any] = {
    "shard_max_frames": 50_000,
    "shard_max_bytes": 256 * 1024 * 1024,
    "gc_grace_seconds": 3600.0,
    "lock_ttl_seconds": 600.0,
    "lock_wait_seconds": 30.0,
    "lock_settle_seconds": 0.5,
    "lock_release_backoff_seconds": 0.2,
}

# ----------------------------------------------------------------- test hook
_write_lock = threading.Lock()
_writes = 0
_KILL_AFTER = int(os.environ.get("MLDS_TEST_KILL_AFTER_N_WRITES", "0") or 0)


def _count_write() -> None:
    global _writes
    with _write_lock:
        _writes += 1
        if _KILL_AFTER and _writes >= _KILL_AFTER:
            os.kill(os.getpid(), signal.SIGKILL)


def write_count() -> int:
    """Store writes made by this process so far (for tests and benchmarks)."""
    return _writes


# ----------------------------------------------------------------- helpers
def check_name(name: str, what: str = "dataset name") -> str:
    if not isinstance(name, str) or not NAME_RE.match(name) or ".." in name:
        raise StoreError(f"invalid {what} {name!r}: use letters, digits and . _ - (no '/', no '..')")
    return name


def check_hash(h: str, what: str = "object") -> str:
    if not isinstance(h, str) or not HEX64.match(h):
        raise IntegrityError(f"{what} key {h!r} is not a sha256 hex digest (refusing a key that could escape the store)")
    return h


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def utcnow() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _mtime(info: dict[str, Any]) -> float | None:
    for k in ("mtime", "LastModified", "last_modified", "created"):
        v = info.get(k)
        if v is None:
            continue
        if isinstance(v, (int, float)):
            return float(v)
        if isinstance(v, _dt.datetime):
            if v.tzinfo is None:
                v = v.replace(tzinfo=_dt.timezone.utc)
            return v.timestamp()
        try:
            return _dt.datetime.fromisoformat(str(v).replace("Z", "+00:00")).timestamp()
        except ValueError:
            continue
    return None


class Store:
    """A content-addressed store at ``root`` on filesystem ``fs``."""

    def __init__(self, fs, root: str, name: str = "local", *, options: dict[str, Any] | None = None,
                 url: str | None = None) -> None:
        self.fs = fs
        self.root = str(root).rstrip("/") or "/"
        self.name = name
        self.url = url or self.root
        self.options = dict(options or {})
        protos = fs.protocol if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,)
        default_atomic = any(p in _ATOMIC_PUT_PROTOCOLS for p in protos)
        self.atomic_put = bool(self.options.get("atomic_put", default_atomic))
        self.is_local = "file" in protos or "local" in protos
        self.no_dirs = any(p in _NO_DIR_PROTOCOLS for p in protos)  # object stores: no folders to create
        if self.is_local and os.path.isfile(self.root):  # else every operation fails with NotADirectoryError
            raise self._not_a_folder()
        self._made_dirs: set[str] = set()
        self._config: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return f"Store({self.name!r}, {self.url!r})"

    def clone(self, independent: bool = False) -> "Store":
        """The same store for another worker thread.

        Not every fsspec backend is safe to share between threads (paramiko's
        SFTP client is not), so parallel transfers give each worker its own
        instance -- and, for SFTP, its own connection -- unless the backend says
        it is thread-safe (``mlds_thread_safe``: local, S3, RDM), whose instance
        (and its caches) is shared.  ``independent=True`` always makes a new one
        (another client, as a second process would be).  Falls back to sharing
        the instance when it cannot be re-created.
        """
        fs = self.fs
        protos = fs.protocol if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,)
        shareable = getattr(fs, "mlds_thread_safe", False) or "file" in protos or "local" in protos
        try:
            if shareable and not independent:
                raise StopIteration
            kwargs = dict(getattr(fs, "storage_options", {}) or {})
            kwargs["skip_instance_cache"] = True
            fs = type(fs)(*getattr(fs, "storage_args", ()), **kwargs)
            for attr in ("_mlds_remote",):
                if hasattr(self.fs, attr):
                    setattr(fs, attr, getattr(self.fs, attr))
        except (StopIteration, Exception):  # noqa: BLE001 - sharing is still correct for thread-safe backends
            fs = self.fs
        other = Store(fs, self.root, name=self.name, options=self.options, url=self.url)
        other.atomic_put = self.atomic_put
        other.is_local = self.is_local
        other.no_dirs = self.no_dirs
        other._config = self._config
        other._made_dirs = self._made_dirs
        other._clone_of = self
        for attr in ("configured_tier",):
            if hasattr(self, attr):
                setattr(other, attr, getattr(self, attr))
        return other

    def map(self, fn: Callable[[Any], Any], items: list) -> list:
        """``[fn(x) for x in items]``, concurrently when the backend is thread-safe (S3, RDM: each small
        request is a round trip; independent ones need not wait for each other)."""
        items = list(items)
        if len(items) < 2 or not getattr(self.fs, "mlds_thread_safe", False):
            return [fn(x) for x in items]
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(8, len(items)), thread_name_prefix="mlds-req") as pool:
            return list(pool.map(fn, items))

    def release(self) -> None:
        """Close the connection of a :meth:`clone` (no-op for the original)."""
        if getattr(self, "_clone_of", None) is None or self.fs is self._clone_of.fs:
            return
        client = getattr(self.fs, "client", None)  # e.g. an SSH connection
        close = getattr(client, "close", None)
        if callable(close):
            with contextlib.suppress(Exception):
                close()

    # ------------------------------------------------------------- construction
    @classmethod
    def at_path(cls, path: str | os.PathLike, name: str = "local") -> "Store":
        from fsspec.implementations.local import LocalFileSystem

        root = str(Path(path).expanduser().resolve())
        return cls(LocalFileSystem(), root, name=name, url=root)

    @classmethod
    def from_url(cls, url: str, name: str | None = None, **storage_options: Any) -> "Store":
        import fsspec.core

        if "://" not in url:
            return cls.at_path(url, name=name or url)
        fs, root = fsspec.core.url_to_fs(url, **storage_options)
        return cls(fs, root, name=name or url, url=url)

    # ------------------------------------------------------------- paths
    def path(self, key: str) -> str:
        parts = key.split("/")
        if key.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise StoreError(f"store key {key!r} escapes the store")
        return f"{self.root}/{key}" if self.root != "/" else f"/{key}"

    @staticmethod
    def object_key(h: str) -> str:
        check_hash(h)
        return f"objects/sha256/{h[:2]}/{h[2:]}"

    def object_path(self, h: str) -> str:
        return self.path(self.object_key(h))

    def local_object_path(self, h: str) -> str | None:
        """The OS path of an object when the store is on the local filesystem."""
        return self.object_path(h) if self.is_local else None

    def _makedirs_for(self, path: str) -> None:
        """Create the parent folders of ``path`` (not on object stores, which have none).

        On a local store the folder must lie inside the store once symlinks are
        resolved: a folder remote whose ``tmp/`` (or any other folder) is a
        symlink leading elsewhere is refused rather than written through.
        """
        parent = posixpath.dirname(path)
        if parent in self._made_dirs or self.no_dirs:
            return
        for attempt in range(5):
            try:
                self.fs.makedirs(parent, exist_ok=True)
                break
            except (FileExistsError, NotImplementedError):
                break
            except PermissionError:
                raise  # no write access (read-only contributor): retrying cannot help
            except OSError:
                # another worker created a level between check and mkdir (SFTP says "File exists"): retry
                if self.fs.isdir(parent):
                    break
                if attempt == 4:
                    raise
        if self.is_local:
            self._check_inside(parent)
        self._made_dirs.add(parent)

    def _check_inside(self, folder: str) -> None:
        real_root = os.path.realpath(self.root)
        real = os.path.realpath(folder)
        if real != real_root and not real.startswith(real_root.rstrip(os.sep) + os.sep):
            rel = os.path.relpath(folder, self.root)
            raise StoreError(f"{self.name}: {rel}/ in the store at {self.root} leads outside the store "
                             f"(a symlink to {real}); refusing to write there")

    # ------------------------------------------------------------- config
    def exists(self) -> bool:
        try:
            return self.fs.exists(self.path("mlds-store.json"))
        except Exception:
            return False

    def config(self) -> dict[str, Any]:
        if self._config is None:
            try:
                raw = self.read_small(self.path("mlds-store.json"), 1 << 20)
            except FileNotFoundError:
                raise StoreError(f"{self.url}: no mlds store here (mlds-store.json missing; run 'mlds init')") from None
            except NotADirectoryError:  # the path became a file after this handle was made
                raise self._not_a_folder() from None
            try:
                cfg = json.loads(raw)
            except ValueError:
                raise StoreError(f"{self.url}: mlds-store.json is not valid JSON") from None
            from mlds.store.manifest import validate_store_config

            validate_store_config(cfg, where=self.url)
            self._config = cfg
        return self._config

    @property
    def tier(self) -> str:
        return self.config().get("tier", "personal")

    def policy(self, key: str) -> Any:
        pol = self.config().get("policy") or {}
        if key in self.options:
            return self.options[key]
        return pol.get(key, DEFAULT_POLICY.get(key))

    def _not_a_folder(self) -> StoreError:
        return StoreError(f"{self.url}: is a file, not a store folder (point MLDS_STORE / the remote at a folder)")

    def init(self, tier: str = "personal", policy: dict[str, Any] | None = None, exist_ok: bool = True) -> "Store":
        if tier not in TIERS:
            raise StoreError(f"unknown tier {tier!r}: choose one of {', '.join(TIERS)}")
        if self.exists():
            if not exist_ok:
                raise StoreError(f"{self.url}: a store already exists here")
            return self
        cfg = {"mlds_store": LAYOUT_VERSION, "tier": tier, "created": utcnow(), "policy": dict(policy or {})}
        self.fs.makedirs(self.root, exist_ok=True)
        self._write_bytes_atomic("mlds-store.json", json.dumps(cfg, indent=2).encode() + b"\n")
        self._config = None
        return self

    # ------------------------------------------------------------- low-level writes
    def _tmp_path(self, hint: str = "") -> str:
        return self.path(f"tmp/{uuid.uuid4().hex}{hint}")

    def _write_bytes_atomic(self, key: str, data: bytes) -> None:
        final = self.path(key)
        self._makedirs_for(final)
        if self.is_local:  # POSIX: write, fsync, rename -- survives a crash, not just a kill
            tmp = self._tmp_path(".part")
            self._makedirs_for(tmp)
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            _count_write()
            try:
                os.replace(tmp, final)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
            _fsync_dir(os.path.dirname(final))
            _count_write()
            return
        if self.atomic_put:
            self.fs.pipe_file(final, data)
            _count_write()
            return
        tmp = self._tmp_path(".part")
        self._makedirs_for(tmp)
        self.fs.pipe_file(tmp, data)
        _count_write()
        self._rename(tmp, final)

    def _rename(self, tmp: str, final: str) -> None:
        try:
            self.fs.mv(tmp, final)
        except Exception:
            with contextlib.suppress(Exception):
                self.fs.rm_file(tmp)
            raise
        _count_write()

    def staging_path(self, prefix: str = "", suffix: str = "") -> str:
        """A new, empty private file in this local store's ``tmp/`` (same filesystem as ``objects/``)."""
        d = self.path("tmp")
        os.makedirs(d, exist_ok=True)
        self._check_inside(d)
        fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=d)
        os.close(fd)
        return tmp

    # ------------------------------------------------------------- objects
    def object_size(self, h: str) -> int | None:
        path = self.object_path(h)
        probe = getattr(self.fs, "mlds_size", None)  # one HEAD on S3 (no directory listing on a miss)
        if probe is not None:
            return probe(path)
        try:
            info = self.fs.info(path)
        except (FileNotFoundError, OSError):
            return None
        size = info.get("size")
        return None if size is None else int(size)

    def has_object(self, h: str, size: int | None = None) -> bool:
        """True when the object exists (and has ``size`` bytes, if given)."""
        got = self.object_size(h)
        if got is None:
            return False
        return size is None or got == size

    def put_bytes(self, data: bytes, check: bool = True) -> str:
        """Store ``data`` as an object; returns its sha256 (no-op if present; ``check=False``: the caller
        knows it is absent)."""
        h = sha256_bytes(data)
        if not check or not self.has_object(h, len(data)):
            self._write_bytes_atomic(self.object_key(h), data)
            if not self.atomic_put and self.object_size(h) != len(data):
                raise IntegrityError(f"{self.name}: object {h} has the wrong size right after writing it")
        return h

    def put_file(self, lpath: str | os.PathLike, h: str | None = None, callback=None) -> str:
        """Store a local file as an object (hashing it unless ``h`` is given), verified as it is copied."""
        from mlds.store.transfer import copy_stream

        lpath = os.fspath(lpath)
        if h is None:
            from mlds.util import sha256_file

            h = sha256_file(lpath)
        size = os.path.getsize(lpath)
        if not self.has_object(h, size):
            with open(lpath, "rb") as fh:
                copy_stream(fh, self, h, size, what=lpath,
                            advance=(lambda n: callback.relative_update(n)) if callback is not None else (lambda n: None))
        return h

    def adopt_verified(self, tmp: str, h: str) -> None:
        """Move a finished, fsynced and verified staging file of this local store into ``objects/``."""
        final = self.object_path(h)
        self._makedirs_for(final)
        os.chmod(tmp, 0o444)  # objects are immutable
        os.replace(tmp, final)
        _fsync_dir(os.path.dirname(final))  # the name is durable before any ref names it
        _count_write()
        self.remember_verified(h)

    def adopt_file(self, lpath: str | os.PathLike, h: str | None = None) -> str:
        """Move a finished local file into the store as an object (consumes ``lpath``).

        On a local store this is one ``os.replace`` (atomic, no copy): callers
        stage files in ``tmp/`` of the same store.  Otherwise it is uploaded.
        """
        lpath = os.fspath(lpath)
        if h is None:
            from mlds.util import sha256_file

            h = sha256_file(lpath)
        size = os.path.getsize(lpath)
        if self.is_local:
            if self.has_object(h, size):
                os.unlink(lpath)
                return h
            fd = os.open(lpath, os.O_RDONLY)
            try:
                os.fsync(fd)  # the bytes are on disk before the object exists under its name
            finally:
                os.close(fd)
            try:
                self.adopt_verified(lpath, h)
            except OSError:  # another filesystem: copy (verified) instead
                self.put_file(lpath, h)
                os.unlink(lpath)
            return h
        self.put_file(lpath, h)
        os.unlink(lpath)
        return h

    def read_object(self, h: str, verify: bool = True, limit: int | None = None) -> bytes:
        """Read a (small) object whole, verifying its sha256; more than ``limit`` bytes is refused
        (an endless or hostile object must not exhaust memory)."""
        try:
            if limit is None:
                data = self.fs.cat_file(self.object_path(h))
            else:
                with self.open_object(h) as fh:
                    data = fh.read(limit + 1)
        except FileNotFoundError:
            raise StoreError(f"{self.name}: object {h} is missing") from None
        if limit is not None and len(data) > limit:
            raise IntegrityError(f"{self.name}: object {h} is larger than {limit} bytes; refusing to read it whole")
        if verify and sha256_bytes(data) != h:
            raise IntegrityError(f"{self.name}: object {h} is corrupt (sha256 mismatch)")
        return data

    def open_object(self, h: str, size: int | None = None):
        """A sequential reader of an object (large blocks on remote backends: few requests; ``size``, when
        known, lets a backend fetch a large object in concurrent parts)."""
        if self.is_local:
            return open(self.object_path(h), "rb")
        stream = getattr(self.fs, "mlds_open_stream", None)  # one request, or parallel ranges (S3)
        if stream is not None:
            return stream(self.object_path(h), size)
        return self.fs.open(self.object_path(h), "rb", block_size=STREAM_BLOCK)

    def hash_object(self, h: str, limit: int | None = None) -> str:
        """sha256 of an object's bytes (of at most ``limit + 1`` bytes: an endless object stops there)."""
        hasher = hashlib.sha256()
        n = 0
        with self.open_object(h) as fh:
            while limit is None or n <= limit:
                block = fh.read(CHUNK if limit is None else min(CHUNK, limit + 1 - n))
                if not block:
                    break
                hasher.update(block)
                n += len(block)
        return hasher.hexdigest()

    # ------------------------------------------------------------- local verification stamps
    def _stamp_path(self, h: str) -> str:
        return self.path(f"cache/verified/{h[:2]}/{h[2:]}")

    @staticmethod
    def _stamp_of(st: os.stat_result) -> str:
        return f"{st.st_size} {st.st_mtime_ns} {st.st_ino}"

    def remember_verified(self, h: str) -> None:
        """Record that local object ``h`` hashed correctly, as it is now (size, mtime, inode)."""
        with contextlib.suppress(OSError):
            st = os.stat(self.object_path(h))
            path = self._stamp_path(h)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as fh:
                fh.write(self._stamp_of(st))

    def stamp_matches(self, h: str, size: int) -> bool:
        """True when local object ``h`` has ``size`` bytes and is unchanged since it was last verified."""
        try:
            st = os.stat(self.object_path(h))
            with open(self._stamp_path(h)) as fh:
                return st.st_size == size and fh.read(200) == self._stamp_of(st)
        except OSError:
            return False

    def verify_local_object(self, h: str, size: int, what: str | None = None) -> None:
        """Check a local object before it is read in place: a regular file of ``size`` bytes whose sha256 is
        its name.  The hash is computed again only when the file changed since it was last verified
        (on arrival, by fsck or by an earlier open), so repeated opens cost a stat."""
        import stat as _stat

        what = what or f"object {h}"
        p = self.object_path(h)
        try:
            st = os.stat(p)
        except FileNotFoundError:
            raise StoreError(f"{self.name}: {what} is missing") from None
        if not _stat.S_ISREG(st.st_mode):
            raise IntegrityError(f"{self.name}: {what} is not a regular file; run 'mlds fsck'")
        if st.st_size != size:
            raise IntegrityError(f"{self.name}: {what} has the wrong size ({st.st_size}, manifest: {size}); "
                                 f"run 'mlds fsck'")
        with contextlib.suppress(OSError):
            with open(self._stamp_path(h)) as fh:
                if fh.read(200) == self._stamp_of(st):
                    return
        if self.hash_object(h, limit=size) != h:
            raise IntegrityError(f"{self.name}: {what} is corrupt (sha256 mismatch); run 'mlds fsck'")
        self.remember_verified(h)

    def delete_object(self, h: str) -> None:
        self.fs.rm_file(self.object_path(h))
        _count_write()

    def iter_objects(self) -> Iterator[tuple[str, int, float | None]]:
        """Every object: (key-derived hash or raw relative key, size, mtime)."""
        base = self.path("objects/sha256")
        try:
            found = self.fs.find(base, detail=True)
        except FileNotFoundError:
            return
        for p, info in sorted(found.items()):
            rel = posixpath.relpath(self.fs._strip_protocol(p), self.fs._strip_protocol(base))
            parts = rel.split("/")
            h = parts[0] + parts[1] if len(parts) == 2 else rel
            yield h, int(info.get("size") or 0), _mtime(info)

    def iter_tmp(self) -> Iterator[tuple[str, float | None]]:
        base = self.path("tmp")
        try:
            found = self.fs.find(base, detail=True)
        except FileNotFoundError:
            return
        for p, info in found.items():
            yield p, _mtime(info)

    # ------------------------------------------------------------- refs
    def ref_key(self, dataset: str, tag: str) -> str:
        return f"refs/{check_name(dataset)}/{check_name(tag, 'tag')}"

    def read_ref(self, dataset: str, tag: str) -> str | None:
        try:
            raw = self.read_small(self.path(self.ref_key(dataset, tag)), 4096)
        except FileNotFoundError:
            return None
        return self._parse_ref(dataset, tag, raw)

    def read_small(self, path: str, limit: int) -> bytes:
        """A small file (ref, config, catalog, lock) read whole; more than ``limit`` bytes is refused.

        Where a file may be a stream without end (a symlink to a device on a folder
        remote, an HTTP mirror), it is read through a bounded reader; object stores
        answer one GET with a known length.
        """
        protos = self.fs.protocol if isinstance(self.fs.protocol, (tuple, list)) else (self.fs.protocol,)
        if self.is_local or any(p in ("http", "https") for p in protos):
            with self.fs.open(path, "rb") as fh:
                data = fh.read(limit + 1)
        else:
            data = self.fs.cat_file(path)
        if len(data) > limit:
            raise StoreError(f"{self.name}: {posixpath.relpath(path, self.root)} is larger than {limit} bytes; "
                             f"it is not an mlds store file")
        return data

    def _parse_ref(self, dataset: str, tag: str, raw: bytes) -> str:
        value = raw[:200].decode("ascii", "replace").strip()
        if not HEX64.match(value):
            raise StoreError(f"{self.name}: ref {dataset}@{tag} is corrupt ({value[:20]!r})")
        return value

    def read_ref_for_update(self, dataset: str, tag: str) -> tuple[str | None, Any]:
        """(value, token) of a ref about to be replaced.  On a backend with conditional writes (S3) the
        token is the object's ETag ("absent" when there is none), so :meth:`write_ref` replaces exactly
        what was read; elsewhere the token is None and the tag's lock alone serialises writers."""
        if getattr(self.fs, "mlds_put_if", None) is None or getattr(self.fs, "mlds_cat_etag", None) is None:
            return self.read_ref(dataset, tag), None
        try:
            raw, etag = self.fs.mlds_cat_etag(self.path(self.ref_key(dataset, tag)))
        except FileNotFoundError:
            return None, "absent"
        return self._parse_ref(dataset, tag, raw), etag

    def write_ref(self, dataset: str, tag: str, h: str, token: Any = None) -> None:
        """Point ``dataset@tag`` at manifest ``h`` (callers hold the tag's lock).

        ``token`` from :meth:`read_ref_for_update`: the write is conditional on it (S3
        ``If-Match``/``If-None-Match``) and raises ``ConflictError`` if another writer got in.
        """
        check_hash(h, "manifest")
        data = (h + "\n").encode()
        if token is not None and getattr(self.fs, "mlds_put_if", None) is not None:
            path = self.path(self.ref_key(dataset, tag))
            try:
                self.fs.mlds_put_if(path, data, None if token == "absent" else token)
            except FileExistsError:
                raise ConflictError(f"tag {tag} of {dataset} on remote {self.name} was written by another writer "
                                    f"despite the tag's lock (conditional write refused); pull and try again") from None
            _count_write()
            return
        self._write_bytes_atomic(self.ref_key(dataset, tag), data)

    def delete_ref(self, dataset: str, tag: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(self.path(self.ref_key(dataset, tag)))
            _count_write()

    def list_datasets(self) -> list[str]:
        try:
            entries = self.fs.ls(self.path("refs"), detail=True)
        except FileNotFoundError:
            # no refs/ yet -- or a mirror that cannot list directories (HTTP): use the catalog
            return sorted(n for n in self._catalog_refs() if self.list_refs(n))
        names = []
        for e in entries:
            if e.get("type") == "directory":
                n = posixpath.basename(e["name"].rstrip("/"))
                if NAME_RE.match(n):
                    names.append(n)
        return sorted(names)

    def list_refs(self, dataset: str) -> dict[str, str]:
        """``{tag: manifest hash}`` for one dataset."""
        base = self.path(f"refs/{check_name(dataset)}")
        try:
            entries = self.fs.ls(base, detail=True)
            tags = [posixpath.basename(e["name"].rstrip("/")) for e in entries if e.get("type") != "directory"]
        except FileNotFoundError:
            # a mirror that cannot list (HTTP): take tag names from the catalog, values from the refs themselves
            tags = list(self._catalog_refs().get(dataset, {}))
        tags = [t for t in tags if NAME_RE.match(t)]
        values = self.map(lambda t: self.read_ref(dataset, t), tags)  # concurrent where the backend allows
        return {t: v for t, v in zip(tags, values) if v}

    def _catalog_refs(self) -> dict[str, dict[str, str]]:
        cat = self.read_catalog()
        return {name: dict(entry.get("refs", {})) for name, entry in cat.get("datasets", {}).items()
                if isinstance(entry, dict)}

    # ------------------------------------------------------------- catalog
    def read_catalog(self) -> dict[str, Any]:
        try:
            raw = self.read_small(self.path("catalog.json"), 1 << 30)
        except FileNotFoundError:
            return {"mlds_catalog": 1, "datasets": {}}
        except Exception:
            return {"mlds_catalog": 1, "datasets": {}}
        return self.parse_catalog(raw)

    @staticmethod
    def parse_catalog(raw: bytes) -> dict[str, Any]:
        """A catalog from its bytes; anything unreadable counts as empty (it is a rebuildable cache)."""
        try:
            cat = json.loads(raw)
        except ValueError:
            return {"mlds_catalog": 1, "datasets": {}}
        if not isinstance(cat, dict) or not isinstance(cat.get("datasets"), dict):
            return {"mlds_catalog": 1, "datasets": {}}
        return cat

    def write_catalog(self, cat: dict[str, Any]) -> None:
        self._write_bytes_atomic("catalog.json", json.dumps(cat, indent=1, sort_keys=True).encode() + b"\n")

    # ------------------------------------------------------------- locks
    @contextlib.contextmanager
    def lock(self, dataset: str, tag: str, ttl: float | None = None, wait: float | None = None) -> Iterator[None]:
        """Hold ``locks/<dataset>/<tag>.lock`` (see :mod:`mlds.store.locks`)."""
        from mlds.store import locks

        with locks.hold(self, self.lock_key_for(dataset, tag), f"tag {dataset}@{tag}", ttl=ttl, wait=wait,
                        fresh=(f"refs/{check_name(dataset)}",)):
            yield

    @staticmethod
    def lock_key_for(dataset: str, tag: str) -> str:
        return f"locks/{check_name(dataset)}/{check_name(tag, 'tag')}.lock"

    @contextlib.contextmanager
    def lock_tags(self, dataset: str, tags: list[str], ttl: float | None = None,
                  wait: float | None = None) -> Iterator[None]:
        """Hold the locks of several tags of one dataset at once (sorted order: no deadlock)."""
        from mlds.store import locks

        keys = [(self.lock_key_for(dataset, t), f"tag {dataset}@{t}") for t in tags]
        with locks.hold_all(self, keys, ttl=ttl, wait=wait, fresh=(f"refs/{check_name(dataset)}",)):
            yield

    @contextlib.contextmanager
    def lock_key(self, key: str, what: str, ttl: float | None = None, wait: float | None = None,
                 fresh: tuple[str, ...] = ()) -> Iterator[None]:
        """Hold the lock object ``key`` (see :mod:`mlds.store.locks`)."""
        from mlds.store import locks

        with locks.hold(self, key, what, ttl=ttl, wait=wait, fresh=fresh):
            yield


def _fsync_dir(path: str) -> None:
    """Make a rename in ``path`` durable (POSIX; a no-op where folders cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def local_temp_dir(store: Store | None = None) -> str:
    """A directory for staging downloads: inside the store's tmp/ when local (same fs, cheap rename)."""
    if store is not None and store.is_local:
        d = store.path("tmp")
        os.makedirs(d, exist_ok=True)
        store._check_inside(d)
        return d
    return tempfile.gettempdir()


ProgressFn = Callable[[int], None]
