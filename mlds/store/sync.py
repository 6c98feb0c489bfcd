"""push / pull / clone between two stores, whatever their backends.

The engine sees two :class:`~mlds.store.store.Store` objects and never asks
which backend either is on.  Rules (design §3, ``spec/store-v1.md``):

* Only missing objects move: existence is checked first (concurrently where
  the backend allows), so a push or pull cut off at any point resumes without
  re-sending what arrived.  Objects are sent in parallel, with a byte progress
  bar (:mod:`mlds.store.transfer`).
* Every byte is verified in the pass that copies it; nothing appears under a
  name its bytes do not hash to, and reads stop at the declared size.  A push
  sends an object of the local store without hashing it again only while its
  verification stamp still matches (it was checked on arrival and has not
  changed since).  Manifests are verified (hash, schema, keys that could
  escape the store) before anything in them is used.
* Commit order: objects and manifests (ancestors first; the walk stops at the
  first one the destination has; on S3 and into a local store the manifests go
  while the shards are still moving), then refs.  The ref write is the commit point
  (:func:`mlds.store.versions.commit_refs`): every tag of the operation under
  its lock, checked (compare-and-swap against what was read before the
  transfer), written together or not at all.  A conflict raises
  :class:`ConflictError`; both manifests remain as objects, nothing is lost.
* ``vN`` tags name one manifest forever; ``latest`` only fast-forwards
  (the remote's latest must be an ancestor of what is pushed).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from mlds.errors import ConflictError, IntegrityError, NotFoundError, PolicyError, StoreError
from mlds.store import manifest as mf
from mlds.store.policy import RANK, check_admission, check_metadata, check_tag_move, strip_paths, stricter
from mlds.store.store import HEX64, Store
from mlds.store.transfer import DEFAULT_WORKERS, SINGLE_PUT_MAX, Preloaded, missing, preload_verified, transfer
from mlds.store.versions import VERSION_TAG, commit_refs, is_version_tag, parse_ref, read_ref_or_raise

# ----------------------------------------------------------------- helpers
def ancestors(store: Store, h: str, limit: int = 1_000_000, stop_at: str | None = None) -> set[str]:
    """Manifest hashes reachable from ``h`` through parents (present ones), including ``h``.

    Iterative (histories may be long); stops early once ``stop_at`` is reached.
    """
    seen: set[str] = set()
    stack = [h]
    while stack and len(seen) < limit:
        x = stack.pop()
        if x in seen:
            continue
        seen.add(x)
        if x == stop_at:
            break
        try:
            m = mf.load(store, x)
        except Exception:  # noqa: BLE001 - absent or bad: a bad ancestor is fsck's business
            continue
        stack.extend(m["parents"])
    return seen


def is_ancestor(store: Store, anc: str, h: str) -> bool:
    return anc in ancestors(store, h, stop_at=anc)


Chain = list[tuple[str, bytes, dict[str, Any]]]


def manifest_chain(store: Store, tips: list[str], have=None,
                   fetched: dict[str, bytes] | None = None) -> tuple[Chain, set[str]]:
    """Verified (hash, bytes, manifest) of ``tips`` and their ancestors in ``store``, ancestors first.

    Iterative, so a history of any length works.  ``have(h)`` -> True marks an
    ancestor the destination already holds: the walk does not go past it (its
    own ancestors were sent before it), and it is returned in the second value
    (the boundary) instead of the chain.  Tips are always read and verified.
    Ancestors missing from ``store`` (a pulled version's history may be partial)
    are skipped.  ``fetched``: manifest bytes already read (verified here like any other).
    """
    fetched = dict(fetched or {})
    order: Chain = []
    done: set[str] = set()
    boundary: set[str] = set()
    loaded: dict[str, tuple[bytes, dict[str, Any]]] = {}
    stack: list[tuple[str, bool, bool]] = [(t, True, False) for t in reversed(tips)]
    while stack:
        h, required, expanded = stack.pop()
        if expanded:
            order.append((h, *loaded.pop(h)))
            continue
        if h in done:
            continue
        if not required:
            if h in boundary:
                continue
            if have is not None and have(h):
                boundary.add(h)
                continue
        done.add(h)
        try:
            data = fetched.pop(h) if h in fetched else store.read_object(h, verify=False, limit=mf.MAX_MANIFEST_BYTES)
        except StoreError:
            if required:
                raise
            continue  # an absent ancestor
        m = mf.parse(data, h)
        loaded[h] = (data, m)
        stack.append((h, required, True))
        for p in reversed(m["parents"]):
            stack.append((p, False, False))
    return order, boundary


def _manifest_chain(store: Store, tips: list[str]) -> Chain:
    return manifest_chain(store, tips)[0]


def _tags_for(store: Store, dataset: str, tag: str | None, fetched: dict[str, bytes] | None = None) -> dict[str, str]:
    """{tag: manifest} to move: the tag itself plus the version tag it points to.  The manifest's bytes
    go into ``fetched`` when given (a pull then does not read them again)."""
    tag = tag or "latest"
    h = read_ref_or_raise(store, dataset, tag)
    m = mf.load(store, h) if fetched is None else _load_keeping(store, h, fetched)
    out = {VERSION_TAG.format(m["version"]): h}
    out[tag] = h
    return out


def _load_keeping(store: Store, h: str, fetched: dict[str, bytes]) -> dict[str, Any]:
    """:func:`mlds.store.manifest.load`, keeping the verified bytes in ``fetched``."""
    data = store.read_object(h, verify=False, limit=mf.MAX_MANIFEST_BYTES)
    if hashlib.sha256(data).hexdigest() != h:
        raise IntegrityError(f"{store.name}: manifest {h} is corrupt (sha256 mismatch)")
    m = mf.parse(data, h)
    fetched[h] = data
    return m


def _short(h: str | None) -> str:
    return "(none)" if h is None else h[:12]


# ----------------------------------------------------------------- push
def push(local: Store, remote: Store, dataset: str, tag: str | None = None, *, tier: str | None = None,
         group_stores: "list[Store] | Callable[[], list[Store]] | None" = None, workers: int | None = None,
         progress: bool = False) -> dict[str, Any]:
    """Send ``dataset@tag`` (default ``latest``, with its ``vN``) from ``local`` to ``remote``.

    ``tier`` is the tier the remote is configured with; the stricter of it and
    the store's own ``mlds-store.json`` tier applies.  ``group_stores`` (or a function
    returning them, called only for a public remote) may vouch for a public version.
    Returns transfer stats.
    """
    dataset, _ = parse_ref(dataset if tag is None else f"{dataset}@{tag}")
    tags = _tags_for(local, dataset, tag)
    h = next(iter(tags.values()))
    local_tip = mf.load(local, h)
    # the verified shards a push to S3 sends whole are read into memory while the first round is in flight --
    # only those new in this version (an append's new shards, not the whole dataset again)
    preloaded = preload_verified(local, remote, _new_objects(local, local_tip))
    try:
        return _push(local, remote, dataset, tag, tags, h, local_tip, preloaded, tier=tier,
                     group_stores=group_stores, workers=workers, progress=progress)
    finally:
        if preloaded is not None:
            preloaded.drop()


def _new_objects(local: Store, m: dict[str, Any]) -> list[tuple[str, int]]:
    """The objects of manifest ``m`` that none of its parents (those in ``local``) references."""
    old: set[str] = set()
    for p in m["parents"]:
        with contextlib.suppress(Exception):  # a parent not in this store: its objects count as new
            old.update(mf.shard_hashes(mf.load(local, p)))
    return [o for o in mf.objects(m) if o[0] not in old]


def _push(local: Store, remote: Store, dataset: str, tag: str | None, tags: dict[str, str], h: str,
          local_tip: dict[str, Any], preloaded: Preloaded | None, *, tier: str | None, group_stores, workers: int | None,
          progress: bool) -> dict[str, Any]:
    # the remote's config, the refs about to move and the sizes of the objects that may have to go (the tip
    # manifest, its parents and its shards, known locally), in one round of concurrent requests
    tags_before = list(tags)
    probes = list(dict.fromkeys([h, *local_tip["parents"], *(o for o, _ in mf.objects(local_tip))]))
    jobs: list[tuple[str, str | None]] = [("config", None), *(("ref", t) for t in tags_before),
                                          *(("size", o) for o in probes)]
    if _may_commit_alongside(remote):
        # whether the server honours exclusive creates (three requests, once per process and bucket) is
        # asked in this round too, not between it and the upload
        jobs.append(("probe", None))

    def first_round(job):
        what, arg = job
        if what == "config":
            return _quiet(remote.config)
        if what == "probe":
            from mlds.store import locks

            return _quiet(lambda: locks.exclusive_create_works(remote))
        if what == "ref":
            return _quiet(lambda: remote.read_ref(dataset, arg))
        return _quiet(lambda: remote.object_size(arg))

    if not getattr(remote.fs, "mlds_list_files", None):
        # GakuNin RDM: the first request resolves the store's folders; made alone, its answer (cached) serves
        # the concurrent ones after it, which would otherwise each list the same folders
        _quiet(remote.config)
    prefetched = remote.map(first_round, jobs)
    sizes = {o: v for (what, o), v in zip(jobs, prefetched) if what == "size" and not isinstance(v, Exception)}
    prefetched = prefetched[:1 + len(tags_before)]

    def remote_has(x: str, size: int | None = None) -> bool:
        got = sizes[x] if x in sizes else remote.object_size(x)
        return got is not None and (size is None or got == size)
    try:
        remote_tier = remote.tier
    except StoreError:
        if remote.exists():
            raise  # there, but unreadable: say why
        if tier is None:
            raise StoreError(f"remote {remote.name}: no mlds store at {remote.url} (create one with 'mlds init REMOTE --tier TIER')") from None
        remote.init(tier)  # first push to a configured remote creates its store, with the configured tier
        remote_tier = remote.tier
    eff_tier = stricter(remote_tier, tier)
    # the history the remote lacks (the walk stops at the first manifest it has)
    chain, _ = manifest_chain(local, [h], have=remote_has)
    tip = chain[-1][2]

    send_chain = chain
    if RANK[eff_tier] >= RANK["group"]:
        check_metadata(tip["metadata"], eff_tier, f"{dataset}@{tag or 'latest'}", remote.name, kind=mf.kind(tip))
    if eff_tier == "public":
        if callable(group_stores):  # the group remotes, looked up now that the remote is known to be public
            group_stores = group_stores()
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

    # the refs we are about to move (compare-and-swap "old" values), read before sending anything
    early = dict(zip(tags_before, prefetched[1:]))
    old = {t: early[t] if t in early and not isinstance(early[t], Exception) else remote.read_ref(dataset, t)
           for t in tags}
    for t, cur in old.items():
        if cur is None or cur == h:
            continue
        if is_version_tag(t):
            raise ConflictError(f"tag {t} of {dataset} on remote {remote.name} already points to {_short(cur)}, "
                                f"not {_short(h)} (someone else pushed {t} first); nothing was published; "
                                f"pull, then push again")
        if t == "latest" and not _fast_forward(local, remote, cur, orig):
            raise ConflictError(f"tag latest of {dataset} on remote {remote.name} moved from "
                                f"{_short(_base(send_chain))} to {_short(cur)} since you pulled; nothing was "
                                f"published; pull, then push again")
        if t != "latest":
            check_tag_move(remote, dataset, t, cur, h)  # group/public: named tags are immutable; fail before sending
    shards = mf.objects(send_chain[-1][2])
    tip_obj = (h, len(send_chain[-1][1]))
    checked = shards + [tip_obj]
    if all(o in sizes for o, _ in checked):  # asked in the first round
        need = [o for o in dict.fromkeys(checked) if not remote_has(*o)]
    else:  # a manifest derived for the remote's tier (public): one concurrent round of checks
        need = missing(remote, checked, workers or DEFAULT_WORKERS)
    tip_present = tip_obj not in need
    manifests_to_send = [(mh, data) for mh, data, _ in send_chain if mh != h or not tip_present]

    # a shard read ahead goes out before the small requests made alongside it (moto, like any server, then
    # starts on the big one first; the loop prepares its request -- signing hashes the body -- undisturbed)
    first = preloaded.started if preloaded is not None and preloaded.holds_any(need) else None

    def send_manifests() -> None:
        for _, data in manifests_to_send:  # ancestors first, the tip last; the walk left out what the remote has
            remote.put_bytes(data, check=False)

    def upload(alongside: bool = False) -> dict[str, Any]:
        def send_objects():
            try:
                return transfer(local, remote, shards, workers=workers, progress=progress,
                                description=f"push {dataset} -> {remote.name}", need=need, own_source=True,
                                preloaded=preloaded)
            finally:
                if first is not None:
                    first.set()  # (a failed upload: whatever waits for it goes on now)
        if alongside:
            stats = _both(send_objects, send_manifests, first=first)
        else:
            stats = send_objects()
            send_manifests()
        stats["sent_objects"] += len(manifests_to_send)
        stats["sent_bytes"] += sum(len(data) for _, data in manifests_to_send)
        stats["objects"] += len(send_chain)
        return stats

    def commit(ready=None) -> None:
        commit_refs(remote, dataset, dict(tags), {h: send_chain[-1][2]}, expect=old, op="push",
                    remote_label=remote.name, ready=ready)

    publish = bool(need or manifests_to_send) or any(old[t] != h for t in tags) \
        or getattr(remote.fs, "mlds_read_only", False)
    if publish and (need or manifests_to_send) and _commit_alongside(remote, need):
        # the manifests go up alongside the shards: no ref names them before both have arrived (the commit
        # waits for upload()), and a manifest whose shards never arrive is an unreferenced object like any
        # other a failed push leaves (gc removes it after its grace period; fsck checks tagged versions)
        stats = _upload_while_locking(lambda: upload(alongside=True), commit, first=first)
    else:
        stats = upload()
        if publish:
            commit()
    # else: the remote already has this version under every tag: nothing to commit (no locks, no catalog write;
    # a read-only mirror still says it is one;
    # a catalog left stale by an interrupted commit is rebuilt by mlds.store.rebuild_catalog)
    # a gc on the remote could have removed a pre-existing unreferenced object we skipped: re-send it
    skipped = stats.pop("skipped", [])
    gone = [(x, s) for x, s in skipped if not remote.has_object(x, s)]
    if gone:
        extra = transfer(local, remote, gone, workers=workers, own_source=True)
        stats["sent_objects"] += extra["sent_objects"]
        stats["sent_bytes"] += extra["sent_bytes"]
    stats.update({"dataset": dataset, "manifest": h, "tags": sorted(tags), "remote": remote.name})
    return stats


# a push that sends at most this much takes its tags' locks and re-reads its refs while the objects go up
OVERLAP_MAX_BYTES = SINGLE_PUT_MAX


def _may_commit_alongside(remote: Store) -> bool:
    """Could :func:`_commit_alongside` say yes, with the exclusive-create probe still to be made?"""
    fs = remote.fs
    if not (getattr(fs, "mlds_thread_safe", False) and getattr(fs, "mlds_put_if", None) is not None
            and getattr(fs, "mlds_cat_etag", None) is not None and getattr(fs, "mlds_list_files", None)):
        return False
    from mlds.store import locks

    return not locks.exclusive_create_probed(remote)


def _commit_alongside(remote: Store, need: list[tuple[str, int]]) -> bool:
    """May this push take its locks while its objects are still going up?

    Only where it cannot change who wins a race: the backend serves concurrent requests, refs are
    replaced by conditional writes (If-Match on the ETag read under the lock, so even a lock broken
    as stale cannot let a second writer through) and exclusive creates work -- S3 -- and only for
    a small send (one PUT per object, seconds), so the locks are held far below their lifetime."""
    fs = remote.fs
    if not (getattr(fs, "mlds_thread_safe", False) and getattr(fs, "mlds_put_if", None) is not None
            and getattr(fs, "mlds_cat_etag", None) is not None):
        return False
    if sum(size for _, size in need) > OVERLAP_MAX_BYTES:
        return False
    from mlds.store import locks

    return locks.exclusive_create_works(remote)


class _UploadFailed(Exception):
    """The objects did not all arrive: the commit waiting for them writes nothing."""


def _after(first: threading.Event | None, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` once ``first`` is set (at most a second later: an ordering hint, never a dependency)."""
    if first is not None:
        first.wait(1.0)
    return fn(*args)


