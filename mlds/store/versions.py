"""Dataset versions in one store: add, log, tag, checkout, open, fsck, gc.

Shards
    A version's frames live in shards: self-contained HDF5 files of at most
    ``shard_max_frames`` frames / ``shard_max_bytes`` (estimated) bytes, each an
    object named by its sha256.  Shards carry only the frames (and the dataset
    name); the full metadata -- settings and provenance tables, whose local
    paths the public tier strips -- lives in the manifest, which is what
    ``open_ref``/``checkout`` present as the dataset's metadata.  So a shard is
    a readable mlds file on its own (its frames' calculation/source indices
    refer to the manifest's tables), and identical frames give identical shard
    bytes whatever the metadata says.
Appending
    Each shard also records ``content_sha256``, a digest over the canonical
    arrays of its frames (independent of container bytes; optional arrays that
    hold only missing values are left out, so backfilled columns do not matter).
    ``add`` walks the previous version's shards in order and reuses every one
    whose frames are a prefix of the new content; only the rest are written.
"""

from __future__ import annotations

import contextlib
import copy
import getpass
import hashlib
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from mlds.errors import FormatError, IntegrityError, NotFoundError, StoreError
from mlds.store import manifest as mf
from mlds.store.store import HEX64, Store, check_name, utcnow

SUMMARY_KEYS = ("n_frames", "n_atoms", "elements", "nelements", "formulas", "codes", "functionals",
                "energy_per_atom_min", "energy_per_atom_max", "has_forces", "has_stress")
VERSION_TAG = "v{}"


def is_version_tag(tag: str) -> bool:
    return len(tag) > 1 and tag[0] == "v" and tag[1:].isdigit()


def parse_ref(ref: str) -> tuple[str, str]:
    """``NAME@TAG`` -> (name, tag); a bare ``NAME`` means ``latest``."""
    name, _, tag = ref.partition("@")
    check_name(name)
    tag = tag or "latest"
    if not HEX64.match(tag):
        check_name(tag, "tag")
    return name, tag


def resolve(store: Store, dataset: str, tag: str) -> str:
    """Manifest hash of ``dataset@tag`` (a tag, ``vN``, ``latest`` or a full hash)."""
    if HEX64.match(tag):
        if not store.has_object(tag):
            raise StoreError(f"{store.name}: no version {tag} of {dataset}")
        return tag
    return read_ref_or_raise(store, dataset, tag)


def read_ref_or_raise(store: Store, dataset: str, tag: str) -> str:
    """Manifest hash a tag points to; a missing one names the tags that do exist."""
    h = store.read_ref(dataset, tag)
    if h is None:
        tags = sorted(store.list_refs(dataset))
        if not tags:
            raise NotFoundError(store.name, dataset)
        raise StoreError(f"{store.name}: {dataset} has no tag {tag!r} (tags: {', '.join(tags)})")
    return h


# ----------------------------------------------------------------- content digests
def _missing_only(arr: np.ndarray, missing: Any) -> bool:
    if arr.size == 0:
        return True
    if isinstance(missing, float) and np.isnan(missing):
        return bool(np.isnan(arr).all())
    return bool((arr == missing).all())


def content_digest(ds: Any, start: int, stop: int, block: int = 8192) -> str:
    """sha256 over the canonical arrays of frames ``start:stop`` of ``ds``."""
    from mlds.format import spec

    outer = hashlib.sha256(b"mlds-content-v1\0")
    outer.update(f"{stop - start}\0".encode())
    for a in spec.ARRAYS:
        if a.name == "atom_offset" or not ds.has(a.name):
            continue
        h = hashlib.sha256()
        all_missing = True
        for b0 in range(start, stop, block):
            arr = np.ascontiguousarray(ds.array(a.name, b0, min(stop, b0 + block)), dtype=a.dtype)
            if all_missing and not (not a.required and _missing_only(arr, a.missing)):
                all_missing = False
            h.update(arr.tobytes())
        if a.required or not all_missing:
            outer.update(f"{a.name}:{a.dtype.str}:{a.tail}\0".encode())
            outer.update(h.digest())
    return outer.hexdigest()


