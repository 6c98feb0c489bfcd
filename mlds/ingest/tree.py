"""Run trees: local folders and ``sftp://`` (any fsspec URL) walked the same way.

A :class:`TreeSpec` (URL + remote options) is small and picklable, so worker
processes and Dask workers re-open the same tree themselves.  Only what the
converters need is read: a head and a tail to recognise a file and tell whether
its run finished, then the chosen source files, one at a time.  A remote file is
read through a local temporary copy of that one file (the readers stream from a
local path); whole run folders are never copied.

The walk is our own loop over ``listdir`` (not ``fs.find``) so that a folder
that disappears mid-walk, or one we may not read, is noted and skipped instead
of aborting the whole walk.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import stat as statmod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from mlds.errors import FormatError

HEAD_BYTES = 64 * 1024   # what the registry's sniffers look at (mlds.io.registry.SNIFF_BYTES)
FIRST_HEAD = 16 * 1024   # enough for every DFT output's signature; the rest of HEAD_BYTES only when needed
TAIL_BYTES = 8 * 1024    # holds VASP's timing block, pw.x's "JOB DONE" and a closing XML tag

# Files and folders a calculation writes that are never a source of frames: skipped by name so
# a walk over thousands of run folders does not open wavefunctions and charge densities.
SKIP_NAMES = frozenset({
    "WAVECAR", "WAVEDER", "CHGCAR", "CHG", "AECCAR0", "AECCAR1", "AECCAR2", "LOCPOT", "ELFCAR", "PARCHG",
    "PROCAR", "DOSCAR", "EIGENVAL", "POTCAR", "POSCAR", "CONTCAR", "KPOINTS", "INCAR", "IBZKPT", "OSZICAR",
    "XDATCAR", "PCDAT", "REPORT", "vaspout.h5", "vaspwave.h5", "ML_AB", "ML_ABN", "ML_FF", "ML_FFN",
})
SKIP_SUFFIXES = (".h5", ".hdf5", ".upf", ".UPF", ".gz", ".bz2", ".xz", ".zst", ".tar", ".zip", ".npy", ".npz",
                 ".png", ".jpg", ".pdf", ".cube", ".dat", ".wfc", ".py", ".sh", ".json")
SAVE_KEEP = "data-file-schema.xml"  # the only file of a pw.x <prefix>.save/ folder that holds frames


@dataclass(frozen=True)
class TreeSpec:
    """Where a run tree is: a local path or a URL, plus remote options (no secrets)."""

    url: str
    options: tuple[tuple[str, Any], ...] = ()

    @property
    def is_local(self) -> bool:
        return "://" not in self.url or self.url.lower().startswith("file://")

    def options_dict(self) -> dict[str, Any]:
        return dict(self.options)


@dataclass
class FileEntry:
    loc: str      # location: absolute local path, or the URL of a remote file (no credentials)
    path: str     # path inside the tree's filesystem
    size: int
    mtime: float  # seconds since the epoch


@dataclass
class WalkProblem:
    loc: str
    reason: str


@dataclass
class Tree:
    """One opened run tree; local trees use ``os`` directly, others an fsspec filesystem."""

    spec: TreeSpec
    root: str                       # path inside the filesystem
    fs: Any = None                  # None for local trees
    prefix: str = ""                # URL prefix for locations of remote files
    problems: list[WalkProblem] = field(default_factory=list)

    # ---------------------------------------------------------------- locations
    def loc(self, path: str) -> str:
        return path if self.fs is None else self.prefix + path

    def path_of(self, loc: str) -> str:
        return loc if self.fs is None else loc[len(self.prefix):]

    @property
    def root_dir(self) -> str:
        """Location of the folder walked (the parent folder when a single file was given)."""
        cached = self.__dict__.get("_root_dir")
        if cached is None:
            single = os.path.isfile(self.root) if self.fs is None else self._info_type(self.root) == "file"
            root = self.loc(self.root)
            cached = self.__dict__["_root_dir"] = root.rsplit("/", 1)[0] if single else root
        return cached

    def rel(self, loc: str) -> str:
        """``loc`` relative to :attr:`root_dir`, "/"-separated ("" for the root itself)."""
        root = self.root_dir.rstrip("/")
        if loc == root:
            return ""
        if loc.startswith(root + "/"):
            return loc[len(root) + 1:].replace(os.sep, "/")
        return loc.replace(os.sep, "/").strip("/")

    def contains(self, loc: str) -> bool:
        root = self.root_dir.rstrip("/")
        return loc == root or loc.startswith(root + "/")

    def _info_type(self, path: str) -> str | None:
        if not hasattr(self, "_root_type"):
            info = self._info(path)
            self._root_type = None if info is None else info.get("type")
        return self._root_type

    # ---------------------------------------------------------------- walking
    def walk(self, skip: Callable[[str], bool] | None = None) -> Iterator[FileEntry]:
        """Every candidate file below the root (hidden entries and known non-sources left out)."""
        if self.fs is None:
            if os.path.isfile(self.root):
                yield from self._local_file(self.root)
                return
            yield from self._walk_local(self.root, skip)
        else:
            info = self._info(self.root)
            if info is None:
                raise FormatError(self.loc(self.root), "no such file or directory")
            if info.get("type") == "file":
                yield FileEntry(self.loc(self.root), self.root, int(info.get("size") or 0), _mtime(info))
                return
            yield from self._walk_fs(self.root, skip)

    def _local_file(self, path: str) -> Iterator[FileEntry]:
        try:
            st = os.stat(path)
        except OSError as err:
            self.problems.append(WalkProblem(path, _os_reason(err)))
            return
        yield FileEntry(path, path, st.st_size, st.st_mtime)

    def _walk_local(self, top: str, skip: Callable[[str], bool] | None) -> Iterator[FileEntry]:
        stack = [top]
        while stack:
            d = stack.pop()
            if skip is not None and skip(d):
                continue
            try:
                with os.scandir(d) as it:
                    entries = sorted(it, key=lambda e: e.name)
            except FileNotFoundError:
                self.problems.append(WalkProblem(d, "folder disappeared during the walk"))
                continue
            except OSError as err:
                self.problems.append(WalkProblem(d, f"cannot list folder: {_os_reason(err)}"))
                continue
            in_save = d.endswith(".save")
            subdirs = []
            for e in entries:
                if e.name.startswith("."):
                    continue
                try:
                    if e.is_dir(follow_symlinks=False):
                        subdirs.append(e.path)
                        continue
                    if not e.is_file():
                        continue
                    if not _candidate_name(e.name, in_save):
                        continue
                    st = e.stat()
                except FileNotFoundError:
                    continue  # removed between listing and stat: gone, nothing to do
                except OSError as err:
                    self.problems.append(WalkProblem(e.path, _os_reason(err)))
                    continue
                yield FileEntry(e.path, e.path, st.st_size, st.st_mtime)
            stack.extend(reversed(subdirs))

    def _info(self, path: str) -> dict[str, Any] | None:
        try:
            return self.fs.info(path)
        except FileNotFoundError:
            return None

    def _walk_fs(self, top: str, skip: Callable[[str], bool] | None) -> Iterator[FileEntry]:
        stack = [top]
        while stack:
            d = stack.pop()
            if skip is not None and skip(self.loc(d)):
                continue
            try:
                entries = sorted(self.fs.ls(d, detail=True), key=lambda e: e["name"])
            except FileNotFoundError:
                self.problems.append(WalkProblem(self.loc(d), "folder disappeared during the walk"))
                continue
            except PermissionError as err:
                self.problems.append(WalkProblem(self.loc(d), f"cannot list folder: {_os_reason(err)}"))
                continue
            in_save = d.rstrip("/").endswith(".save")
            subdirs = []
            for e in entries:
                name = posixpath.basename(e["name"].rstrip("/"))
                if name.startswith("."):
                    continue
                p = self.fs._strip_protocol(e["name"]).rstrip("/")
                if e.get("type") == "directory":
                    subdirs.append(p)
                elif e.get("type") == "file" and _candidate_name(name, in_save):
                    yield FileEntry(self.loc(p), p, int(e.get("size") or 0), _mtime(e))
            stack.extend(reversed(subdirs))

    # ---------------------------------------------------------------- reading
    def stat(self, path: str) -> tuple[int, float] | None:
        """(size, mtime) now, or None when the file is gone."""
        if self.fs is None:
            try:
                st = os.stat(path)
            except FileNotFoundError:
                return None
            return st.st_size, st.st_mtime
        info = self._info(path)
        return None if info is None else (int(info.get("size") or 0), _mtime(info))

    def recognise(self, path: str, size: int, sniff: Callable[[str, bytes], str | None]) -> tuple[str | None, bytes]:
        """(format, last :data:`TAIL_BYTES`) of a file, in one open.

        ``sniff(name, head)`` first sees :data:`FIRST_HEAD` bytes, and the full
        :data:`HEAD_BYTES` only if that was not enough: a walk over thousands of
        outputs reads a few kilobytes of each, not 64 KiB.
        """
        name = path.rsplit("/", 1)[-1]
        opener = open if self.fs is None else self.fs.open
        with opener(path, "rb") as fh:
            head = fh.read(FIRST_HEAD)
            fmt = sniff(name, head)
            if fmt is None and len(head) == FIRST_HEAD:
                head += fh.read(HEAD_BYTES - FIRST_HEAD)
                fmt = sniff(name, head)
            if size <= len(head):
                return fmt, head[-TAIL_BYTES:]
            fh.seek(max(0, size - TAIL_BYTES))
            tail = fh.read(TAIL_BYTES)
        return fmt, tail

    def fetch(self, path: str, dest: Path) -> None:
        """Copy one remote file to ``dest`` (local trees are read in place and never copied)."""
        self.fs.get_file(path, str(dest))

    def close(self) -> None:
        client = getattr(self.fs, "client", None)
        close = getattr(client, "close", None)
        if callable(close):
            with contextlib.suppress(Exception):
                close()


def _candidate_name(name: str, in_save: bool) -> bool:
    if in_save:
        return name == SAVE_KEEP
    if name in SKIP_NAMES or name.endswith(SKIP_SUFFIXES):
        return False
    return not name.startswith(("WAVECAR", "CHGCAR"))


def _mtime(info: dict[str, Any]) -> float:
    from mlds.store.store import _mtime as store_mtime

    value = store_mtime(info)
    return float(value) if value is not None else 0.0


def _os_reason(err: OSError) -> str:
    if isinstance(err, PermissionError):
        return "permission denied"
    return err.strerror or type(err).__name__


def parse_spec(location: str | os.PathLike, options: dict[str, Any] | None = None) -> TreeSpec:
    """A local path (made absolute) or a URL, with remote options merged from matching remotes."""
    text = os.fspath(location)
    if "://" not in text or text.lower().startswith("file://"):
        path = text[len("file://"):] if text.lower().startswith("file://") else text
        p = Path(path).expanduser().absolute()
        if not p.exists():
            raise FormatError(p, "no such file or directory")
        return TreeSpec(str(Path(os.path.normpath(p))))
    merged = dict(_options_of_configured_remote(text))
    merged.update(options or {})
    return TreeSpec(text.rstrip("/") or text, tuple(sorted(merged.items())))


def _options_of_configured_remote(url: str) -> dict[str, Any]:
    """Options (key file, known hosts, ...) of a configured remote on the same host and user.

    Lets ``mlds ingest sftp://login-node/scratch/runs`` reuse what ``mlds remote
    add`` was told about that machine; credentials themselves are never in config.
    """
    from urllib.parse import urlsplit

    from mlds.remotes.config import ConfigError, list_remotes

    want = urlsplit(url)
    try:
        remotes = list_remotes()
    except ConfigError:
        return {}
    for r in remotes:
        have = urlsplit(r.url)
        if (have.scheme, have.hostname, have.port, have.username) == (want.scheme, want.hostname, want.port, want.username):
            return dict(r.options)
    return {}


def open_tree(spec: TreeSpec) -> Tree:
    if spec.is_local:
        path = spec.url[len("file://"):] if spec.url.lower().startswith("file://") else spec.url
        return Tree(spec, path)
    from urllib.parse import urlsplit, urlunsplit

    from mlds.remotes.config import Remote, redact_url
    from mlds.remotes.filesystems import open_remote_fs

    shown = redact_url(spec.url)
    remote = Remote(name=shown, url=spec.url, options=spec.options_dict())
    fs, root = open_remote_fs(remote)
    parts = urlsplit(shown)
    prefix = urlunsplit((parts.scheme, parts.netloc, "", "", ""))
    return Tree(spec, root, fs=fs, prefix=prefix)


def is_readable_local(path: str) -> bool:
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return statmod.S_ISREG(mode) and os.access(path, os.R_OK)
