"""Short-lived locks in a store, on whatever primitive the backend makes atomic.

A lock serialises the read-check-write of refs (compare-and-swap) and of the
catalog.  It is only as good as the backend operation that acquires it, so each
backend uses the one that is atomic *at commit* on that service (spec
``store-v1.md`` §5 "Concurrency"):

``create`` (local paths, S3, memory)
    Exclusive create of the lock object: ``O_CREAT|O_EXCL`` on POSIX; on S3 a
    ``PutObject`` with ``If-None-Match: *`` (412 if it exists).  Whether an S3
    server honours the header is probed once per store (:func:`exclusive_create_works`);
    on one that ignores it the lock falls back to write, wait ``lock_settle_seconds``,
    read back -- best effort, and said so once.
``mkdir`` (SFTP, GakuNin RDM)
    Creating the lock *folder*.  ``mkdir`` is atomic on every SFTP server (it is
    ``mkdir(2)``), unlike ``SSH_FXF_EXCL`` which some servers implement loosely;
    on RDM, creating a folder answers 409 at commit time, whereas a file create
    that races another create answers 200 and silently becomes a new version of
    the other's file.  The holder's details go into ``<lock>/owner`` afterwards.

A lock records its owner token, host, machine identity, pid and expiry.  A lock
past its expiry, or left by a dead process of this very machine, is broken; a
breaker re-checks that it still holds the lock it created before going on.
Releasing retries (a 5xx on the DELETE must not leave the lock in place for its
whole lifetime) and warns if it still fails.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import socket
import threading
import time
import uuid
import warnings
from typing import TYPE_CHECKING, Any, Iterator

from mlds.errors import ConflictError, StoreError

if TYPE_CHECKING:
    from mlds.store.store import Store

_MKDIR_PROTOCOLS = {"sftp", "ssh", "rdm"}
_probe_lock = threading.Lock()
_probe_cache: dict[tuple[str, str], bool] = {}
_warned: set[tuple[str, str]] = set()


class LockReleaseWarning(UserWarning):
    """A lock could not be removed after use; it blocks others until it expires."""


class UnsafeLockWarning(UserWarning):
    """The backend cannot make lock acquisition atomic; concurrent writers are detected only on a best-effort basis."""


def style(store: "Store") -> str:
    """``mkdir`` or ``create`` (remote option ``lock_style`` overrides the backend's default)."""
    opt = store.options.get("lock_style")
    if opt in ("mkdir", "create"):
        return opt
    protos = store.fs.protocol if isinstance(store.fs.protocol, (tuple, list)) else (store.fs.protocol,)
    return "mkdir" if any(p in _MKDIR_PROTOCOLS for p in protos) else "create"


def _machine_identity() -> str:
    """Host + boot + pid namespace: a pid is only meaningful within the same one."""
    parts = [socket.gethostname()]
    with contextlib.suppress(OSError):
        with open("/proc/sys/kernel/random/boot_id") as fh:
            parts.append(fh.read().strip())
    with contextlib.suppress(OSError):
        parts.append(os.readlink("/proc/self/ns/pid"))
    return "|".join(parts)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_stale(holder: dict[str, Any]) -> bool:
    expires = holder.get("expires", 0)
    if expires is not None and float(expires) < time.time():
        return True
    # a lock left by a dead process of this very machine (same host, boot and pid namespace) is stale
    if holder.get("machine") == _machine_identity() and isinstance(holder.get("pid"), int):
        return not _pid_alive(holder["pid"])
    return False


# ----------------------------------------------------------------- primitives
def exclusive_create_works(store: "Store") -> bool:
    """Does ``open(path, "xb")`` on this store fail when the object exists?  Probed once per store root.

    POSIX always honours O_EXCL.  An S3-compatible server that does not
    implement conditional writes ignores ``If-None-Match`` and overwrites: that
    is what the probe detects (create a probe object, create it again).
    """
    if store.is_local:
        return True
    key = (type(store.fs).__name__, store.root.split("/")[0])  # one answer per server and bucket
    with _probe_lock:
        if key in _probe_cache:
            return _probe_cache[key]
    probe = store.path(f"tmp/lock-probe-{uuid.uuid4().hex}")
    works = False
    try:
        with store.fs.open(probe, "xb") as fh:
            fh.write(b"1")
        try:
            with store.fs.open(probe, "xb") as fh:
                fh.write(b"2")
        except FileExistsError:
            works = True
    except (ValueError, NotImplementedError, TypeError):
        works = False  # no exclusive mode at all
    finally:
        with contextlib.suppress(Exception):
            store.fs.rm_file(probe)
    with _probe_lock:
        _probe_cache[key] = works
    return works


def exclusive_create_probed(store: "Store") -> bool:
    """Is :func:`exclusive_create_works` already known for this store (no request needed)?"""
    if store.is_local:
        return True
    with _probe_lock:
        return (type(store.fs).__name__, store.root.split("/")[0]) in _probe_cache


def _warn_unsafe(store: "Store") -> None:
    key = (type(store.fs).__name__, store.root.split("/")[0])
    if key in _warned:
        return
    _warned.add(key)
    warnings.warn(f"remote {store.name}: the server ignores exclusive creates (S3 If-None-Match); "
                  f"concurrent pushes to one tag are detected on a best-effort basis only", UnsafeLockWarning,
                  stacklevel=4)


def _owner_path(store: "Store", path: str) -> str:
    return path + "/owner" if style(store) == "mkdir" else path


def _taken_or_raise(store: "Store", path: str, err: OSError) -> bool:
    """A create that failed without saying why (SFTPv3 has no "exists" status): taken if the path is there."""
    if store.fs.exists(path):
        return False
    raise StoreError(f"{store.name}: cannot create lock {path}: {err}") from None


def try_create(store: "Store", path: str, body: bytes, token: str) -> bool:
    """One attempt to take the lock at ``path``; True if we hold it now."""
    from mlds.store.store import _count_write

    if style(store) == "mkdir":
        try:
            store.fs.mkdir(path, create_parents=False)
        except FileExistsError:
            return False
        except PermissionError:
            raise
        except OSError as err:
            return _taken_or_raise(store, path, err)
        _count_write()
        store.fs.pipe_file(path + "/owner", body)
        _count_write()
        return True
    if exclusive_create_works(store):
        try:
            with store.fs.open(path, "xb") as fh:
                fh.write(body)
            _count_write()
            return True
        except FileExistsError:
            return False
        except PermissionError:
            raise
        except OSError as err:
            return _taken_or_raise(store, path, err)
    # no atomic create on this backend: write a unique body, let racers land, read back
    _warn_unsafe(store)
    if store.fs.exists(path):
        return False
    store.fs.pipe_file(path, body)
    _count_write()
    time.sleep(float(store.policy("lock_settle_seconds")))
    return (read_holder(store, path) or {}).get("owner") == token


def read_holder(store: "Store", path: str) -> dict[str, Any] | None:
    """The lock's owner record; None when there is no lock.  Always asks the backend (no cached listing)."""
    owner = _owner_path(store, path)
    with contextlib.suppress(Exception):
        store.fs.invalidate_cache(path)
    try:
        raw = store.read_small(owner, 1 << 16)
    except FileNotFoundError:
        raw = None
    except StoreError:
        raw = b""
    if raw is not None:
        try:
            holder = json.loads(raw)
            if isinstance(holder, dict):
                return holder
        except ValueError:
            pass
    # no owner record yet (being written right now: create, then write), or unreadable: held until the lock's
    # modification time + 30 s, after which a writer that died in between no longer blocks anyone
    from mlds.store.store import _mtime

    try:
        info = store.fs.info(path)
    except FileNotFoundError:
        return None
    mtime = _mtime(info)
    return {"expires": None if mtime is None else mtime + 30.0, "unreadable": (raw or b"")[:64].hex()}


def remove(store: "Store", path: str) -> None:
    from mlds.store.store import _count_write

    if style(store) == "mkdir":
        store.fs.rm(path, recursive=True)
    else:
        store.fs.rm_file(path)
    _count_write()


def release(store: "Store", path: str, token: str, attempts: int = 4, surely_ours: bool = False) -> None:
    """Remove our lock, retrying on errors; warn if it stays.

    ``surely_ours``: held for less than half its lifetime by this (live) process, so no one can
    have broken it as stale -- no need to read it back first.
    """
    last: Exception | None = None
    for i in range(attempts):
        try:
            if not surely_ours or i > 0:
                holder = read_holder(store, path)
                if (holder or {}).get("owner") != token:
                    return  # not ours (broken as stale by someone else), or gone (an earlier try went through)
            remove(store, path)
            return
        except FileNotFoundError:
            return
        except Exception as err:  # noqa: BLE001 - retried, then reported
            last = err
            if i + 1 < attempts:
                time.sleep(min(2.0, float(store.policy("lock_release_backoff_seconds")) * 2 ** i))
    warnings.warn(f"remote {store.name}: could not remove lock {path} after {attempts} tries ({last}); "
                  f"it blocks other writers until it expires", LockReleaseWarning, stacklevel=3)


# ----------------------------------------------------------------- the lock
def acquire(store: "Store", key: str, what: str, ttl: float | None = None, wait: float | None = None,
            fresh: tuple[str, ...] = ()) -> tuple[str, str, float, float]:
    """Take the lock ``key`` (a store key under ``locks/``); ConflictError after ``wait`` seconds.

    Returns what :func:`release_held` needs.  ``fresh``: store keys whose cached listings are
    dropped once the lock is held, so what is read under the lock is what the previous holder wrote.
    """
    ttl = float(ttl if ttl is not None else store.policy("lock_ttl_seconds"))
    wait = float(wait if wait is not None else store.policy("lock_wait_seconds"))
    path = store.path(key)
    store._makedirs_for(path)
    token = uuid.uuid4().hex
    deadline = time.monotonic() + wait
    delay = 0.02
    broke = False
    ownerless_since: float | None = None  # an owner-less lock of unknown age: give its writer 30 s
    while True:
        body = json.dumps({"owner": token, "host": socket.gethostname(), "machine": _machine_identity(),
                           "pid": os.getpid(), "expires": time.time() + ttl}).encode()
        if try_create(store, path, body, token):
            if not broke:
                break
            # we broke a stale lock: another breaker may have removed ours meanwhile -- confirm ownership
            time.sleep(0.05)
            if (read_holder(store, path) or {}).get("owner") == token:
                break
            broke = False
            continue
        holder = read_holder(store, path)
        stale = holder is not None and is_stale(holder)
        if holder is not None and "unreadable" in holder and holder.get("expires") is None:
            # an owner-less lock of unknown age: its writer gets 30 s to name itself, from when we first saw it
            ownerless_since = ownerless_since or time.monotonic()
            stale = time.monotonic() - ownerless_since > 30.0
        if stale:
            with contextlib.suppress(FileNotFoundError):
                # break only the lock we saw (another breaker may have replaced it)
                if read_holder(store, path) == holder:
                    remove(store, path)
                    broke = True
            continue
        if time.monotonic() > deadline:
            until = ""
            if holder and isinstance(holder.get("expires"), (int, float)) and holder["expires"] > 0:
                until = f" until {_dt.datetime.fromtimestamp(holder['expires'], _dt.timezone.utc):%H:%M:%S} UTC"
            raise ConflictError(f"{what} on remote {store.name} is locked by another writer{until}; try again later")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)
    for k in fresh:  # what we read under the lock must be what the last holder wrote
        with contextlib.suppress(Exception):
            store.fs.invalidate_cache(store.path(k))
    return path, token, time.monotonic(), ttl


