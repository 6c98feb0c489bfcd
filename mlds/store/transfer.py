"""Copy objects between stores, verifying every byte in the same pass that copies it.

An object is read once, sequentially; each block is hashed and handed to a
*sink* for the destination, and the object appears under its name only after
the bytes that were written hash to that name:

local store or folder remote (:class:`_LocalSink`)
    a staging file in the destination's ``tmp/``, fsynced, then renamed into
    ``objects/`` and the folder fsynced -- so a ref written afterwards never
    names an object a power loss could leave empty;
object store with multipart uploads (S3, :class:`_MultipartSink`)
    parts are uploaded concurrently while later parts are read and hashed; the
    upload is completed only when the hash matches (aborted otherwise);
non-atomic remote (SFTP, :class:`_StagedSink`)
    written to ``tmp/`` on the remote, renamed into place when verified;
any other atomic-put backend (GakuNin RDM, memory, :class:`_SpoolSink`)
    spooled to a private local file, verified, then uploaded.

Reading stops at the size the manifest declares (plus one byte to notice a
longer object), so an endless object (``/dev/zero`` behind a symlink, an HTTP
mirror that never ends) fails instead of hanging.  ``transfer`` first checks
which objects the destination lacks (concurrently), then copies those in
parallel, each worker with its own filesystem instance.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import queue
import tempfile
import threading
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import Any, BinaryIO, Callable, Iterable

from mlds.errors import IntegrityError, StoreError
from mlds.store.store import Store, _count_write

DEFAULT_WORKERS = 4
# S3 uploads: like s3fs, one PutObject below 100 MiB, above that 50 MiB parts -- but pipelined: parts go up
# while the next ones are read and hashed, at most PART_CONCURRENCY in flight (bounded memory)
PART_SIZE = 50 * 1024 * 1024
SINGLE_PUT_MAX = 2 * PART_SIZE
PART_CONCURRENCY = 10  # as s3fs (max_concurrency)
SPOOL_IN_MEMORY = 64 * 1024 * 1024
COPY_BLOCK = 4 * 1024 * 1024     # read size while copying
FLUSH_EVERY = 8 * 1024 * 1024    # local staging files: start writing back to disk while the copy goes on


# ----------------------------------------------------------------- sinks
class _LocalSink:
    """A staging file written by a thread of its own, so the caller hashes the next block while this one
    goes to disk (both release the GIL: on two cores they overlap); written back to disk in the
    background as it grows, so the fsync before the rename has little left to do."""

    DEPTH = 2  # blocks queued for the writer (bounded memory)

    def __init__(self, dst: Store, h: str) -> None:
        self.dst, self.h = dst, h
        self.tmp = dst.staging_path(f"{h[:12]}-", ".part")
        self.fh = open(self.tmp, "wb")
        self.unflushed = 0
        self.flusher: threading.Thread | None = None
        self.blocks: queue.Queue = queue.Queue(maxsize=self.DEPTH)
        self.error: BaseException | None = None
        self.writer = threading.Thread(target=self._write_all, name="mlds-write", daemon=True)
        self.writer.start()

    def _write_all(self) -> None:
        while True:
            block = self.blocks.get()
            if block is None:
                return
            if self.error is not None:
                continue  # drain: the caller learns of the error at its next write or at commit
            try:
                self._write(block)
            except BaseException as err:  # noqa: BLE001 - handed to the caller
                self.error = err

    def _write(self, block: "bytes | list[bytes]") -> None:
        if isinstance(block, list):
            self._writev(block)
            self.unflushed += sum(len(b) for b in block)
        else:
            self.fh.write(block)
            self.unflushed += len(block)
        if self.unflushed >= FLUSH_EVERY and (self.flusher is None or not self.flusher.is_alive()):
            # write back what is there so far in the background: the fsync before the rename then has
            # little left to do (a large object's fsync would otherwise come after the whole transfer)
            self.fh.flush()
            self.unflushed = 0
            fd = self.fh.fileno()
            self.flusher = threading.Thread(target=_quiet_fdatasync, args=(fd,), daemon=True)
            self.flusher.start()

    def _writev(self, parts: list[bytes]) -> None:
        self.fh.flush()
        fd = self.fh.fileno()
        views = [memoryview(b) for b in parts]
        while views:
            done = os.writev(fd, views[:_IOV_MAX]) if hasattr(os, "writev") else os.write(fd, views[0])
            if done <= 0:
                raise OSError(f"cannot write to {self.tmp}")
            while done and views:  # a short write: go on from where it stopped
                if done >= len(views[0]):
                    done -= len(views.pop(0))
                else:
                    views[0] = views[0][done:]
                    done = 0

    def write(self, block: bytes) -> None:
        if self.error is not None:
            raise self.error
        self.blocks.put(block)

    def write_parts(self, parts: list[bytes]) -> None:
        self.write(parts)  # the writer thread writes a list with one writev

    def _finish_writing(self) -> None:
        if self.writer.is_alive():
            self.blocks.put(None)
            self.writer.join()
        if self.flusher is not None:
            self.flusher.join()

    def commit(self) -> None:
        self._finish_writing()
        if self.error is not None:
            raise self.error
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.fh.close()
        _count_write()
        self.dst.adopt_verified(self.tmp, self.h)

    def abort(self) -> None:
        self._finish_writing()
        with contextlib.suppress(OSError):
            self.fh.close()
        with contextlib.suppress(OSError):
            os.unlink(self.tmp)


class _PartsSink:
    """``write_parts`` as one ``write`` per part, for the sinks that buffer or upload what they get."""

    def write_parts(self, parts: list[bytes]) -> None:
        for part in parts:
            self.write(part)  # type: ignore[attr-defined]


_IOV_MAX = 512


def _quiet_fdatasync(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.fdatasync(fd)


class _MultipartSink(_PartsSink):
    """S3 multipart upload fed block by block; parts go up concurrently on the filesystem's event loop."""

    def __init__(self, dst: Store, h: str, size: int) -> None:
        self.dst, self.fs = dst, dst.fs
        self.path = dst.object_path(h)
        self.bucket, self.key, _ = self.fs.split_path(self.path)
        self.size = size
        self.buf = bytearray()
        self.small: list[bytes] | None = [] if size < SINGLE_PUT_MAX else None  # one PUT: blocks, joined once
        self.mpu: dict | None = None
        self.parts: list[tuple[int, Any]] = []
        self.inflight: list[Any] = []

    def _submit(self, data: bytes) -> None:
        if self.mpu is None:
            self.mpu = self.fs.call_s3("create_multipart_upload", Bucket=self.bucket, Key=self.key)
        n = len(self.parts) + 1
        coro = self.fs._call_s3("upload_part", Bucket=self.bucket, Key=self.key, PartNumber=n,
                                UploadId=self.mpu["UploadId"], Body=data)
        fut = asyncio.run_coroutine_threadsafe(coro, self.fs.loop)
        self.parts.append((n, fut))
        self.inflight.append(fut)
        while len(self.inflight) >= PART_CONCURRENCY:  # bounded memory: PART_CONCURRENCY parts in flight
            done, _ = wait(self.inflight, return_when=FIRST_EXCEPTION)
            for f in done:
                f.result()
            self.inflight = [f for f in self.inflight if not f.done()]

    def write(self, block: bytes) -> None:
        if self.small is not None:
            self.small.append(block)
            return
        self.buf += block
        if len(self.buf) >= PART_SIZE:
            self._submit(bytes(self.buf[:PART_SIZE]))
            del self.buf[:PART_SIZE]

    def commit(self) -> None:
        if self.mpu is None:  # small object: one PUT
            self.fs.pipe_file(self.path, b"".join(self.small) if self.small is not None else bytes(self.buf))
            _count_write()
            return
        if self.buf:
            self._submit(bytes(self.buf))
            self.buf = bytearray()
        parts = [{"PartNumber": n, "ETag": f.result()["ETag"]} for n, f in self.parts]
        self.fs.call_s3("complete_multipart_upload", Bucket=self.bucket, Key=self.key,
                        UploadId=self.mpu["UploadId"], MultipartUpload={"Parts": parts})
        self.fs.invalidate_cache(self.path)
        _count_write()

    def abort(self) -> None:
        for f in self.inflight:
            f.cancel()
        if self.mpu is not None:
            with contextlib.suppress(Exception):
                self.fs.call_s3("abort_multipart_upload", Bucket=self.bucket, Key=self.key,
                                UploadId=self.mpu["UploadId"])


