"""fsspec filesystem for GakuNin RDM / OSF storage, protocol ``rdm``.

URLs: ``rdm://<project guid>/<provider>/<path>`` or ``rdm://<project guid>/<path>``.
The second component names a storage provider **if the project has a provider of that
name** (as listed by ``GET /v2/nodes/<guid>/files/``); otherwise the project's default
storage is used and the component is the first part of the path.  Default storage:
``osfstorage`` when present, else the first institutional storage, else the first
listed.  (A folder that happens to carry a provider's name must therefore be written
with the provider spelled out: ``rdm://abcde/osfstorage/osfstorage/...``.)
``rdm://<guid>`` alone lists the project's providers as directories.  Names returned
by ``ls``/``info`` always carry the provider: ``<guid>/<provider>/<path>``.

Storage options: ``token`` (else env ``MLDS_RDM_TOKEN``/``RDM_TOKEN``/``OSF_TOKEN`` or
the token file, see :mod:`.auth`), ``api_url`` (else env ``MLDS_RDM_API_URL``, default
GakuNin's), ``retries``, ``backoff``, ``max_backoff``, ``transport`` (an httpx transport)
or ``client`` (a ready :class:`RDMClient`).

``info`` carries ``md5``, ``sha256`` (when the storage reports them), ``version`` (file
version number) and ``etag`` (changes with each new version) for compare-and-swap.
Writing an existing path uploads a new version.  Parent folders are created on write.
``open(path, "xb")`` and ``pipe_file(path, data, mode="create")`` create a file and raise
``FileExistsError`` on a 409 (the name exists) or a 200 (a create that lost a race at commit:
the service answers 200 and adds our bytes as a new version of the other's file) -- so they
are *not* an atomic exclusive create.  ``mkdir`` is: a folder create answers 409 at commit
time, and the store's locks are folders on rdm (:mod:`mlds.store.locks`).  ``remote`` (storage option) names the remote in error messages.

Listings are cached per instance (``dircache``), kept up to date with this instance's own
writes (a write puts its result into the cached listing instead of dropping it); a miss
lists the folder again unless the listing is younger than ``listing_ttl`` seconds (storage
option, default 0); a cached entry that went stale (the file was replaced or changed by
another writer) is refreshed once on a 404 or a hash mismatch when reading.
"""

from __future__ import annotations

import os
import posixpath
import tempfile
import threading
import time
import unicodedata
from datetime import datetime

from fsspec.spec import AbstractBufferedFile, AbstractFileSystem

from mlds.errors import RemoteError

from .auth import resolve_api_url, resolve_token
from .client import (KNOWN_PROVIDERS, Entry, Provider, RDMClient, RDMConflictError, RDMIntegrityError,
                     RDMNotFoundError, check_guid)