def _shard_ranges(ds: Any, start: int, stop: int, max_frames: int, max_bytes: int) -> list[tuple[int, int]]:
    from mlds.format import spec

    per_atom = sum(a.dtype.itemsize * int(np.prod(a.tail or (1,))) for a in spec.ARRAYS if a.group == spec.ATOMS and ds.has(a.name))
    per_frame = sum(a.dtype.itemsize * int(np.prod(a.tail or (1,))) for a in spec.ARRAYS if a.group == spec.FRAMES and ds.has(a.name))
    counts = ds.array("n_atoms", start, stop) if stop > start else np.zeros(0, dtype=np.int64)
    sizes = counts * per_atom + per_frame
    out = []
    j0 = 0
    n = stop - start
    while j0 < n:
        j1 = min(n, j0 + max_frames)
        csum = np.cumsum(sizes[j0:j1])
        k = int(np.searchsorted(csum, max_bytes, side="right"))
        j1 = j0 + max(1, min(k, j1 - j0))
        out.append((start + j0, start + j1))
        j0 = j1
    return out


# ----------------------------------------------------------------- opening inputs
@contextlib.contextmanager
def _open_input(source: str | os.PathLike, store: Store) -> Iterator[Any]:
    """An mlds dataset file, a store ref ``NAME@TAG``, or any file ``mlds.io`` reads."""
    from mlds.format.dataset import Dataset

    p = Path(source)
    if not p.exists():
        text = os.fspath(source)
        try:
            name, tag = parse_ref(text)
        except StoreError:
            raise FormatError(p, "no such file or directory") from None
        ds = open_ref(f"{name}@{tag}", store=store)
        try:
            yield ds
        finally:
            ds.close()
        return
    try:
        ds = Dataset(p)
    except FormatError as first:
        try:
            from mlds.io.registry import open_reader
        except ImportError:
            raise first from None
        from mlds.format.writer import create

        tmpdir = tempfile.mkdtemp(prefix="mlds-add-")
        try:
            try:
                reader = open_reader(p)
            except FormatError:
                raise first from None
            out = Path(tmpdir) / "input.h5"
            with create(out, {}) as w:
                w.append_from(reader)
            ds = Dataset(out)
            try:
                yield ds
            finally:
                ds.close()
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)
        return
    try:
        _validate_source(p)
        yield ds
    finally:
        ds.close()


def _validate_source(path: Path) -> None:
    """Refuse an mlds file that breaks the spec before any of it is stored (shapes are compared with the
    file's other arrays before anything is read, so a declared (10^12, 3) array is refused, not allocated)."""
    from mlds.errors import ValidationError
    from mlds.format.validate import validate_dataset

    try:
        problems = validate_dataset(path)
    except MemoryError:
        problems = ["an array is declared larger than this machine's memory"]
    except (TypeError, ValueError, IndexError, KeyError, OSError) as err:
        # arrays inconsistent enough to break the checker itself (mlds.format reads them by the offsets)
        problems = [f"inconsistent arrays ({type(err).__name__}: {' '.join(str(err).split())[:200]})"]
    if problems:
        more = f" (and {len(problems) - 1} more problem{'s' if len(problems) > 2 else ''})" if len(problems) > 1 else ""
        raise ValidationError(path, f"not a valid mlds dataset, nothing was stored: {problems[0]}{more}")


def default_author() -> str:
    env = os.environ.get("MLDS_AUTHOR")
    if env:
        return env
    try:
        user = getpass.getuser()
    except Exception:
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