def _upload_while_locking(upload, commit, first: threading.Event | None = None):
    """``upload()`` here while ``commit`` takes the locks, re-reads and checks the refs in a thread; the
    refs are written only once ``upload()`` has returned (objects and manifests are all on the remote),
    so the commit order -- objects, manifests, refs -- and the compare-and-swap are those of a plain push,
    with two rounds of requests (locks, refs re-read) taken off the critical path."""
    arrived = threading.Event()
    failed: list[bool] = []

    def ready() -> None:
        arrived.wait()
        if failed:
            raise _UploadFailed()

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlds-commit")
    try:
        committing = pool.submit(_after, first, commit, ready)
        try:
            stats = upload()
        except BaseException:
            failed.append(True)
            arrived.set()
            with contextlib.suppress(Exception):
                committing.result()  # wait for the locks to be given back; the upload's error is the one raised
            raise
        arrived.set()
        committing.result()  # a ConflictError found under the locks is raised here, after the upload
    finally:
        pool.shutdown(wait=True)
    return stats


def _both(main: Callable[[], Any], other_fn: Callable[[], Any], first: threading.Event | None = None) -> Any:
    """``main()`` here while ``other_fn()`` runs in a thread (once ``first`` is set, see :func:`_after`);
    ``main``'s result.  Both have finished when this returns or raises (the first error raised wins)."""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlds-manifests")
    try:
        other = pool.submit(_after, first, other_fn)
        try:
            out = main()
        except BaseException:
            with contextlib.suppress(Exception):
                other.result()
            raise
        other.result()
        return out
    finally:
        pool.shutdown(wait=True)