class RDMFileSystem(AbstractFileSystem):
    protocol = "rdm"
    root_marker = ""
    mlds_thread_safe = True  # httpx.Client is; threads share the listing cache (fewer requests)

    def __init__(self, token: str | None = None, api_url: str | None = None, *, retries: int = 6,
                 backoff: float = 0.5, max_backoff: float = 30.0, transport=None, client: RDMClient | None = None,
                 remote: str | None = None, listing_ttl: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        if client is None:
            client = RDMClient(resolve_token(token), resolve_api_url(api_url), retries=int(retries),
                               backoff=float(backoff), max_backoff=float(max_backoff), transport=transport,
                               remote=remote)
        self.client = client
        self._providers: dict[str, dict[str, Provider]] = {}
        self._listed: dict[str, float] = {}
        self._folders: dict[str, dict] = {}  # canonical path -> info of folders seen or made (stable links)
        self._listing_locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()
        # a miss in a listing younger than this many seconds is trusted (0: every miss lists again).  The
        # store sets it for its remotes -- one operation then never lists a folder twice -- and invalidates
        # the cache where it needs another writer's latest state (under a lock, when polling a lock)
        self.listing_ttl = float(listing_ttl)

    def __repr__(self) -> str:
        return f"<RDMFileSystem api_url={self.client.api_url!r}>"

    # ------------------------------------------------------------------ paths

    @classmethod
    def _strip_protocol(cls, path):
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]
        path = str(path)
        if path.startswith("rdm://"):
            path = path[len("rdm://"):]
        elif path.startswith("rdm:"):
            path = path[len("rdm:"):]
        return path.strip("/")

    def _provider_map(self, guid: str) -> dict[str, Provider]:
        if guid not in self._providers:
            self._providers[guid] = {p.name: p for p in self.client.providers(guid)}
        return self._providers[guid]

    def _split(self, path: str) -> tuple[str, str | None, list[str]]:
        # GakuNin stores names NFC-normalised; normalise ours the same way
        parts = [unicodedata.normalize("NFC", p) for p in self._strip_protocol(path).split("/") if p not in ("", ".")]
        if not parts:
            raise ValueError("rdm path needs a project: rdm://<project>/<provider>/<path>")
        if ".." in parts:
            raise ValueError(f"'..' is not allowed in rdm paths: {path}")
        guid = check_guid(parts[0])
        if len(parts) == 1:
            return guid, None, []
        provs = self._provider_map(guid)
        if parts[1] in provs:
            return guid, parts[1], parts[2:]
        if parts[1] in KNOWN_PROVIDERS:
            raise RemoteError(self.client.remote, f"project {guid} has no storage {parts[1]!r} "
                                                  f"(it has: {', '.join(sorted(provs)) or 'none'}); refusing to "
                                                  f"use a folder of that name in its default storage instead")
        return guid, RDMClient.pick_provider(list(provs.values())).name, parts[1:]

    def _canon(self, path: str) -> str:
        guid, prov, rel = self._split(path)
        if prov is None:
            return guid
        return "/".join([guid, prov, *rel])

    @staticmethod
    def _parent_c(cpath: str) -> str:
        return cpath.rsplit("/", 1)[0] if "/" in cpath else ""

    # ------------------------------------------------------------------ entries & cache

    def _info(self, cparent: str, e: Entry) -> dict:
        return {"name": f"{cparent}/{e.name}", "size": e.size if e.kind == "file" else 0,
                "type": "file" if e.kind == "file" else "directory",
                "md5": e.hashes.get("md5"), "sha256": e.hashes.get("sha256"), "sha512": e.hashes.get("sha512"),
                "version": e.version, "etag": e.etag, "modified": e.modified, "created": e.created,
                "provider": e.provider, "project": e.resource, "wb_path": e.path,
                "materialized": e.materialized, "id": e.id, "links": dict(e.links)}

    @staticmethod
    def _entry(info: dict) -> Entry:
        return Entry(name=posixpath.basename(info["name"]), kind="file" if info["type"] == "file" else "folder",
                     path=info["wb_path"], materialized=info["materialized"], provider=info["provider"],
                     resource=info["project"], size=info["size"] if info["type"] == "file" else None,
                     hashes={k: info[k] for k in ("md5", "sha256", "sha512") if info.get(k)},
                     version=info.get("version"), etag=info.get("etag"), modified=info.get("modified"),
                     created=info.get("created"), links=dict(info["links"]), id=info.get("id"))

    def _root_info(self, guid: str, prov: str) -> dict:
        p = self._provider_map(guid)[prov]
        info = self._info(guid, p.root())
        info.update(name=f"{guid}/{prov}", for_institutions=p.for_institutions)
        return info

    def _dir_entry(self, cpath: str) -> Entry:
        """Folder entry for a canonical path (raises FileNotFoundError / NotADirectoryError)."""
        parts = cpath.split("/")
        if len(parts) == 2:
            return self._entry(self._root_info(parts[0], parts[1]))
        known = self._folders.get(cpath)
        if known is not None:  # a folder this instance created or listed: its links do not change
            return self._entry(known)
        found = self._lookup(cpath, prefer="directory")
        if found["type"] != "directory":
            raise NotADirectoryError(cpath)
        return self._entry(found)

    def _lookup(self, cpath: str, prefer: str = "file") -> dict:
        parent, name = cpath.rsplit("/", 1)
        cached = parent in self.dircache
        matches = [i for i in self._ls_dir(parent) if i["name"] == cpath]
        if not matches and cached and time.monotonic() - self._listed.get(parent, 0.0) > self.listing_ttl:
            # a miss in an older cached listing may be someone else's new file: list again once
            self.dircache.pop(parent, None)
            matches = [i for i in self._ls_dir(parent) if i["name"] == cpath]
        if not matches:
            raise FileNotFoundError(f"rdm://{cpath}")
        for m in matches:
            if m["type"] == prefer:
                return m
        return matches[0]

    def _ls_dir(self, cpath: str) -> list[dict]:
        if cpath in self.dircache:
            return self.dircache[cpath]
        with self._listing_lock(cpath):  # threads sharing this instance list one folder once, not each
            if cpath in self.dircache:
                return self.dircache[cpath]
            return self._list_now(cpath)

    def _listing_lock(self, cpath: str) -> threading.Lock:
        with self._locks_lock:
            return self._listing_locks.setdefault(cpath, threading.Lock())

    def _list_now(self, cpath: str) -> list[dict]:
        entry = self._dir_entry(cpath)
        infos = [self._info(cpath, e) for e in self.client.list_folder(entry)]
        self.dircache[cpath] = infos
        self._listed[cpath] = time.monotonic()
        for i in infos:
            if i["type"] == "directory":
                self._folders[i["name"]] = i
        return infos

    def _cache_set(self, parent_c: str, info: dict) -> None:
        """Put a file or folder we just created or updated into the cached listing of its folder
        (instead of dropping the listing: the next write to that folder then costs no listing)."""
        if info["type"] == "directory":
            self._folders[info["name"]] = info
            if info["name"] not in self.dircache:  # a folder we just created is empty
                self.dircache[info["name"]] = []
                self._listed[info["name"]] = time.monotonic()
        listing = self.dircache.get(parent_c)
        if listing is None:
            return
        self.dircache[parent_c] = [i for i in listing if not (i["name"] == info["name"] and i["type"] == info["type"])]
        self.dircache[parent_c].append(info)

    def _cache_drop(self, cpath: str) -> None:
        """Forget a path we just deleted (and anything cached below it)."""
        parent_c = self._parent_c(cpath)
        if parent_c in self.dircache:
            self.dircache[parent_c] = [i for i in self.dircache[parent_c] if i["name"] != cpath]
        for cache in (self.dircache, self._folders):
            for key in list(cache):
                if key == cpath or key.startswith(cpath + "/"):
                    cache.pop(key, None)

    def invalidate_cache(self, path=None):
        if path is None:
            self.dircache.clear()
            self._folders.clear()
            return
        try:
            c = self._canon(path)
        except (ValueError, RemoteError):
            self.dircache.clear()
            return
        for cache in (self.dircache, self._folders):
            for key in list(cache):
                if key == c or key.startswith(c + "/"):
                    cache.pop(key, None)
        # the listings of every folder above decide whether the path exists at all: drop them too (a
        # folder's own entry stays known, so a path under a known folder costs one listing)
        up = self._parent_c(c)
        while up:
            self.dircache.pop(up, None)
            up = self._parent_c(up)

    # ------------------------------------------------------------------ read side

    def ls(self, path, detail=True, refresh=True, **kwargs):
        """List a folder.  Always asks the server for that folder (another writer's new
        files must be seen: the store lists refs this way); ``info``/``exists`` resolve
        paths through the cached listings and re-list on a miss."""
        guid, prov, rel = self._split(path)
        if prov is None:
            out = [self._root_info(guid, name) for name in self._provider_map(guid)]
        else:
            c = "/".join([guid, prov, *rel])
            if refresh:  # this listing and the ones above it (which say whether it exists) are asked again
                up = c
                while up:
                    self.dircache.pop(up, None)
                    up = self._parent_c(up)
            try:
                try:
                    out = list(self._ls_dir(c))
                except RDMNotFoundError:  # a known folder that was removed (and maybe made again) meanwhile
                    self.invalidate_cache(c)
                    out = list(self._ls_dir(c))
            except NotADirectoryError:
                out = [self.info(c)]
        return out if detail else [i["name"] for i in out]

    def info(self, path, **kwargs):
        guid, prov, rel = self._split(path)
        if prov is None:
            self._provider_map(guid)  # raises for unknown/forbidden projects
            return {"name": guid, "size": 0, "type": "directory", "project": guid}
        if not rel:
            return self._root_info(guid, prov)
        return dict(self._lookup("/".join([guid, prov, *rel])))

    def exists(self, path, **kwargs):
        try:
            self.info(path)
            return True
        except FileNotFoundError:
            return False

    def _file_entry(self, path) -> Entry:
        info = self.info(path)
        if info["type"] != "file":
            raise IsADirectoryError(f"rdm://{info['name']}")
        return self._entry(info)

    def _fresh(self, path, fn):
        """``fn(entry)`` on the file's entry; if that fails with 404 or a hash mismatch while the
        entry came from a cached listing (another writer replaced or changed the file since),
        list again once and retry."""
        c = self._canon(path)
        cached = self._parent_c(c) in self.dircache
        try:
            return fn(self._file_entry(path))
        except (RDMNotFoundError, RDMIntegrityError):
            if not cached:
                raise
        self.invalidate_cache(c)
        return fn(self._file_entry(path))

    def cat_file(self, path, start=None, end=None, version=None, **kwargs):
        def read(e):
            if version is not None:
                e = self.client.metadata(e, version)
            return self.client.read(e, start=start, end=end, version=version)
        return self._fresh(path, read)

    def get_file(self, rpath, lpath, callback=None, outfile=None, version=None, **kwargs):
        if outfile is None and self.isdir(rpath):
            os.makedirs(lpath, exist_ok=True)
            return

        start = outfile.tell() if outfile is not None and outfile.seekable() else None

        def fetch(e):
            if version is not None:
                e = self.client.metadata(e, version)
            if outfile is not None:
                if start is not None and outfile.tell() != start:  # a retry after a stale entry
                    outfile.seek(start)
                    outfile.truncate()
                self.client.download(e, outfile, version=version)
            else:
                self.client.download(e, lpath, version=version)
            return e
        e = self._fresh(rpath, fetch)
        if callback is not None:
            callback.set_size(e.size or 0)
            callback.absolute_update(e.size or 0)

    def _open(self, path, mode="rb", block_size=None, autocommit=True, cache_options=None, version=None, **kwargs):
        if "r" in mode:
            e = self._file_entry(path)
            if version is not None:
                e = self.client.metadata(e, version)
            return RDMFile(self, self._canon(path), mode, block_size=block_size or 5 * 2**20,
                           cache_options=cache_options, entry=e, version=version)
        if "a" in mode:
            raise NotImplementedError("append is not supported on rdm remotes")
        mode = "xb" if "x" in mode else "wb"
        return RDMFile(self, self._canon(path), mode, block_size=block_size or 5 * 2**20, autocommit=autocommit)

    def checksum(self, path):
        info = self.info(path)
        h = info.get("sha256") or info.get("md5") or info.get("etag")
        return int(h, 16) if h else super().checksum(path)

    def ukey(self, path):
        info = self.info(path)
        return info.get("etag") or info.get("sha256") or super().ukey(path)

    def modified(self, path):
        m = self.info(path).get("modified")
        if not m:
            raise NotImplementedError("no modification time")
        return datetime.fromisoformat(m.replace("Z", "+00:00"))

    def created(self, path):
        m = self.info(path).get("created")
        if not m:
            raise NotImplementedError("no creation time")
        return datetime.fromisoformat(m.replace("Z", "+00:00"))

    def versions(self, path) -> list[dict]:
        """File versions, newest first (``version``, ``modified``, ``hashes``, ``user``)."""
        return self.client.versions(self._file_entry(path))

    # ------------------------------------------------------------------ write side

    def _ensure_dir(self, cpath: str) -> Entry:
        try:
            return self._dir_entry(cpath)
        except FileNotFoundError:
            pass
        parent = self._ensure_dir(self._parent_c(cpath))
        e = self.client.create_folder(parent, cpath.rsplit("/", 1)[1], exist_ok=True)
        self._cache_set(self._parent_c(cpath), self._info(self._parent_c(cpath), e))
        return e

    def _write(self, path, data, exclusive: bool = False) -> dict:
        guid, prov, rel = self._split(path)
        if prov is None or not rel:
            raise IsADirectoryError(f"rdm://{path}: cannot write to a project or provider root")
        c = "/".join([guid, prov, *rel])
        parent_c = self._parent_c(c)
        parent = self._ensure_dir(parent_c)
        if exclusive:
            # the server decides (409 -> FileExistsError); no look-up first, that would race
            if hasattr(data, "seek"):
                start = data.tell()
            try:
                try:
                    new = self.client.create(parent, rel[-1], data)
                except RDMNotFoundError:
                    # a cached parent folder that someone removed meanwhile: make it again, once
                    self.invalidate_cache(parent_c)
                    parent = self._ensure_dir(parent_c)
                    if hasattr(data, "seek"):
                        data.seek(start)
                    new = self.client.create(parent, rel[-1], data)
            except BaseException:
                self.invalidate_cache(parent_c)
                raise
            info = self._info(parent_c, new)
            self._cache_set(parent_c, info)
            return info
        existing = None
        try:
            info = self._lookup(c, prefer="file")
            if info["type"] == "file":
                existing = self._entry(info)
        except FileNotFoundError:
            pass
        try:
            try:
                new = self.client.upload(parent, rel[-1], data, existing=existing)
            except RDMNotFoundError:
                if existing is None:
                    raise
                # stale cache: the file went away; create it afresh
                new = self.client.upload(parent, rel[-1], data)
        except BaseException:
            self.invalidate_cache(parent_c)
            raise
        info = self._info(parent_c, new)
        self._cache_set(parent_c, info)
        return info

    def pipe_file(self, path, value, mode="overwrite", **kwargs):
        """Write ``value``; ``mode="create"`` is an atomic create that raises
        ``FileExistsError`` if the file exists (otherwise a new version is uploaded)."""
        if mode not in ("overwrite", "create"):
            raise ValueError(f"pipe_file mode must be 'overwrite' or 'create', not {mode!r}")
        self._write(path, value, exclusive=mode == "create")

    def put_file(self, lpath, rpath, callback=None, **kwargs):
        if os.path.isdir(lpath):
            self.makedirs(rpath, exist_ok=True)
            return
        self._write(rpath, os.fspath(lpath))
        if callback is not None:
            size = os.path.getsize(lpath)
            callback.set_size(size)
            callback.absolute_update(size)

    def mkdir(self, path, create_parents=True, **kwargs):
        """Create a folder; ``FileExistsError`` if it exists.  The server decides (409 at commit time,
        unlike a file create), which makes this the atomic primitive of the store's locks."""
        guid, prov, rel = self._split(path)
        if prov is None or not rel:
            return
        c = "/".join([guid, prov, *rel])
        parent_c = self._parent_c(c)
        parent = self._ensure_dir(parent_c) if create_parents else self._dir_entry(parent_c)
        try:
            try:
                e = self.client.create_folder(parent, rel[-1], exist_ok=False)
            except RDMNotFoundError:
                if not create_parents:
                    raise
                # a cached parent folder that someone removed meanwhile: make it again, once
                self.invalidate_cache(parent_c)
                e = self.client.create_folder(self._ensure_dir(parent_c), rel[-1], exist_ok=False)
        except BaseException:
            self.invalidate_cache(parent_c)
            raise
        self._cache_set(parent_c, self._info(parent_c, e))

    def makedirs(self, path, exist_ok=False):
        if not exist_ok and self.exists(path):
            raise FileExistsError(f"rdm://{self._canon(path)}")
        guid, prov, rel = self._split(path)
        if prov is None or not rel:
            return
        self._ensure_dir("/".join([guid, prov, *rel]))

    def rm_file(self, path):
        e = self._file_entry(path)
        try:
            self.client.delete(e)
        except BaseException:
            self.invalidate_cache(path)
            raise
        self._cache_drop(self._canon(path))

    def _rm(self, path):
        info = self.info(path)
        try:
            self.client.delete(self._entry(info), confirm_root=len(self._canon(path).split("/")) == 2)
        except BaseException:
            self.invalidate_cache(path)
            raise
        self._cache_drop(self._canon(path))

    def rmdir(self, path):
        info = self.info(path)
        if info["type"] != "directory":
            raise NotADirectoryError(path)
        if self.ls(path):
            raise OSError(f"directory not empty: rdm://{info['name']}")
        self._rm(path)

    def rm(self, path, recursive=False, maxdepth=None):
        paths = path if isinstance(path, list) else [path]
        for p in paths:
            if isinstance(p, str) and any(ch in p for ch in "*?["):
                self.rm(self.expand_path(p, recursive=recursive, maxdepth=maxdepth), recursive=recursive)
                continue
            info = self.info(p)
            if info["type"] == "directory":
                if len(self._canon(p).split("/")) < 2:
                    raise PermissionError(f"refusing to delete a whole project: rdm://{p}")
                if not recursive and self.ls(p):
                    raise IsADirectoryError(f"rdm://{info['name']} is a non-empty directory; use recursive=True")
            self._rm(p)

    def _mv_or_cp(self, action: str, path1, path2) -> dict:
        src_info = self.info(path1)
        src = self._entry(src_info)
        c1 = src_info["name"]
        guid, prov, rel = self._split(path2)
        if prov is None or not rel:
            dest_c = self._canon(path2)
            if prov is None:
                raise IsADirectoryError(f"rdm://{path2}: name a provider")
            new_name = src.name
            dest_dir_c = dest_c
        else:
            c2 = "/".join([guid, prov, *rel])
            try:
                is_dir = self.info(c2)["type"] == "directory"
            except FileNotFoundError:
                is_dir = False
            if is_dir:  # into an existing directory, like mv(1)
                dest_dir_c, new_name = c2, src.name
            else:
                dest_dir_c, new_name = self._parent_c(c2), rel[-1]
        if dest_dir_c + "/" + new_name == c1:
            return src_info
        dest_dir = self._ensure_dir(dest_dir_c)
        try:
            try:
                if action == "move" and dest_dir_c == self._parent_c(c1):
                    out = self.client.rename(src, new_name)
                elif action == "move":
                    out = self.client.move(src, dest_dir, new_name)
                else:
                    out = self.client.copy(src, dest_dir, new_name)
            except (RemoteError, RDMConflictError):
                # an answer lost on the way back, then a retry that failed because the first try had
                # worked: if the destination holds what we moved (and the source is gone), it is done
                done = self._moved_already(action, src_info, dest_dir_c + "/" + new_name)
                if done is None:
                    raise
                return done
        finally:
            if action == "move":
                self.invalidate_cache(c1)
            self.invalidate_cache(dest_dir_c + "/" + new_name)
        return self._info(dest_dir_c, out) if out is not None else {}

    def _moved_already(self, action: str, src_info: dict, dest_c: str) -> dict | None:
        self.invalidate_cache(src_info["name"])
        self.invalidate_cache(dest_c)
        try:
            got = self.info(dest_c)
        except (FileNotFoundError, RemoteError):
            return None
        if got["type"] != src_info["type"]:
            return None
        if src_info["type"] == "file":
            if got.get("size") != src_info.get("size"):
                return None
            if src_info.get("sha256") and got.get("sha256") and got["sha256"] != src_info["sha256"]:
                return None
        if action == "move" and self.exists(src_info["name"]):
            return None
        return got

    def mv(self, path1, path2, recursive=True, maxdepth=None, **kwargs):
        """Server-side move/rename (replaces an existing file at ``path2``; into ``path2``
        when that is an existing directory).  Folders move whole, with their history."""
        if isinstance(path1, list):
            targets = path2 if isinstance(path2, list) else [path2] * len(path1)
            for a, b in zip(path1, targets):
                self._mv_or_cp("move", a, b)
            return
        self._mv_or_cp("move", path1, path2)

    def cp_file(self, path1, path2, **kwargs):
        self._mv_or_cp("copy", path1, path2)

    def copy(self, path1, path2, recursive=False, maxdepth=None, on_error=None, **kwargs):
        if isinstance(path1, str) and isinstance(path2, str):
            self._mv_or_cp("copy", path1, path2)
        else:
            super().copy(path1, path2, recursive=recursive, maxdepth=maxdepth, on_error=on_error, **kwargs)