def release_held(store: "Store", held: tuple[str, str, float, float]) -> None:
    path, token, acquired, ttl = held
    release(store, path, token, surely_ours=time.monotonic() - acquired < ttl / 2)


@contextlib.contextmanager
def hold(store: "Store", key: str, what: str, ttl: float | None = None, wait: float | None = None,
         fresh: tuple[str, ...] = ()) -> Iterator[None]:
    """Hold the lock ``key`` for the block (see :func:`acquire`)."""
    held = acquire(store, key, what, ttl=ttl, wait=wait, fresh=fresh)
    try:
        yield
    finally:
        release_held(store, held)


@contextlib.contextmanager
def hold_all(store: "Store", keys: list[tuple[str, str]], ttl: float | None = None,
             wait: float | None = None, fresh: tuple[str, ...] = ()) -> Iterator[None]:
    """Hold several locks ((key, what) pairs), taken one by one in sorted key order (two writers never
    deadlock) and released together (concurrently where the backend allows).  On an object store (no
    folders to create first) one round of concurrent attempts comes first."""
    held: list = []
    todo = sorted(set(keys))
    try:
        if len(todo) > 1 and store.no_dirs and getattr(store.fs, "mlds_thread_safe", False):
            # one round of concurrent attempts first; if any lock is taken, give back what we got and wait for
            # them in order (never wait while holding a lock taken out of order: no deadlock)
            def attempt(kw):
                try:
                    return acquire(store, kw[0], kw[1], ttl=ttl, wait=0, fresh=fresh)
                except Exception as err:  # noqa: BLE001 - looked at below, once every attempt is back
                    return err

            got = store.map(attempt, todo)
            held = [x for x in got if not isinstance(x, Exception)]
            if len(held) < len(todo):
                store.map(lambda x: release_held(store, x), held)
                held = []
                failed = [x for x in got if isinstance(x, Exception) and not isinstance(x, ConflictError)]
                if failed:
                    raise failed[0]
        if not held:
            for key, what in todo:
                held.append(acquire(store, key, what, ttl=ttl, wait=wait, fresh=fresh))
        yield
    finally:
        store.map(lambda x: release_held(store, x), held)