class _StagedSink(_PartsSink):
    """A non-atomic remote: write to its tmp/, rename into place once verified."""

    def __init__(self, dst: Store, h: str) -> None:
        self.dst, self.h = dst, h
        self.tmp = dst._tmp_path(".part")
        dst._makedirs_for(self.tmp)
        self.fh = dst.fs.open(self.tmp, "wb")

    def write(self, block: bytes) -> None:
        self.fh.write(block)

    def commit(self) -> None:
        self.fh.close()
        _count_write()
        final = self.dst.object_path(self.h)
        self.dst._makedirs_for(final)
        self.dst._rename(self.tmp, final)

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self.fh.close()
        with contextlib.suppress(Exception):
            self.dst.fs.rm_file(self.tmp)


class _SpoolSink(_PartsSink):
    """An atomic-put backend we cannot stop half-way (RDM, memory): verify a private copy, then upload it."""

    def __init__(self, dst: Store, h: str, size: int) -> None:
        self.dst, self.h = dst, h
        self.mem = bytearray() if size <= SPOOL_IN_MEMORY else None
        self.fh = None if self.mem is not None else tempfile.NamedTemporaryFile(prefix="mlds-spool-", delete=False)

    def write(self, block: bytes) -> None:
        if self.mem is not None:
            self.mem += block
        else:
            self.fh.write(block)

    def commit(self) -> None:
        final = self.dst.object_path(self.h)
        self.dst._makedirs_for(final)
        if self.mem is not None:
            self.dst.fs.pipe_file(final, bytes(self.mem))
        else:
            self.fh.close()
            self.dst.fs.put_file(self.fh.name, final)
        _count_write()
        self.abort()

    def abort(self) -> None:
        if self.fh is not None:
            with contextlib.suppress(OSError):
                self.fh.close()
            with contextlib.suppress(OSError):
                os.unlink(self.fh.name)