class RDMFile(AbstractBufferedFile):
    """Read: byte ranges fetched with HTTP Range.  Write: spooled to a temp file on disk,
    uploaded (streamed, one request) on close."""

    def __init__(self, fs: RDMFileSystem, path, mode="rb", block_size=5 * 2**20, autocommit=True,
                 cache_options=None, entry: Entry | None = None, version=None, **kwargs):
        self.entry = entry
        self.version = version
        self._spool = None
        kw = {}
        if entry is not None:
            kw["size"] = entry.size or 0
        super().__init__(fs, path, mode, block_size=block_size, autocommit=autocommit,
                         cache_type="readahead", cache_options=cache_options, **kw)
        if entry is not None:
            self.details = fs._info(fs._parent_c(path), entry)

    def _fetch_range(self, start, end):
        if start >= end:
            return b""
        return self.fs.client.read(self.entry, start=start, end=end, version=self.version)

    def _initiate_upload(self):
        self._spool = tempfile.TemporaryFile(prefix="mlds-rdm-")

    def _upload_chunk(self, final=False):
        self._spool.write(self.buffer.getvalue())
        if final:
            self._spool.flush()
            self._spool.seek(0)
            try:
                self.fs._write(self.path, self._spool, exclusive="x" in self.mode)
            finally:
                self._spool.close()
                self._spool = None
        return True

    def discard(self):
        if self._spool is not None:
            self._spool.close()
            self._spool = None