# ----------------------------------------------------------------- add
def add(source: str | os.PathLike, dataset: str, *, message: str = "", store: Store, append: bool = False,
        dedupe: bool = True, metadata: dict[str, Any] | None = None, author: str | None = None,
        shard_max_frames: int | None = None, shard_max_bytes: int | None = None) -> dict[str, Any]:
    """Make a new version of ``dataset`` from ``source``; returns a report dict.

    ``append=False``: the new version holds exactly the frames of ``source``
    (shards of the previous version whose frames are a prefix of it are reused).
    ``append=True``: it holds every frame of ``latest`` followed by those of
    ``source``; the previous shards are reused byte for byte and the source's
    ``calculations``/``sources`` tables are appended to the manifest's (identical
    calculation settings share one entry), per-frame indices remapped.
    ``dedupe=True``: frames whose frame hash (spec §16) occurs in the previous
    version (when appending) or earlier in the source are not stored; they are
    counted in the report and in their source's provenance
    (``frames_dropped["duplicate"]``).

    Report keys: ``manifest``, ``version``, ``reused_shards``, ``new_shards``,
    ``new_bytes``, ``n_frames_added`` (frames written to new shards),
    ``duplicates_skipped``, ``unchanged`` (True when no new version was made).
    """
    from mlds.store import dedupe as dd

    check_name(dataset)
    max_frames = int(shard_max_frames or store.policy("shard_max_frames"))
    max_bytes = int(shard_max_bytes or store.policy("shard_max_bytes"))
    prev_hash = store.read_ref(dataset, "latest")
    prev = mf.load(store, prev_hash) if prev_hash else None
    if prev is not None and mf.kind(prev) != "dataset":
        raise StoreError(f"{store.name}: {dataset} is a {mf.kind(prev)}, not a dataset; choose another name")
    appending = append and prev is not None

    with contextlib.ExitStack() as stack:
        src = stack.enter_context(_open_input(source, store))
        tmpdir = Path(tempfile.mkdtemp(prefix="add-", dir=_staging_dir(store)))
        stack.callback(shutil.rmtree, tmpdir, True)
        src_meta = copy.deepcopy(dict(metadata if metadata is not None else src.metadata))
        src_meta.pop("created_with", None)
        sel = dd.select(src, dedupe=dedupe, known=dd.version_digests(store, prev) if appending and dedupe else None)
        dd.note_in_provenance(src_meta, sel)
        if appending and len(sel.keep) == 0:
            return {"manifest": prev_hash, "version": prev["version"], "reused_shards": len(prev["shards"]),
                    "new_shards": 0, "new_bytes": 0, "n_frames_added": 0, "duplicates_skipped": sel.skipped,
                    "unchanged": True}
        if appending:
            meta, calc_map, src_offset = _append_tables(prev["metadata"], src_meta)
        else:
            meta, calc_map, src_offset = src_meta, None, 0
            meta.setdefault("name", dataset)
        ds = src
        remapped = calc_map is not None and (calc_map != list(range(len(calc_map))) or src_offset > 0)
        if not sel.everything or remapped:
            ds = stack.enter_context(_select_frames(src, sel.keep, calc_map, src_offset, tmpdir / "selected.h5", meta))
        n = len(ds)

        shards: list[dict[str, Any]] = []
        pos = 0
        if appending:
            shards = [dict(s) for s in prev["shards"]]
        elif prev is not None:
            for s in prev["shards"]:
                end = pos + int(s["n_frames"])
                if end > n or not store.has_object(s["sha256"], int(s["size"])):
                    break
                if content_digest(ds, pos, end) != s["content_sha256"]:
                    break
                shards.append(dict(s))
                pos = end
        reused = len(shards)
        new = _write_shards(store, ds, pos, n, dataset, meta, tmpdir, max_frames, max_bytes)
        for s, (a, b) in new:
            if sel.digests:
                dd.remember(store, s["sha256"], sel.digests[a:b])
        shards += [s for s, _ in new]
        new_bytes = sum(int(s["size"]) for s, _ in new)
        summary = _merge_summary(prev["summary"], _summary(ds, meta, [s for s, _ in new]), meta, shards) \
            if appending else _summary(ds, meta, shards)

    report = {"reused_shards": reused, "new_shards": len(shards) - reused, "new_bytes": new_bytes,
              "n_frames_added": n - pos, "duplicates_skipped": sel.skipped}
    if prev is not None and [s["sha256"] for s in prev["shards"]] == [s["sha256"] for s in shards] \
            and prev["metadata"] == meta:
        return {"manifest": prev_hash, "version": prev["version"], **report, "new_shards": 0, "new_bytes": 0,
                "n_frames_added": 0, "unchanged": True}
    h, version = _commit_new_version(store, dataset, prev_hash, prev, {
        "metadata": meta, "shards": shards, "summary": summary}, author=author, message=message)
    return {"manifest": h, "version": version, **report, "unchanged": False}


def _commit_new_version(store: Store, name: str, prev_hash: str | None, prev: dict[str, Any] | None,
                        body: dict[str, Any], *, author: str | None, message: str,
                        kind: str | None = None) -> tuple[str, int]:
    """Write the manifest of the next version of ``name`` and move ``vN`` + ``latest`` to it."""
    version = (prev["version"] + 1) if prev else 1
    while store.read_ref(name, VERSION_TAG.format(version)) is not None:
        version += 1
    manifest = {"mlds_manifest": 1}
    if kind and kind != "dataset":
        manifest["kind"] = kind
    manifest.update({
        "dataset": name,
        "version": version,
        "parents": [prev_hash] if prev_hash else [],
        "author": author or default_author(),
        "message": message,
        "created": utcnow(),
        **body,
    })
    h = mf.put(store, manifest)
    commit_refs(store, name, {VERSION_TAG.format(version): h, "latest": h}, {h: manifest},
                expect={"latest": prev_hash, VERSION_TAG.format(version): None}, op="add")
    return h, version