def _sink(dst: Store, h: str, size: int):
    if dst.is_local:
        return _LocalSink(dst, h)
    if getattr(dst.fs, "mlds_multipart", False):
        return _MultipartSink(dst, h, size)
    if not dst.atomic_put:
        return _StagedSink(dst, h)
    return _SpoolSink(dst, h, size)


# ----------------------------------------------------------------- one object
def copy_stream(reader: BinaryIO, dst: Store, h: str, size: int, *, what: str,
                advance: Callable[[int], None] = lambda n: None, verified: bool = False) -> int:
    """Copy ``size`` bytes from ``reader`` into ``dst`` as object ``h``, verified in the same pass.

    Reads at most ``size + 1`` bytes: more means the source is longer than its
    manifest says (or endless), less that it is truncated -- either way nothing
    is stored and :class:`IntegrityError` names ``what``.  ``verified``: the
    source is an object of this machine's own store whose hash was checked and
    which has not changed since (its verification stamp); only its size is
    checked again.
    """
    sink = _sink(dst, h, size)
    hasher = None if verified else hashlib.sha256()
    # a reader that hands out the pieces it received (S3's streaming GET) is taken as is: no copy
    read_parts = getattr(reader, "read_parts", None) or (lambda k: [reader.read(k)])
    n = 0
    try:
        while n <= size:
            parts = [p for p in read_parts(min(COPY_BLOCK, size + 1 - n)) if p]
            if not parts:
                break
            got = 0
            for part in parts:
                if hasher is not None:
                    hasher.update(part)
                got += len(part)
            n += got
            if n <= size:
                if len(parts) == 1:
                    sink.write(parts[0])
                else:
                    sink.write_parts(parts)
                advance(got)
        if n != size:
            how = "longer than" if n > size else "shorter than"
            raise IntegrityError(f"{what} is {how} the {size} bytes its manifest says; nothing was stored")
        if hasher is not None and hasher.hexdigest() != h:
            raise IntegrityError(f"{what} is corrupt (sha256 mismatch); nothing was stored")
        sink.commit()
    except BaseException:
        sink.abort()
        raise
    return n


def _open_source(src: Store, h: str, size: int) -> BinaryIO:
    lp = src.local_object_path(h)
    if lp is not None:
        return open(lp, "rb")
    return src.open_object(h, size)


def copy_object(src: Store, dst: Store, h: str, size: int, advance: Callable[[int], None] = lambda n: None,
                own_source: bool = False, preloaded: "Preloaded | None" = None) -> int:
    """Copy object ``h`` of ``size`` bytes from ``src`` to ``dst``; returns the bytes copied.

    ``own_source``: ``src`` is this machine's own local store (a push).  An object of it
    whose verification stamp still matches (checked on arrival, unchanged since) is sent
    without hashing it again; any other object is hashed as it is copied, and a corrupt one
    is never spread.  ``preloaded``: such objects already read into memory (:func:`preload_verified`).
    """
    where = f"remote {src.name}" if src.name != "local" else src.name
    what = f"{where}: object {h}"
    verified = own_source and src.is_local and src.stamp_matches(h, size)
    lp = src.local_object_path(h) if verified else None
    if lp is not None and getattr(dst.fs, "mlds_multipart", False):
        data = preloaded.take(h, size) if preloaded is not None else None
        if data is not None:
            return _put_verified_bytes(data, dst, h, size, advance, started=preloaded.started)
        return _send_verified_file(lp, dst, h, size, what, advance)
    try:
        reader = _open_source(src, h, size)
    except FileNotFoundError:
        raise StoreError(f"{what} is missing; run 'mlds fsck{'' if src.name == 'local' else ' ' + src.name}'") from None
    with reader:
        return copy_stream(reader, dst, h, size, what=what, advance=advance, verified=verified)