def _quiet(fn):
    """``fn()``, or the exception it raised (looked at later, where it matters)."""
    try:
        return fn()
    except Exception as err:  # noqa: BLE001
        return err


def _fast_forward(local: Store, remote: Store, cur: str, orig: str) -> bool:
    """True if the remote's ``cur`` is an ancestor of local manifest ``orig``.

    A manifest derived by a tier policy (public) is compared by the manifest it
    was derived from (``promoted_from``).
    """
    base = cur
    with contextlib.suppress(Exception):
        base = mf.load(remote, cur).get("promoted_from", cur)
    return is_ancestor(local, base, orig)


def _base(chain: list[tuple[str, bytes, dict[str, Any]]]) -> str | None:
    parents = chain[-1][2]["parents"]
    return parents[0] if parents else None


def group_vouch_problems(dataset: str, h: str, group_stores: list) -> list[str]:
    """Empty when a reachable group-tier remote holds version ``h``; else every reason, one line each.

    ``group_stores`` holds :class:`Store` objects, or ``(name, error)`` pairs for remotes that
    could not be opened.  Each is asked in its own error context, so an unreachable one is
    named as such and does not block when another one vouches.
    """
    if not group_stores:
        return ["no group-tier remote is configured to vouch for this version"]
    unreachable: list[str] = []
    names = []
    for g in group_stores:
        if isinstance(g, tuple):
            name, err = g
            names.append(name)
            unreachable.append(f"group remote {name} is unreachable: {_reason(err, name)}")
            continue
        names.append(g.name)
        try:
            with translated_errors(g):
                refs = g.list_refs(dataset)
        except Exception as err:  # noqa: BLE001 - an unreachable group remote just does not vouch
            unreachable.append(f"group remote {g.name} is unreachable: {_reason(err, g.name)}")
            continue
        if h in refs.values():
            return []
    return [f"{dataset} version {h[:12]} is not in any reachable group-tier remote ({', '.join(names)}); "
            f"promote it to a group remote first"] + unreachable