def _append_tables(prev_meta: dict[str, Any], src_meta: dict[str, Any]) -> tuple[dict[str, Any], list[int], int]:
    """Previous metadata + the source's calculations/sources tables.

    Returns (metadata, calc_map, source_offset): the source's calculation ``j``
    is ``calc_map[j]`` in the result (identical settings share one entry), its
    source ``s`` is ``source_offset + s``.  Other keys the previous metadata
    lacks are taken from the source.
    """
    meta = copy.deepcopy(prev_meta)
    calcs = meta.setdefault("calculations", [])
    calc_map = []
    for c in src_meta.get("calculations") or []:
        if c in calcs:
            calc_map.append(calcs.index(c))
        else:
            calcs.append(copy.deepcopy(c))
            calc_map.append(len(calcs) - 1)
    sources = meta.setdefault("sources", [])
    offset = len(sources)
    for s in src_meta.get("sources") or []:
        s = copy.deepcopy(s)
        c = s.get("calculation") if isinstance(s, dict) else None
        if isinstance(c, int) and not isinstance(c, bool) and 0 <= c < len(calc_map):
            s["calculation"] = calc_map[c]
        sources.append(s)
    for k, v in src_meta.items():
        if k not in ("calculations", "sources", "name", "created_with") and k not in meta:
            meta[k] = copy.deepcopy(v)
    return meta, calc_map, offset


def _runs(idx: np.ndarray) -> Iterator[tuple[int, int]]:
    """Consecutive runs ``[a, b)`` of an ascending index array."""
    if len(idx) == 0:
        return
    breaks = np.nonzero(np.diff(idx) != 1)[0]
    starts = np.concatenate([[0], breaks + 1])
    ends = np.concatenate([breaks + 1, [len(idx)]])
    for s, e in zip(starts.tolist(), ends.tolist()):
        yield int(idx[s]), int(idx[e - 1]) + 1


@contextlib.contextmanager
def _select_frames(src: Any, keep: np.ndarray, calc_map: list[int] | None, src_offset: int, path: Path,
                   meta: dict[str, Any]) -> Iterator[Any]:
    """A staging dataset of the kept frames of ``src``, provenance/settings indices remapped."""
    from mlds.format.dataset import Dataset
    from mlds.format.writer import create

    def frames():
        for a, b in _runs(keep):
            for f in src.iter_frames(a, b):
                if calc_map is not None:
                    if 0 <= f.calculation < len(calc_map):
                        f.calculation = calc_map[f.calculation]
                    if f.source >= 0:
                        f.source += src_offset
                yield f

    with create(path, dict(meta), validate=False) as w:
        w.append(frames())
    ds = Dataset(path)
    try:
        yield ds
    finally:
        ds.close()


def _write_shards(store: Store, ds: Any, start: int, stop: int, dataset: str, meta: dict[str, Any], tmpdir: Path,
                  max_frames: int, max_bytes: int) -> list[tuple[dict[str, Any], tuple[int, int]]]:
    """Shards for frames ``start:stop`` of ``ds``, stored as objects: [(shard entry, (a, b))]."""
    from mlds.format.writer import create

    # shards carry no provenance or settings tables (they may hold local paths the public tier must not
    # publish); the frames' calculation/source indices refer to the manifest's metadata
    shard_meta = {"name": dataset, "created_with": "mlds store shard"}
    if "units" in meta:
        shard_meta["units"] = meta["units"]
    out = []
    for k, (a, b) in enumerate(_shard_ranges(ds, start, stop, max_frames, max_bytes)):
        path = tmpdir / f"{k}.h5"
        n_at = int(ds.array("n_atoms", a, b).sum())
        with create(path, dict(shard_meta), validate=False, chunk_frames=max(1, min(16384, b - a)),
                    chunk_atoms=max(1, min(65536, n_at))) as w:
            w.append(ds.iter_frames(a, b))
            n_atoms = w.n_atoms
        size = path.stat().st_size
        digest = content_digest(ds, a, b)
        h = store.adopt_file(path)
        out.append(({"sha256": h, "size": size, "n_frames": b - a, "n_atoms": int(n_atoms), "container": "hdf5",
                     "content_sha256": digest}, (a, b)))
    return out


