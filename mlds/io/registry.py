"""Registry of readers and writers, with detection by content.

Modelled on dpdata's format plugins: each format module registers a class
under a short name; :func:`detect` asks every reader to ``sniff`` the first
bytes of a file (and its name) so users rarely need ``--from``.
"""

from __future__ import annotations

import hashlib
import os
import queue
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterable, Iterator

from mlds.errors import UnknownFormatError
from mlds.format.frame import Frame, FrameBatch

SNIFF_BYTES = 64 * 1024


@dataclass
class SourceReport:
    """What one reader did with one source file: becomes a provenance entry."""

    path: str
    format: str
    sha256: str = ""
    code: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)  # metadata-schema "calculation" object
    kept: int = 0
    dropped: dict[str, int] = field(default_factory=dict)   # reason -> count
    warnings: list[str] = field(default_factory=list)
    # kept step indices as [first, last] runs: O(runs) memory, not O(frames)
    step_runs: list[list[int]] = field(default_factory=list)
    steps_in_order: bool = True
    # why the source gave no frame: set by every reader that yields none, e.g.
    # "run aborted before the first ionic step completed"; None when it gave frames
    empty_reason: str | None = None
    # units the reader assumed for a format that carries none (n2p2): {"length": ..., "energy": ...}
    units: dict[str, str] | None = None

    def keep_step(self, step: int) -> None:
        runs = self.step_runs
        if runs and step == runs[-1][1] + 1:
            runs[-1][1] = step
        else:
            if runs and step <= runs[-1][1]:
                self.steps_in_order = False  # e.g. frames gathered from several files
            runs.append([step, step])

    def steps_kept(self) -> str | None:
        """Kept ionic steps as ``"0-9,12"`` (the spec's compact form), when known and ascending."""
        if not self.step_runs or not self.steps_in_order:
            return None
        return ",".join(f"{a}" if a == b else f"{a}-{b}" for a, b in self.step_runs)

    def drop(self, reason: str, count: int = 1) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + count

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    def to_provenance(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "path": self.path,
            "sha256": self.sha256,
            "format": self.format,
            "frames_kept": self.kept,
            "frames_dropped": dict(self.dropped),
        }
        if self.code:
            out["code"] = self.code
        steps = self.steps_kept()
        if steps is not None and len(self.step_runs) <= 1000:  # beyond that, frames/source_step says it
            out["steps_kept"] = steps
        if self.warnings:
            out["warnings"] = list(self.warnings)
        if self.units:
            out["units"] = dict(self.units)
        if self.kept == 0 and self.empty_reason:
            out["empty_reason"] = self.empty_reason
        return out

    def set_empty_reason(self, reason: str) -> None:
        """Record why no frame came out so far (the first, most specific reason wins); cleared
        when the reader yields a frame after all."""
        if self.empty_reason is None and self.kept == 0:
            self.empty_reason = reason

    def default_empty_reason(self) -> str:
        """A reason from the tallies, for readers that found steps but kept none."""
        if not self.dropped:
            return "no frame in the file"
        total = sum(self.dropped.values())
        parts = ", ".join(f"{n} {_DROP_WORDS.get(k, k)}" for k, n in self.dropped.items())
        hint = " (keep_unconverged / --keep-unconverged keeps them)" if "scf-unconverged" in self.dropped else ""
        return f"all {total} step(s) dropped: {parts}{hint}"


_DROP_WORDS = {
    "scf-unconverged": "with an unconverged SCF",
    "ml-predicted": "predicted by the machine-learned force field",
    "no-forces": "without forces",
    "no-energy": "without an energy",
    "non-finite": "with NaN/Inf values",
    "no-scf": "without SCF steps",
    "incomplete-step": "incomplete",
}


class Reader:
    """Base class: iterate to get frames; ``report`` fills in while iterating.

    Subclasses set ``name``, ``extensions`` and implement ``sniff`` and
    ``_frames``.  Readers stream: memory stays bounded on multi-GB files.
    """

    name: ClassVar[str] = ""
    extensions: ClassVar[tuple[str, ...]] = ()
    description: ClassVar[str] = ""
    # True: ``_frames`` reads the file only through ``_read``/``_readline`` (which feed every byte
    # into ``self._hasher``), so the SHA-256 comes from that one pass instead of a second read of
    # the whole file, computed on a second thread while the reader parses (_BackgroundHash).  Used
    # only when the reader reached end of file; otherwise the file is hashed.
    hashes_while_reading: ClassVar[bool] = False

    def __init__(self, path: str | os.PathLike, **options: Any) -> None:
        self.path = Path(path)
        self.options = options
        self.report = SourceReport(path=str(self.path), format=self.name)
        self._hasher: Any = None
        self._hash_eof = False
        self._hashing = False  # _read/_readline feed the hasher (set by __iter__)

    @classmethod
    def sniff(cls, path: Path, head: bytes) -> bool:
        """True if ``head`` (the first bytes of the file) looks like this format."""
        return False

    def _frames(self) -> Iterator[Frame]:
        raise NotImplementedError

    def _items(self) -> Iterator[Any]:
        """``_frames``, where a reader may yield a :class:`FrameBatch` for frames it made together."""
        return self._frames()

    def _read(self, fh: Any, size: int) -> bytes:
        """``fh.read(size)`` (size > 0), hashed; notes end of file."""
        data = fh.read(size)
        if data:
            self._hash(data)
        else:
            self._hash_eof = True
        return data

    def _readline(self, fh: Any) -> bytes:
        """``fh.readline()``, hashed; notes end of file."""
        data = fh.readline()
        if data:
            self._hash(data)
        else:
            self._hash_eof = True
        return data

    def _hash(self, data: bytes) -> None:
        if self._hashing:
            self._hasher.update(data)

    def __iter__(self) -> Iterator[Frame]:
        return self._counted(self._frames())

    def iter_batches(self) -> Iterator[Any]:
        """Like iterating, but frames the reader made together come as one :class:`FrameBatch`
        (a list of them with their arrays: convert hashes those in one go)."""
        return self._counted(self._items())

    def _counted(self, items: Iterator[Any]) -> Iterator[Any]:
        from mlds.util import sha256_file

        if self.report.sha256 or not self.path.is_file():
            hash_here = False
        elif self.hashes_while_reading:
            hash_here = True
            self._hasher = _BackgroundHash()
        else:
            self.report.sha256 = sha256_file(self.path)
            hash_here = False
        self._hashing, self._hash_eof = hash_here, False
        done = False
        try:
            report = self.report
            for item in items:
                frames = item if type(item) is FrameBatch else (item,)
                report.kept += len(frames)
                for frame in frames:
                    step = frame.info.get("step")
                    if step is not None and step >= 0:
                        report.keep_step(int(step))
                yield item
            done = True
            if report.kept == 0:
                report.set_empty_reason(report.default_empty_reason())
            else:
                report.empty_reason = None
        finally:
            self._hashing = False
            if hash_here:
                digest = self._hasher.hexdigest()
                if not self.report.sha256:
                    # the one-pass digest only when the reader went through the whole file
                    self.report.sha256 = digest if done and self._hash_eof else sha256_file(self.path)