def _reason(err: Exception, name: str) -> str:
    text = " ".join(str(err).split())
    prefix = f"remote {name!r}: "
    return text[len(prefix):] if text.startswith(prefix) else text


@contextlib.contextmanager
def translated_errors(store: Store):
    """Backend exceptions -> one-line AuthError/RemoteError (when the remotes layer is present)."""
    if store.is_local and store.name == "local":
        yield
        return
    try:
        from mlds.remotes.filesystems import translate_errors
    except ImportError:
        yield
        return
    with translate_errors(store.name, store.url):
        yield


def _require_group_presence(dataset: str, h: str, group_stores: list, remote: str) -> None:
    problems = group_vouch_problems(dataset, h, group_stores)
    if problems:
        raise PolicyError("; ".join(problems))


# ----------------------------------------------------------------- pull
def pull(remote: Store, local: Store, dataset: str, tag: str | None = None, *, force: bool = False,
         workers: int | None = None, progress: bool = False) -> dict[str, Any]:
    """Fetch ``dataset@tag`` (default: every tag) from ``remote`` into ``local``."""
    dataset, _ = parse_ref(dataset if tag is None else f"{dataset}@{tag}")
    fetched: dict[str, bytes] = {}
    if tag is None:
        tags, fetched = _remote_refs(remote, dataset)
        if not tags:
            raise NotFoundError(f"remote {remote.name}", dataset)
    else:
        tags = _tags_for(remote, dataset, tag, fetched)
    tips = list(dict.fromkeys(tags.values()))
    chain, boundary = manifest_chain(remote, tips, have=lambda x: local.has_object(x),
                                     fetched=fetched)  # verified before use
    tip_set = set(tips)
    for mh, _, m in chain:
        if mh in tip_set and m["dataset"] != dataset:
            raise IntegrityError(f"remote {remote.name}: refs of {dataset} point to manifest {mh} "
                                 f"of another dataset ({m['dataset']!r}); refusing it")
    for t, mh in tags.items():  # the destination's tier policy, before any byte moves
        check_admission(local, next(m for x, _, m in chain if x == mh), f"{dataset}@{t}")
    shards: dict[str, int] = {}
    for mh, _, m in chain:
        if mh in tip_set:
            for o, size in mf.objects(m):
                if shards.setdefault(o, size) != size:
                    raise IntegrityError(f"remote {remote.name}: versions of {dataset} disagree on the size of "
                                         f"object {o} ({shards[o]} and {size} bytes); refusing them")
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
            if _descends(chain, boundary, local, cur, h):
                updates[t] = h  # fast-forward
                continue
            if is_ancestor(local, h, cur):
                continue  # local is ahead
        raise ConflictError(f"local tag {t} of {dataset} points to {_short(cur)} but remote {remote.name} has "
                            f"{_short(h)}; keep yours under a new tag ('mlds tag {dataset}@{t} NEWTAG') "
                            f"and pull with --force")
    written: list[int] = []

    def store_manifests() -> None:
        for mh, data, _ in chain:  # ancestors first
            if not local.has_object(mh, len(data)):
                local.put_bytes(data, check=False)
                written.append(len(data))

    def fetch_objects() -> dict[str, Any]:
        return transfer(remote, local, list(shards.items()), workers=workers, progress=progress,
                        description=f"pull {dataset} <- {remote.name}")

    if local.is_local or getattr(local.fs, "mlds_thread_safe", False):
        # the (verified) manifests are written while the shards come: no ref names them before both are in
        # place (the refs are written below), and a manifest left without its shards by a failed pull is an
        # unreferenced object (gc) that the next pull finds and keeps
        stats = _both(fetch_objects, store_manifests)
    else:
        stats = fetch_objects()
        store_manifests()
    stats.pop("skipped", None)
    stats["sent_objects"] += len(written)
    stats["sent_bytes"] += sum(written)
    stats["objects"] += len(chain)
    if updates:
        commit_refs(local, dataset, updates, {mh: m for mh, _, m in chain if mh in set(updates.values())},
                    expect={t: local_old[t] for t in updates}, op="pull", remote_label=remote.name, force=force)
    stats.update({"dataset": dataset, "tags": sorted(updates), "remote": remote.name})
    return stats