def _staging_dir(store: Store) -> str:
    from mlds.store.store import local_temp_dir

    return local_temp_dir(store)


def _summary(ds: Any, meta: dict[str, Any], shards: list[dict[str, Any]]) -> dict[str, Any]:
    full = ds.summary()
    out = {k: full.get(k) for k in SUMMARY_KEYS if k in full}
    for k in ("elements", "formulas"):
        out[k] = list(out.get(k) or [])
    calcs = [c for c in meta.get("calculations") or [] if isinstance(c, dict)]
    out["codes"] = sorted({c["code"] for c in calcs if isinstance(c.get("code"), str)})
    out["functionals"] = sorted({c["functional"] for c in calcs if isinstance(c.get("functional"), str)})
    out["size"] = sum(int(s["size"]) for s in shards)
    out["n_frames"] = int(out.get("n_frames") or 0)
    out["n_atoms"] = int(out.get("n_atoms") or 0)
    out["nelements"] = len(out["elements"])
    return out


def _merge_summary(prev: dict[str, Any], new: dict[str, Any], meta: dict[str, Any],
                   shards: list[dict[str, Any]]) -> dict[str, Any]:
    """Summary of previous frames + appended frames, without reading the previous shards again."""
    from mlds.format.summary import MAX_FORMULAS

    out = dict(new)
    out["n_frames"] = int(prev.get("n_frames", 0)) + int(new.get("n_frames", 0))
    out["n_atoms"] = int(prev.get("n_atoms", 0)) + int(new.get("n_atoms", 0))
    out["elements"] = sorted(set(prev.get("elements") or []) | set(new.get("elements") or []))
    out["nelements"] = len(out["elements"])
    out["formulas"] = sorted(set(prev.get("formulas") or []) | set(new.get("formulas") or []))[:MAX_FORMULAS]
    for key, pick in (("energy_per_atom_min", min), ("energy_per_atom_max", max)):
        vals = [v for v in (prev.get(key), new.get(key)) if v is not None]
        out[key] = pick(vals) if vals else None
    for key in ("has_forces", "has_stress"):
        if key in prev or key in new:
            out[key] = bool(prev.get(key)) or bool(new.get(key))
    out["size"] = sum(int(s["size"]) for s in shards)
    return out


def commit_refs(store: Store, dataset: str, updates: dict[str, str], manifests: dict[str, dict[str, Any]], *,
                expect: dict[str, str | None] | None = None, op: str = "push", remote_label: str | None = None,
                force: bool = False, ready: Callable[[], None] | None = None) -> None:
    """Move every tag of ``updates`` ({tag: manifest hash}) together, or none of them.

    The commit point of every route that publishes a version (add, add_files,
    tag, push, pull, clone).  First the destination's tier policy must accept
    each manifest (:func:`mlds.store.policy.check_admission`).  Then the locks
    of all tags are taken (sorted order), every tag is checked -- ``expect[tag]``
    is the value the caller saw before (compare-and-swap), ``vN`` tags name one
    manifest forever, group/public tags are immutable -- and only if all pass
    are the refs written (version tags before ``latest``).  A conflict on any
    tag raises :class:`ConflictError` with nothing written; ``op`` ("push",
    "pull", "add", "tag") picks advice that fits what the caller was doing.
    ``ready``: called under the locks once every check passed, before any ref is written; it
    blocks until what the refs will name is in place and raises if it never will be (a push
    takes its locks while its objects are still going up: see :func:`mlds.store.sync.push`).
    """
    from mlds.errors import ConflictError
    from mlds.store import catalog
    from mlds.store.policy import check_admission, check_tag_move

    expect = expect or {}
    label = remote_label or store.name
    for h in dict.fromkeys(updates.values()):
        tags = sorted(t for t, x in updates.items() if x == h)
        check_admission(store, manifests[h], f"{dataset}@{tags[0]}")
    # where the catalog is updated by a conditional write, its read goes in the same round of requests as the
    # refs' (and the catalog write in the same round as the lock releases): a commit is four rounds of requests
    ahead = catalog.conditional(store) and getattr(store.fs, "mlds_thread_safe", False)
    new_here = all(expect.get(t) is None for t in updates)  # probably no catalog entry yet: list its tags ahead
    pending = None
    with store.lock_tags(dataset, list(updates)):
        jobs: list[Any] = list(updates) + ([None] if ahead else [])
        got = store.map(lambda t: store.read_ref_for_update(dataset, t) if t is not None
                        else catalog.prefetch(store, dataset, list_tags=new_here), jobs)
        read = dict(zip(updates, got))
        current = {t: v for t, (v, _) in read.items()}
        for tag, h in updates.items():
            cur = current[tag]
            if cur == h:
                continue
            if tag in expect and cur != expect[tag]:
                raise ConflictError(_moved(op, dataset, tag, label, expect[tag], cur))
            if is_version_tag(tag) and cur is not None and not force:
                raise ConflictError(_taken(op, dataset, tag, label, cur, h))
            if not force:
                check_tag_move(store, dataset, tag, cur, h)
        if ready is not None:
            ready()
        # every check passed: write the refs (concurrently where the backend allows; each is atomic, and
        # another writer waits for our locks, so their order does not matter to anyone)
        store.map(lambda t: store.write_ref(dataset, t, updates[t], token=read[t][1]),
                  [t for t in updates if current[t] != updates[t]])
        if ahead:
            from concurrent.futures import ThreadPoolExecutor

            pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlds-catalog")
            pending = pool.submit(catalog.update_entry, store, dataset, updates, manifests, got[-1])
            pool.shutdown(wait=False)
    if pending is not None:
        pending.result()
    else:
        catalog.update_entry(store, dataset, updates, manifests)