class _BackgroundHash:
    """SHA-256 of the chunks a reader reads, computed on a second thread: hashlib releases the GIL
    on large buffers, so hashing overlaps parsing instead of adding to it.  ``hexdigest`` waits
    for the chunks given so far and ends the thread."""

    def __init__(self) -> None:
        self._sha = hashlib.sha256()
        self._queue: queue.Queue = queue.Queue(maxsize=16)  # bounded: a stalled hash slows reading
        self._thread = threading.Thread(target=self._run, name="mlds-sha256", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (data := self._queue.get()) is not None:
            self._sha.update(data)

    def update(self, data: bytes) -> None:
        self._queue.put(data)

    def hexdigest(self) -> str:
        self._queue.put(None)
        self._thread.join()
        return self._sha.hexdigest()


class Writer:
    """Base class: write frames to ``path`` atomically (all or nothing)."""

    name: ClassVar[str] = ""
    extensions: ClassVar[tuple[str, ...]] = ()
    description: ClassVar[str] = ""

    def __init__(self, path: str | os.PathLike, **options: Any) -> None:
        self.path = Path(path)
        self.options = options

    def write(self, frames: Iterable[Frame], metadata: dict[str, Any] | None = None) -> int:
        """Write all frames; return how many were written."""
        raise NotImplementedError


READERS: dict[str, type[Reader]] = {}
WRITERS: dict[str, type[Writer]] = {}


def register_reader(cls: type[Reader]) -> type[Reader]:
    READERS[cls.name] = cls
    return cls


def register_writer(cls: type[Writer]) -> type[Writer]:
    WRITERS[cls.name] = cls
    return cls


def _load_builtin_formats() -> None:
    """Import every built-in format module (importing a module registers its readers and writers)."""
    import importlib

    for mod in _BUILTIN_MODULES:
        importlib.import_module(mod)


# The order of sniffing (specific formats before the ASE fallback), kept in one place.
_BUILTIN_MODULES = [
    "mlds.io.vasp_outcar",
    "mlds.io.vasp_xml",
    "mlds.io.qe_pw",
    "mlds.io.qe_xml",
    "mlds.io.n2p2",
    "mlds.io.aenet",
    "mlds.io.extxyz",
    "mlds.io.ase_fallback",  # last: reads anything ASE reads
]


def _readers_in_order() -> Iterator[type[Reader]]:
    """Readers in sniffing order, each built-in module imported only when it is reached: converting an
    OUTCAR imports the OUTCAR reader, not every format's regexes (start-up, issue 12).  Readers
    registered from elsewhere (plugins) come after the built-in ones."""
    import importlib

    seen: set[type[Reader]] = set()
    for mod in _BUILTIN_MODULES:
        importlib.import_module(mod)
        for cls in list(READERS.values()):
            if cls.__module__ == mod and cls not in seen:
                seen.add(cls)
                yield cls
    for cls in list(READERS.values()):
        if cls not in seen:
            yield cls


def _lookup(table: dict[str, Any], name: str) -> Any:
    """``table[name]``, importing built-in modules in order only until it is registered."""
    import importlib

    for mod in _BUILTIN_MODULES:
        if name in table:
            break
        importlib.import_module(mod)
    return table[name]


def get_reader(name: str) -> type[Reader]:
    try:
        return _lookup(READERS, name)
    except KeyError:
        _load_builtin_formats()
        raise UnknownFormatError(None, f"unknown input format {name!r}; known: {', '.join(sorted(READERS))}")


def get_writer(name: str) -> type[Writer]:
    try:
        return _lookup(WRITERS, name)
    except KeyError:
        _load_builtin_formats()
        raise UnknownFormatError(None, f"unknown output format {name!r}; known: {', '.join(sorted(WRITERS))}")


def detect(path: str | os.PathLike) -> type[Reader]:
    """The first reader (in sniffing order) whose ``sniff`` accepts the file."""
    p = Path(path)
    with open(p, "rb") as fh:
        head = fh.read(SNIFF_BYTES)
    for cls in _readers_in_order():
        if cls.sniff(p, head):
            return cls
    raise UnknownFormatError(p, "cannot tell the file format from its content; pass --from")


def open_reader(path: str | os.PathLike, fmt: str | None = None, **options: Any) -> Reader:
    cls = get_reader(fmt) if fmt else detect(path)
    return cls(path, **options)
