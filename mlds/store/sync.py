"""push / pull / clone between two stores, whatever their backends.

The engine sees two :class:`~mlds.store.store.Store` objects and never asks
which backend either is on.  Rules (design §3):

* Only missing objects move: an object already at the destination with the
  expected size is skipped, so a push or pull cut off at any point resumes
  without re-sending what arrived.  Objects are sent in parallel
  (``ThreadPoolExecutor``), with a byte progress bar.
* Every byte is verified: downloads are hashed while they stream into a
  staging file and only a matching file is moved into ``objects/``; uploads
  hash the local object first (never spread a corrupt local object) and
  check the size that arrived.  Manifests are verified (hash, schema, keys
  that could escape the store) before anything in them is used.
* Commit order: shards, then manifests (ancestors first), then refs.  The
  ref write is the commit point, done as compare-and-swap: the destination's
  ref is read before the transfer, and re-checked under the tag's lock
  (``locks/<dataset>/<tag>.lock``) right before writing.  A moved ref raises
  :class:`ConflictError`; both manifests remain as objects, nothing is lost.
* ``vN`` tags name one manifest forever; ``latest`` only fast-forwards
  (the remote's latest must be an ancestor of what is pushed).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import os
import tempfile
import threading
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import Any, Iterable

from mlds.errors import ConflictError, IntegrityError, PolicyError, StoreError
from mlds.store import manifest as mf
from mlds.store.policy import RANK, check_metadata, check_tag_move, strip_paths, stricter
from mlds.store.store import CHUNK, Store, local_temp_dir
from mlds.store.versions import VERSION_TAG, commit_refs, is_version_tag, parse_ref, read_ref_or_raise

DEFAULT_WORKERS = 4


# ----------------------------------------------------------------- progress
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


class _FsCallback:
    """An fsspec Callback that forwards byte counts to the progress bar."""

    def __new__(cls, progress: _Progress):
        from fsspec.callbacks import Callback

        class CB(Callback):
            def __init__(self) -> None:
                super().__init__()
                self.sent = 0

            def relative_update(self, inc: int = 1) -> None:
                self.sent += inc
                progress.advance(inc)

            def call(self, *args: Any, **kwargs: Any) -> None:  # absolute updates
                pass

        return CB()


# ----------------------------------------------------------------- object transfer
def _copy_object(src: Store, dst: Store, h: str, size: int | None, progress: _Progress) -> int:
    """Copy one object if missing at ``dst``; returns bytes sent (0 if skipped)."""
    if dst.has_object(h, size):
        progress.advance(size or 0)
        return 0
    lp = src.local_object_path(h)
    if lp is not None:
        if not os.path.exists(lp):
            raise StoreError(f"{src.name}: object {h} is missing; run 'mlds fsck'")
        from mlds.util import sha256_file

        if sha256_file(lp) != h:
            raise IntegrityError(f"{src.name}: object {h} is corrupt (sha256 mismatch); run 'mlds fsck', nothing was sent")
        n = os.path.getsize(lp)
        cb = _FsCallback(progress)
        dst.put_file(lp, h, callback=cb)
        progress.advance(max(0, n - cb.sent))
        return n
    # a remote source: stream, hashing every byte, into a staging file
    fd, tmp = tempfile.mkstemp(prefix=f"{h[:12]}-", suffix=".part", dir=local_temp_dir(dst))
    try:
        hasher = hashlib.sha256()
        n = 0
        try:
            with src.open_object(h) as fin, os.fdopen(fd, "wb") as fout:
                while True:
                    block = fin.read(CHUNK)
                    if not block:
                        break
                    hasher.update(block)
                    fout.write(block)
                    n += len(block)
                    progress.advance(len(block))
        except FileNotFoundError:
            raise StoreError(f"remote {src.name}: object {h} is missing; run 'mlds fsck {src.name}'") from None
        if hasher.hexdigest() != h or (size is not None and n != size):
            what = "truncated" if size is not None and n < size else "corrupt"
            raise IntegrityError(
                f"remote {src.name}: object {Store.object_key(h)} is {what} (sha256 mismatch); "
                f"nothing was stored; run 'mlds fsck {src.name}'")
        dst.adopt_file(tmp, h)
        return n
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def transfer(src: Store, dst: Store, objects: Iterable[tuple[str, int | None]], *, workers: int | None = None,
             progress: bool = False, description: str = "") -> dict[str, int]:
    """Copy the missing ones of ``objects`` ((hash, size)) from ``src`` to ``dst``, in parallel."""
    todo = list(dict.fromkeys(objects))
    total = sum(s or 0 for _, s in todo)
    bar = _Progress(progress, description or f"{src.name} -> {dst.name}", total)
    workers = int(workers or dst.options.get("max_workers") or src.options.get("max_workers") or DEFAULT_WORKERS)
    sent_bytes = 0
    sent_objects = 0
    try:
        if workers <= 1 or len(todo) <= 1:
            results = [_copy_object(src, dst, h, s, bar) for h, s in todo]
        else:
            tls = threading.local()
            clones: list[Store] = []
            clones_lock = threading.Lock()

            def work(h: str, s: int | None) -> int:
                pair = getattr(tls, "pair", None)
                if pair is None:  # each worker thread gets its own filesystem instances
                    pair = tls.pair = (src.clone(), dst.clone())
                    with clones_lock:
                        clones.extend(pair)
                return _copy_object(pair[0], pair[1], h, s, bar)

            try:
                with ThreadPoolExecutor(max_workers=min(workers, len(todo)), thread_name_prefix="mlds-sync") as pool:
                    futures = [pool.submit(work, h, s) for h, s in todo]
                    wait(futures, return_when=FIRST_EXCEPTION)
                    for f in futures:
                        f.cancel()  # not-yet-started transfers; running ones finish (whole objects only)
                # after the pool has drained: the first error wins
                for f in futures:
                    if not f.cancelled() and f.exception() is not None:
                        raise f.exception()  # type: ignore[misc]
                results = [f.result() for f in futures]
            finally:
                for c in clones:
                    c.release()
        for n in results:
            if n:
                sent_bytes += n
                sent_objects += 1
    finally:
        bar.close()
    return {"objects": len(todo), "sent_objects": sent_objects, "sent_bytes": sent_bytes,
            "skipped_objects": len(todo) - sent_objects}


# ----------------------------------------------------------------- helpers
def ancestors(store: Store, h: str, limit: int = 100_000) -> set[str]:
    """Manifest hashes reachable from ``h`` through parents (present ones), including ``h``."""
    seen: set[str] = set()
    stack = [h]
    while stack and len(seen) < limit:
        x = stack.pop()
        if x in seen:
            continue
        seen.add(x)
        if not store.has_object(x):
            continue
        try:
            m = mf.load(store, x)
        except Exception:  # noqa: BLE001 - a bad ancestor is fsck's business
            continue
        stack.extend(m["parents"])
    return seen


def _manifest_chain(store: Store, tips: list[str]) -> list[tuple[str, bytes, dict[str, Any]]]:
    """Verified (hash, bytes, manifest) for tips and every present ancestor, ancestors first."""
    order: list[tuple[str, bytes, dict[str, Any]]] = []
    seen: set[str] = set()

    def visit(h: str, required: bool) -> None:
        if h in seen:
            return
        seen.add(h)
        if not required and not store.has_object(h):
            return
        data = store.read_object(h, verify=False)
        m = mf.parse(data, h)
        for p in m["parents"]:
            visit(p, False)
        order.append((h, data, m))

    for t in tips:
        visit(t, True)
    return order


def _tags_for(store: Store, dataset: str, tag: str | None) -> dict[str, str]:
    """{tag: manifest} to move: the tag itself plus the version tag it points to."""
    tag = tag or "latest"
    h = read_ref_or_raise(store, dataset, tag)
    m = mf.load(store, h)
    out = {VERSION_TAG.format(m["version"]): h}
    out[tag] = h
    return out


def _short(h: str | None) -> str:
    return "(none)" if h is None else h[:12]


# ----------------------------------------------------------------- push
def push(local: Store, remote: Store, dataset: str, tag: str | None = None, *, tier: str | None = None,
         group_stores: list[Store] | None = None, workers: int | None = None, progress: bool = False) -> dict[str, Any]:
    """Send ``dataset@tag`` (default ``latest``, with its ``vN``) from ``local`` to ``remote``.

    ``tier`` is the tier the remote is configured with; the stricter of it and
    the store's own ``mlds-store.json`` tier applies.  Returns transfer stats.
    """
    dataset, _ = parse_ref(dataset if tag is None else f"{dataset}@{tag}")
    tags = _tags_for(local, dataset, tag)
    h = next(iter(tags.values()))
    chain = _manifest_chain(local, [h])
    tip = chain[-1][2]
    if not remote.exists():
        if tier is None:
            raise StoreError(f"remote {remote.name}: no mlds store at {remote.url} (create one with 'mlds init REMOTE --tier TIER')")
        remote.init(tier)  # first push to a configured remote creates its store, with the configured tier
    eff_tier = stricter(remote.tier, tier)

    send_chain = chain
    if RANK[eff_tier] >= RANK["group"]:
        check_metadata(tip["metadata"], eff_tier, f"{dataset}@{tag or 'latest'}", remote.name, kind=mf.kind(tip))
    if eff_tier == "public":
        _require_group_presence(dataset, h, group_stores or [], remote.name)
        derived = copy.deepcopy(tip)
        derived["metadata"] = strip_paths(tip["metadata"])
        derived["parents"] = []  # group history (with local paths) does not travel to public
        derived["promoted_from"] = h
        data = mf.encode(mf.validate(derived))
        h = hashlib.sha256(data).hexdigest()
        send_chain = [(h, data, derived)]
        tags = {t: h for t in tags}

    orig = send_chain[-1][2].get("promoted_from", h)  # the local manifest this version is (or derives from)
    if "latest" not in tags:
        # pushing one version (e.g. promote NAME@v3): move the remote's latest too when that is a fast-forward
        cur_latest = remote.read_ref(dataset, "latest")
        if cur_latest is None or (cur_latest != h and _fast_forward(local, remote, cur_latest, orig)):
            tags["latest"] = h

    # read the refs we are about to move (compare-and-swap "old" values) before sending anything
    old = {t: remote.read_ref(dataset, t) for t in tags}
    for t, cur in old.items():
        if cur is None or cur == h:
            continue
        if is_version_tag(t):
            raise ConflictError(f"tag {t} of {dataset} on remote {remote.name} already points to {_short(cur)}, "
                                f"not {_short(h)} (someone else pushed {t} first); pull, then push again")
        if t == "latest" and not _fast_forward(local, remote, cur, orig):
            raise ConflictError(f"tag latest of {dataset} on remote {remote.name} moved from "
                                f"{_short(_base(send_chain))} to {_short(cur)} since you pulled; pull, then push again")
        if t != "latest":
            check_tag_move(remote, dataset, t, cur, h)  # group/public: named tags are immutable; fail before sending
    shards = mf.objects(send_chain[-1][2])
    stats = transfer(local, remote, shards, workers=workers, progress=progress,
                     description=f"push {dataset} -> {remote.name}")
    for mh, data, _ in send_chain:  # ancestors first, the tip last
        if not remote.has_object(mh, len(data)):
            remote.put_bytes(data)
            stats["sent_objects"] += 1
            stats["sent_bytes"] += len(data)
        stats["objects"] += 1
    commit_refs(remote, dataset, h, send_chain[-1][2], tags=list(tags), expect=old, remote_label=remote.name)
    # a gc on the remote could have removed a pre-existing unreferenced object we skipped: re-send it
    missing = [(x, s) for x, s in shards if not remote.has_object(x, s)]
    if missing:
        extra = transfer(local, remote, missing, workers=workers)
        stats["sent_objects"] += extra["sent_objects"]
        stats["sent_bytes"] += extra["sent_bytes"]
    stats.update({"dataset": dataset, "manifest": h, "tags": sorted(tags), "remote": remote.name})
    return stats


def _fast_forward(local: Store, remote: Store, cur: str, orig: str) -> bool:
    """True if the remote's ``cur`` is an ancestor of local manifest ``orig``.

    A manifest derived by a tier policy (public) is compared by the manifest it
    was derived from (``promoted_from``).
    """
    base = cur
    with contextlib.suppress(Exception):
        base = mf.load(remote, cur).get("promoted_from", cur)
    return base in ancestors(local, orig)


def _base(chain: list[tuple[str, bytes, dict[str, Any]]]) -> str | None:
    parents = chain[-1][2]["parents"]
    return parents[0] if parents else None


def _require_group_presence(dataset: str, h: str, group_stores: list[Store], remote: str) -> None:
    if not group_stores:
        raise PolicyError(f"public remote {remote} accepts only versions already in a group-tier remote, "
                          f"and no group-tier remote is configured")
    for g in group_stores:
        try:
            if h in g.list_refs(dataset).values():
                return
        except Exception:  # noqa: BLE001 - an unreachable group remote just does not vouch
            continue
    names = ", ".join(g.name for g in group_stores)
    raise PolicyError(f"{dataset} version {h[:12]} is not in any group-tier remote ({names}); "
                      f"promote it to a group remote first")


# ----------------------------------------------------------------- pull
def pull(remote: Store, local: Store, dataset: str, tag: str | None = None, *, force: bool = False,
         workers: int | None = None, progress: bool = False) -> dict[str, Any]:
    """Fetch ``dataset@tag`` (default: every tag) from ``remote`` into ``local``."""
    dataset, _ = parse_ref(dataset if tag is None else f"{dataset}@{tag}")
    if tag is None:
        tags = remote.list_refs(dataset)
        if not tags:
            raise StoreError(f"remote {remote.name}: no dataset named {dataset!r}")
    else:
        tags = _tags_for(remote, dataset, tag)
    tips = list(dict.fromkeys(tags.values()))
    chain = _manifest_chain(remote, tips)  # verified before use
    tip_set = set(tips)
    for mh, _, m in chain:
        if mh in tip_set and m["dataset"] != dataset:
            raise IntegrityError(f"remote {remote.name}: refs of {dataset} point to manifest {mh} "
                                 f"of another dataset ({m['dataset']!r}); refusing it")
    shards: dict[str, int] = {}
    for mh, _, m in chain:
        if mh in tip_set:
            for o, size in mf.objects(m):
                shards[o] = size
    # decide the ref updates before moving bytes, so a conflict costs nothing
    local_old = {t: local.read_ref(dataset, t) for t in tags}
    updates: dict[str, str] = {}
    for t, h in tags.items():
        cur = local_old[t]
        if cur == h:
            continue
        if cur is None or force:
            updates[t] = h
            continue
        if t == "latest" or not is_version_tag(t):
            if cur in _remote_ancestors(chain, h):
                updates[t] = h  # fast-forward
                continue
            if h in ancestors(local, cur):
                continue  # local is ahead
        raise ConflictError(f"local tag {t} of {dataset} points to {_short(cur)} but remote {remote.name} has "
                            f"{_short(h)}; keep yours under a new tag ('mlds tag {dataset}@{t} NEWTAG') "
                            f"and pull with --force")
    stats = transfer(remote, local, list(shards.items()), workers=workers, progress=progress,
                     description=f"pull {dataset} <- {remote.name}")
    for mh, data, _ in chain:
        if not local.has_object(mh, len(data)):
            local.put_bytes(data)
            stats["sent_objects"] += 1
            stats["sent_bytes"] += len(data)
        stats["objects"] += 1
    by_hash: dict[str, list[str]] = {}
    for t, h in updates.items():
        by_hash.setdefault(h, []).append(t)
    for h, ts in by_hash.items():
        m = next(m for mh, _, m in chain if mh == h)
        ts.sort(key=lambda t: (t == "latest", t))  # version tags before latest
        commit_refs(local, dataset, h, m, tags=ts, expect={t: local_old[t] for t in ts}, remote_label="local",
                    force=force)
    stats.update({"dataset": dataset, "tags": sorted(updates), "remote": remote.name})
    return stats


def _remote_ancestors(chain: list[tuple[str, bytes, dict[str, Any]]], h: str) -> set[str]:
    parents = {mh: m["parents"] for mh, _, m in chain}
    seen: set[str] = set()
    stack = [h]
    while stack:
        x = stack.pop()
        if x in seen:
            continue
        seen.add(x)
        stack.extend(parents.get(x, []))
    return seen


def clone(remote: Store, local: Store, datasets: list[str] | None = None, *, workers: int | None = None,
          progress: bool = False) -> dict[str, Any]:
    """Pull every tag of every dataset (or of ``datasets``) from ``remote`` into ``local``."""
    if not local.exists():
        local.init("personal")
    names = datasets or remote.list_datasets()
    total = {"datasets": [], "sent_objects": 0, "sent_bytes": 0, "objects": 0}
    for name in names:
        st = pull(remote, local, name, workers=workers, progress=progress)
        total["datasets"].append(name)
        for k in ("sent_objects", "sent_bytes", "objects"):
            total[k] += st[k]
    return total