def _moved(op: str, dataset: str, tag: str, label: str, was: str | None, now: str | None) -> str:
    change = f"moved from {_short(was)} to {_short(now)}"
    if op == "push":
        return (f"tag {tag} of {dataset} on remote {label} {change} since you pulled; nothing was published; "
                f"pull, then push again")
    if op == "pull":
        return f"local tag {tag} of {dataset} {change} while pulling from {label}; nothing was changed; pull again"
    if op == "add":
        return (f"{dataset} in store {label} changed while adding (latest {change}: another add, pull or ingest "
                f"committed first); nothing was committed; run the add again")
    return f"tag {tag} of {dataset} in store {label} {change} meanwhile; nothing was changed; try again"


def _taken(op: str, dataset: str, tag: str, label: str, cur: str, h: str) -> str:
    if op == "push":
        return (f"tag {tag} of {dataset} on remote {label} already points to {_short(cur)}, not {_short(h)} "
                f"(someone else pushed {tag} first); nothing was published; pull, then push again")
    if op == "add":
        return (f"{tag} of {dataset} in store {label} was just made by another add ({_short(cur)}); "
                f"nothing was committed; run the add again")
    if op == "pull":
        return (f"local tag {tag} of {dataset} points to {_short(cur)} but remote {label} has {_short(h)}; "
                f"nothing was changed; keep yours under a new tag ('mlds tag {dataset}@{tag} NEWTAG') "
                f"and pull with --force")
    return f"tag {tag} of {dataset} in store {label} already points to {_short(cur)}; nothing was changed"


def _short(h: str | None) -> str:
    return "(none)" if h is None else h[:12]


# ----------------------------------------------------------------- reading
def open_ref(ref: str, store: Store | None = None, **options: Any):
    """Open ``NAME[@TAG]`` from the local store, reading the shards in place."""
    from mlds.format.concat import ConcatDataset
    from mlds.format.dataset import Dataset

    if store is None:
        from mlds.store.local import local_store

        store = local_store(create=False)  # opening never creates a store as a side effect
    name, tag = parse_ref(ref)
    h = resolve(store, name, tag)
    m = mf.load(store, h)
    if mf.kind(m) != "dataset":
        raise StoreError(f"{store.name}: {name}@{tag} is a {mf.kind(m)}, not a dataset; "
                         f"use checkout_files (mlds.store.checkout_files) to get its files")
    parts = []
    opened: dict[str, Any] = {}
    try:
        for s in m["shards"]:
            h, size = s["sha256"], int(s["size"])
            if h not in opened:
                if store.local_object_path(h) is None:
                    raise StoreError(f"{store.name}: open_ref needs a local store (pull {name}@{tag} first)")
                if not store.has_object(h):
                    raise StoreError(f"{store.name}: shard {h} of {name}@{tag} is missing; run 'mlds pull {name}'")
                store.verify_local_object(h, size, what=f"shard {h} of {name}@{tag}")  # size, and sha256 unless stamped
                d = Dataset(store.local_object_path(h), **options)
                opened[h] = d
                if len(d) != int(s["n_frames"]):
                    raise IntegrityError(f"{store.name}: shard {h} of {name}@{tag} holds {len(d)} frames, "
                                         f"its manifest says {s['n_frames']}; run 'mlds fsck'")
            parts.append(opened[h])
    except BaseException:
        for d in opened.values():
            d.close()
        raise
    return ConcatDataset(parts, metadata=m["metadata"])