def _send_verified_file(path: str, dst: Store, h: str, size: int, what: str,
                        advance: Callable[[int], None]) -> int:
    """A verified local object to S3, read in whole parts as s3fs reads them: one read and one PUT below
    100 MiB, else 50 MiB parts going up while the next are read -- no 4 MB blocks copied together."""
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        raise StoreError(f"{what} is missing; run 'mlds fsck'") from None

    def wrong(n: int) -> IntegrityError:
        return IntegrityError(f"{what} is {'longer' if n > size else 'shorter'} than the {size} bytes its "
                              f"manifest says; nothing was stored")

    with fh:
        if size < SINGLE_PUT_MAX:
            data = fh.read(size + 1)
            if len(data) != size:
                raise wrong(len(data))
            return _put_verified_bytes(data, dst, h, size, advance)
        sink = _MultipartSink(dst, h, size)
        n = 0
        try:
            while n <= size:
                part = fh.read(min(PART_SIZE, size + 1 - n))
                if not part:
                    break
                n += len(part)
                if n > size:
                    break
                sink._submit(part)
                advance(len(part))
            if n != size:
                raise wrong(n)
            sink.commit()
        except BaseException:
            sink.abort()
            raise
    return size


def _put_verified_bytes(data: bytes, dst: Store, h: str, size: int, advance: Callable[[int], None],
                        started: threading.Event | None = None) -> int:
    path = dst.object_path(h)
    if started is None or getattr(dst.fs, "loop", None) is None:
        dst.fs.pipe_file(path, data)
    else:  # scheduled on the filesystem's event loop, then ``started`` said: see Preloaded.started
        put = asyncio.run_coroutine_threadsafe(dst.fs._pipe_file(path, data), dst.fs.loop)
        started.set()
        put.result()
    _count_write()
    advance(size)
    return size


class Preloaded:
    """Verified objects of the local store read into memory in a background thread, ahead of a push.

    Reading a shard of tens of MB into memory (s3fs's ``put_file`` does the same before its PUT) takes
    as long as the push's first round of requests (remote config, refs, object sizes); done while that
    round is in flight, the PUT of a missing shard starts as soon as the round is back.  Only objects a
    single PUT sends (< ``SINGLE_PUT_MAX``), at most ``SINGLE_PUT_MAX`` bytes in all, and only while
    their verification stamp matches before and after the read; an object the remote turns out to have
    is simply dropped."""

    def __init__(self, src: Store, objects: Iterable[tuple[str, int]]) -> None:
        self.src = src
        # set once the first preloaded object's PUT is on the event loop (or none will be): small requests
        # made alongside (locks, manifests) wait for it, so the shard's request goes out first
        self.started = threading.Event()
        todo, total = [], 0
        for h, size in dict.fromkeys(objects):
            if size < SINGLE_PUT_MAX and total + size <= SINGLE_PUT_MAX:
                todo.append((h, size))
                total += size
        self._lock = threading.Lock()
        self._futures: dict[str, Any] = {}
        if todo:
            pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlds-preload")
            self._futures = {h: pool.submit(self._read, h, size) for h, size in todo}
            pool.shutdown(wait=False)

    def _read(self, h: str, size: int) -> bytes | None:
        lp = self.src.local_object_path(h)
        if lp is None or not self.src.stamp_matches(h, size):
            return None
        try:
            with open(lp, "rb") as fh:
                data = fh.read(size + 1)
        except OSError:
            return None
        if len(data) != size or not self.src.stamp_matches(h, size):
            return None  # changed meanwhile: the ordinary path decides (hash or refuse)
        return data

    def take(self, h: str, size: int) -> bytes | None:
        """The bytes of ``h`` if they were read (each handed out once, then freed), else None."""
        with self._lock:
            fut = self._futures.pop(h, None)
        data = None
        if fut is not None:
            with contextlib.suppress(Exception):  # the ordinary path reads the file again
                data = fut.result()
        if data is None or len(data) != size:
            self.started.set()  # nothing to go first
            return None
        return data

    def holds_any(self, objects: Iterable[tuple[str, int]]) -> bool:
        """Is one of ``objects`` being read (so a PUT of it will set :attr:`started`)?"""
        with self._lock:
            return any(h in self._futures for h, _ in objects)

    def drop(self) -> None:
        self.started.set()
        with self._lock:
            futures, self._futures = list(self._futures.values()), {}
        for f in futures:
            f.cancel()