MAX_GUESSED_MANIFESTS = 64


def _remote_refs(remote: Store, dataset: str) -> tuple[dict[str, str], dict[str, bytes]]:
    """``{tag: manifest}`` of every tag of ``dataset`` on ``remote``, and manifest bytes read on the way.

    Where requests run concurrently and a listing is one request (S3), the tag listing goes with a read of the catalog, and the refs
    are read together with the manifests the catalog says they name: two rounds of requests before the
    shards can be fetched instead of three.  The refs read are what counts; a stale catalog only costs
    the manifest reads it guessed wrong (each manifest is verified against its hash before use)."""
    if not (getattr(remote.fs, "mlds_thread_safe", False) and getattr(remote.fs, "mlds_list_files", None)):
        return remote.list_refs(dataset), {}  # (GakuNin RDM: a round is cheap, every request is not)
    names, cat = remote.map(lambda job: remote.list_ref_names(dataset) if job == "names" else _quiet(remote.read_catalog),
                            ["names", "catalog"])
    entry = cat.get("datasets", {}).get(dataset) if isinstance(cat, dict) else None
    guessed = entry.get("refs") if isinstance(entry, dict) else None
    guesses = list(dict.fromkeys(v for v in guessed.values() if isinstance(v, str) and HEX64.match(v)))[
        :MAX_GUESSED_MANIFESTS] if isinstance(guessed, dict) else []
    jobs = [("ref", t) for t in names] + [("manifest", g) for g in guesses]

    def read(job):
        what, arg = job
        if what == "ref":
            return remote.read_ref(dataset, arg)
        return _quiet(lambda: remote.read_object(arg, verify=False, limit=mf.MAX_MANIFEST_BYTES))

    got = remote.map(read, jobs)
    tags = {t: v for (what, t), v in zip(jobs, got) if what == "ref" and v}
    fetched = {h: v for (what, h), v in zip(jobs, got) if what == "manifest" and isinstance(v, bytes)}
    return tags, fetched


def _descends(chain: Chain, boundary: set[str], local: Store, cur: str, h: str) -> bool:
    """Is ``cur`` (a local manifest) an ancestor of remote manifest ``h``?  The remote part of the history is
    ``chain``; where the walk stopped at a manifest the local store has (``boundary``), go on locally."""
    parents = {mh: m["parents"] for mh, _, m in chain}
    seen: set[str] = set()
    stack = [h]
    reached: list[str] = []
    while stack:
        x = stack.pop()
        if x in seen:
            continue
        seen.add(x)
        if x == cur:
            return True
        if x in boundary:
            reached.append(x)
        stack.extend(parents.get(x, []))
    return any(is_ancestor(local, cur, b) for b in reached)


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