def checkout(ref: str, output: str | os.PathLike, store: Store) -> Path:
    """Write version ``ref`` as one self-contained dataset file (.h5, .zarr, .zarr.zip)."""
    ds = open_ref(ref, store=store)
    try:
        return ds.copy_to(output)
    finally:
        ds.close()


def log(store: Store, dataset: str, tag: str = "latest") -> list[dict[str, Any]]:
    """Versions reachable from ``dataset@tag``, newest first (first parents)."""
    h: str | None = resolve(store, dataset, tag)
    tags_by_hash: dict[str, list[str]] = {}
    for t, v in store.list_refs(dataset).items():
        tags_by_hash.setdefault(v, []).append(t)
    out = []
    seen = set()
    while h and h not in seen:
        seen.add(h)
        if not store.has_object(h):
            out.append({"manifest": h, "missing": True, "tags": sorted(tags_by_hash.get(h, []))})
            break
        m = mf.load(store, h)
        out.append({"manifest": h, "kind": mf.kind(m), "version": m["version"], "author": m["author"],
                    "created": m["created"], "message": m["message"], "n_frames": m["summary"].get("n_frames", 0),
                    "size": mf.total_size(m), "shards": len(mf.objects(m)),
                    "tags": sorted(tags_by_hash.get(h, []), key=_tag_order)})
        h = m["parents"][0] if m["parents"] else None
    return out


def _tag_order(t: str) -> tuple:
    return (0 if t == "latest" else 1 if is_version_tag(t) else 2, t)


def tag(store: Store, ref: str, new_tag: str, *, force: bool = False) -> str:
    """Point ``NAME@new_tag`` at the version ``ref`` names; returns its manifest hash."""
    name, src = parse_ref(ref)
    check_name(new_tag, "tag")
    h = resolve(store, name, src)
    m = mf.load(store, h)
    if is_version_tag(new_tag) and new_tag != VERSION_TAG.format(m["version"]):
        raise StoreError(f"tag {new_tag!r} is reserved for version {new_tag[1:]}; choose another name")
    cur = store.read_ref(name, new_tag)
    if cur is not None and cur != h and new_tag != "latest" and not force:
        raise StoreError(f"tag {name}@{new_tag} already points to {cur[:12]}; use --force to move it")
    commit_refs(store, name, {new_tag: h}, {h: m}, expect={new_tag: cur}, op="tag")
    return h


# ----------------------------------------------------------------- maintenance
def reachable(store: Store, declared: dict[str, dict[int, str]] | None = None
              ) -> tuple[set[str], set[str], list[tuple[str, str]], set[str]]:
    """(manifests, objects, problems, tip_objects) reachable from every ref.

    Parents are followed; a pulled version's ancestors may be present as
    manifests only, so only the objects of tagged versions (``tip_objects``)
    must be present for the store to be complete.  A ref must point at a
    manifest of its own dataset.  ``declared`` (if given) is filled with the
    size each referenced object should have, and which version says so.
    """
    manifests: set[str] = set()
    shards: set[str] = set()
    tip_shards: set[str] = set()
    problems: list[tuple[str, str]] = []
    stack = []
    for ds in store.list_datasets():
        for t, h in store.list_refs(ds).items():
            stack.append((h, f"{ds}@{t}", True))
    tips_done: set[str] = set()
    dataset_of: dict[str, str] = {}
    while stack:
        h, via, is_tip = stack.pop()
        if is_tip and h in dataset_of and dataset_of[h] != via.split("@")[0]:
            problems.append((h, f"ref {via} points at a manifest of another dataset ({dataset_of[h]!r})"))
        if h in manifests and (not is_tip or h in tips_done):
            continue
        manifests.add(h)
        if not store.has_object(h):
            if is_tip:
                problems.append((h, f"manifest referenced by {via} is missing"))
            continue
        try:
            m = mf.load(store, h)
        except (IntegrityError, StoreError) as err:
            problems.append((h, str(err)))
            continue
        dataset_of[h] = m["dataset"]
        if is_tip and m["dataset"] != via.split("@")[0]:
            problems.append((h, f"ref {via} points at a manifest of another dataset ({m['dataset']!r})"))
        for o, size in mf.objects(m):
            shards.add(o)
            if declared is not None:
                declared.setdefault(o, {}).setdefault(size, via)
            if is_tip:
                tip_shards.add(o)
        if is_tip:
            tips_done.add(h)
        for p in m["parents"]:
            stack.append((p, via, False))
    return manifests, shards, problems, tip_shards


