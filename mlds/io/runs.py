"""One source per calculation: a run folder often holds the same run twice.

VASP writes ``OUTCAR`` and ``vasprun.xml``; pw.x writes its text output and
``data-file-schema.xml`` (beside it or under ``<prefix>.save/``).  Reading both
stores every frame twice, which inflates a training set and leaks frames across
a train/test split.  The two copies are not bit-identical (different printed
precision), so the frame hash (spec §16) cannot catch them; they are recognised
here, by content, and only one is read.

Which one is read, and why:

* VASP: ``OUTCAR``.  It streams, carries per-atom magnetic moments (vasprun.xml
  does not), and an interrupted run still yields its complete ionic steps.
* Quantum ESPRESSO: the pw.x output.  It has every ionic step; the XML holds
  only the final one.

"Same run" is decided by content, never by names alone, because test and
archive folders often keep files of different calculations side by side: the
VASP pair must agree on the first frame (species, energy within 1e-6 eV,
positions within 1e-4 Å — OUTCAR prints 5 decimals); the QE XML's frame must
match a frame of the pw.x output the same way.  Files that cannot be compared
(unreadable, no frame) are kept, so nothing is dropped on a guess.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from mlds.errors import MldsError

# format name -> (family, rank); the lowest rank of a family is the one read
_PREFERENCE: dict[str, tuple[str, int]] = {
    "vasp-outcar": ("vasp", 0),
    "vasp-xml": ("vasp", 1),
    "qe-pw": ("qe", 0),
    "qe-xml": ("qe", 1),
}
ENERGY_TOL_EV = 1e-6
POSITION_TOL_A = 1e-4


@dataclass
class RunSources:
    """The files of one calculation: the one to read and the copies left out."""

    chosen: Path
    fmt: str
    duplicates: list[tuple[Path, str]] = field(default_factory=list)  # (path, format) of the same run


def group_runs(paths: Iterable[str | os.PathLike], formats: dict[Path, str] | None = None) -> list[RunSources]:
    """Group files by calculation, keeping input order of the chosen files.

    ``formats`` maps a path to its reader name when the caller already detected it.
    """
    items = [Path(p) for p in paths]
    fmt_of = {p: (formats or {}).get(p) or _detect(p) for p in items}
    groups = [RunSources(p, fmt_of[p] or "") for p in items]
    by_key: dict[tuple[str, Path], list[int]] = {}
    for i, p in enumerate(items):
        pref = _PREFERENCE.get(fmt_of[p] or "")
        if pref is not None:
            by_key.setdefault((pref[0], _run_folder(p, fmt_of[p])), []).append(i)
    dropped: set[int] = set()
    for (family, _), idx in by_key.items():
        if len(idx) < 2:
            continue
        ordered = sorted(idx, key=lambda i: _PREFERENCE[fmt_of[items[i]]][1])
        for keep, other in itertools.combinations(ordered, 2):
            if keep in dropped or other in dropped:
                continue
            if _PREFERENCE[fmt_of[items[keep]]][1] == _PREFERENCE[fmt_of[items[other]]][1]:
                continue  # two OUTCARs are two runs, whatever they hold
            if _same_run(items[keep], fmt_of[items[keep]], items[other], fmt_of[items[other]]):
                groups[keep].duplicates.append((items[other], fmt_of[items[other]]))
                dropped.add(other)
    return [g for i, g in enumerate(groups) if i not in dropped]


def pick_sources(paths: Iterable[str | os.PathLike], formats: dict[Path, str] | None = None
                 ) -> tuple[list[Path], list[tuple[Path, str]]]:
    """(files to read, [(file left out, why)]) — one file per calculation."""
    chosen: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    for g in group_runs(paths, formats):
        chosen.append(g.chosen)
        for dup, _ in g.duplicates:
            skipped.append((dup, f"same calculation as {g.chosen.name}, which was read instead"))
    return chosen, skipped


def _detect(path: Path) -> str | None:
    from mlds.io.registry import detect

    try:
        return detect(path).name
    except (MldsError, OSError):
        return None


def _run_folder(path: Path, fmt: str | None) -> Path:
    """The folder a run lives in; QE's XML may sit in ``<prefix>.save/`` below it."""
    folder = path.parent
    if fmt == "qe-xml" and folder.name.endswith(".save"):
        return folder.parent
    return folder


def _frames(path: Path, fmt: str, limit: int | None) -> list[Any]:
    """Up to ``limit`` frames, read without the hashing pass (only a comparison needs them)."""
    from mlds.io.registry import get_reader

    reader = get_reader(fmt)(path)
    gen = reader._frames()  # noqa: SLF001 - same package; skips the whole-file sha256 of __iter__
    try:
        return list(itertools.islice(gen, limit))
    finally:
        gen.close()


def _same_frame(a: Any, b: Any) -> bool:
    if a.numbers.shape != b.numbers.shape or not np.array_equal(a.numbers, b.numbers):
        return False
    if not (np.isfinite(a.energy) and np.isfinite(b.energy)) or abs(a.energy - b.energy) > ENERGY_TOL_EV:
        return False
    return bool(np.allclose(a.positions, b.positions, rtol=0.0, atol=POSITION_TOL_A))


def _same_run(keep: Path, keep_fmt: str, other: Path, other_fmt: str) -> bool:
    try:
        if _PREFERENCE[keep_fmt][0] == "vasp":
            a, b = _frames(keep, keep_fmt, 1), _frames(other, other_fmt, 1)
            return bool(a and b) and _same_frame(a[0], b[0])
        # QE: the XML holds the run's final configuration, which is one of the text output's steps
        xml = _frames(other, other_fmt, None)
        if not xml:
            return False
        return any(_same_frame(f, xml[-1]) for f in _frames(keep, keep_fmt, None))
    except (MldsError, OSError, ValueError):
        return False  # cannot compare: keep both rather than drop on a guess