def preload_verified(src: Store, dst: Store, objects: Iterable[tuple[str, int]]) -> Preloaded | None:
    """Start reading ``objects`` of the local store ``src`` that a push to ``dst`` may send whole (S3)."""
    if not (src.is_local and getattr(dst.fs, "mlds_multipart", False)):
        return None
    return Preloaded(src, objects)


# ----------------------------------------------------------------- many objects
class _Progress:
    def __init__(self, enabled: bool, description: str, total: int) -> None:
        self._lock = threading.Lock()
        self._p = None
        if enabled and total > 0:
            from rich.console import Console
            from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                                       TransferSpeedColumn)

            self._p = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                               TransferSpeedColumn(), TimeRemainingColumn(), console=Console(stderr=True),
                               transient=True)
            self._task = self._p.add_task(description, total=total)
            self._p.start()

    def advance(self, n: int) -> None:
        if self._p is not None and n:
            with self._lock:
                self._p.advance(self._task, n)

    def close(self) -> None:
        if self._p is not None:
            self._p.stop()


def _parallel(fn: Callable[[Store, Store, Any], Any], src: Store, dst: Store, items: list, workers: int) -> list:
    """``fn(src_clone, dst_clone, item)`` for every item, in a thread pool; the first error wins."""
    if workers <= 1 or len(items) <= 1:
        return [fn(src, dst, it) for it in items]
    tls = threading.local()
    clones: list[Store] = []
    clones_lock = threading.Lock()

    def work(it):
        pair = getattr(tls, "pair", None)
        if pair is None:  # each worker thread gets its own filesystem instances
            pair = tls.pair = (src.clone(), dst.clone())
            with clones_lock:
                clones.extend(pair)
        return fn(pair[0], pair[1], it)

    try:
        with ThreadPoolExecutor(max_workers=min(workers, len(items)), thread_name_prefix="mlds-sync") as pool:
            futures = [pool.submit(work, it) for it in items]
            wait(futures, return_when=FIRST_EXCEPTION)
            for f in futures:
                f.cancel()  # not-yet-started work; running ones finish (whole objects only)
        for f in futures:  # after the pool has drained: the first error wins
            if not f.cancelled() and f.exception() is not None:
                raise f.exception()  # type: ignore[misc]
        return [f.result() for f in futures]
    finally:
        for c in clones:
            c.release()


def missing(dst: Store, objects: Iterable[tuple[str, int]], workers: int = DEFAULT_WORKERS) -> list[tuple[str, int]]:
    """The objects ``dst`` lacks (or holds with another size), checked concurrently."""
    todo = list(dict.fromkeys(objects))
    # concurrent where the filesystem instance is shared between threads (a HEAD is a round trip); a
    # backend that would need a new connection per thread (SFTP) asks on its one connection
    concurrent = getattr(dst.fs, "mlds_thread_safe", False) and len(todo) > 2
    have = _parallel(lambda _s, d, o: d.has_object(o[0], o[1]), dst, dst, todo, workers if concurrent else 1)
    return [o for o, ok in zip(todo, have) if not ok]


def transfer(src: Store, dst: Store, objects: Iterable[tuple[str, int]], *, workers: int | None = None,
             progress: bool = False, description: str = "", need: list[tuple[str, int]] | None = None,
             own_source: bool = False, preloaded: Preloaded | None = None) -> dict[str, int]:
    """Copy the ones of ``objects`` ((hash, size)) that ``dst`` lacks (``need``, if the caller checked)
    from ``src``, in parallel."""
    todo = list(dict.fromkeys(objects))
    workers = int(workers or dst.options.get("max_workers") or src.options.get("max_workers") or DEFAULT_WORKERS)
    need = missing(dst, todo, workers) if need is None else [o for o in todo if o in set(need)]
    bar = _Progress(progress, description or f"{src.name} -> {dst.name}", sum(s for _, s in need))
    try:
        sent = _parallel(lambda s, d, o: copy_object(s, d, o[0], o[1], bar.advance, own_source=own_source,
                                                     preloaded=preloaded),
                         src, dst, need, workers)
    finally:
        bar.close()
    return {"objects": len(todo), "sent_objects": len(need), "sent_bytes": sum(sent),
            "skipped_objects": len(todo) - len(need), "skipped": [o for o in todo if o not in need]}