def fsck(store: Store, progress=None) -> dict[str, Any]:
    """Verify every object's sha256 and size, and every ref's manifest; list each bad object by key."""
    bad: list[tuple[str, str]] = []
    checked = 0
    present: dict[str, int] = {}
    declared: dict[str, dict[int, str]] = {}
    manifests, shards, problems, tip_shards = reachable(store, declared)
    for h, size, _ in store.iter_objects():
        if not HEX64.match(h):
            bad.append((f"objects/sha256/{h}", "unexpected file name (not a sha256 digest)"))
            continue
        checked += 1
        key = Store.object_key(h)
        present[h] = size
        wrong = [(n, via) for n, via in declared.get(h, {}).items() if n != size]
        if wrong:
            bad.append((key, f"{size} bytes, but {wrong[0][1]} says {wrong[0][0]}"))
            continue
        try:
            got = store.hash_object(h, limit=size)
        except Exception as err:  # noqa: BLE001 - report and go on
            bad.append((key, f"unreadable: {err}"))
            continue
        if got != h:
            bad.append((key, f"sha256 mismatch (content hashes to {got[:12]}...)"))
        elif store.is_local:
            store.remember_verified(h)
        if progress:
            progress(size)
    bad_keys = {k for k, _ in bad}
    for h, why in problems:
        if Store.object_key(h) not in bad_keys:
            bad.append((Store.object_key(h), why))
    for h in sorted(tip_shards - set(present)):
        bad.append((Store.object_key(h), "missing (a shard of a tagged version)"))
    return {"store": store.name, "objects": checked, "bad": bad, "ok": not bad}


def gc(store: Store, grace_seconds: float | None = None, dry_run: bool = False) -> dict[str, Any]:
    """Delete objects no ref reaches, but only those older than the grace period.

    Safety against a concurrent push: a push uploads shards and the manifest
    *before* it writes the ref, so for a while its objects are unreferenced.
    They are younger than the grace period (default 1 h, policy
    ``gc_grace_seconds``), so gc keeps them; a push must finish within the grace
    period.  Objects whose age cannot be determined are kept.  Abandoned
    ``tmp/`` staging files older than the grace period are removed too.
    """
    grace = float(grace_seconds if grace_seconds is not None else store.policy("gc_grace_seconds"))
    now = time.time()
    manifests, shards, problems, _ = reachable(store)
    if problems:
        raise StoreError(f"{store.name}: gc refused: {problems[0][1]} ({problems[0][0][:12]}); run 'mlds fsck'")
    keep = manifests | shards
    removed, kept_recent, freed = [], 0, 0
    candidates = []
    for h, size, mtime in list(store.iter_objects()):
        if h in keep or not HEX64.match(h):
            continue
        if mtime is None or now - mtime < grace:
            kept_recent += 1
            continue
        candidates.append((h, size))
    if candidates:
        # re-read the refs just before deleting: a ref written meanwhile may reference a candidate
        m2, s2, _, _ = reachable(store)
        keep2 = m2 | s2
        for h, size in candidates:
            if h in keep2:
                continue
            if not dry_run:
                store.delete_object(h)
            removed.append(h)
            freed += size
    for p, mtime in list(store.iter_tmp()):
        if mtime is not None and now - mtime >= grace and not dry_run:
            with contextlib.suppress(Exception):
                store.fs.rm(p, recursive=True)
    return {"removed": removed, "freed": freed, "kept_recent": kept_recent, "dry_run": dry_run}
