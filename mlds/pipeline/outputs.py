"""Where a pipeline writes: the format from the output's name, refusals, and the final move into place.

Output is staged in a temporary sibling folder and moved into place only when
everything succeeded; an existing output is replaced only with ``force``, an
existing folder (aenet) receives only the files the writer made, and no folder
mlds did not create is ever removed.
"""

from __future__ import annotations

import os
from pathlib import Path

from mlds.errors import FormatError, OutputExistsError
from mlds.io.registry import get_writer
from mlds.util import is_mlds_zarr_dir, move_into_place

MLDS_SUFFIXES = (".h5", ".hdf5", ".zarr", ".zarr.zip")
# name suffix -> output format; checked longest first
_SUFFIX_FORMATS = ((".zarr.zip", "mlds"), (".hdf5", "mlds"), (".h5", "mlds"), (".zarr", "mlds"),
                   (".extxyz", "extxyz"), (".xyz", "extxyz"), (".data", "n2p2"))
FOLDER_FORMATS = ("aenet",)

def output_format(output: str | os.PathLike, to_fmt: str | None = None) -> str:
    """The writer for ``output``: from its name, checked against ``to_fmt`` (``--to``).

    ``.h5``/``.hdf5``/``.zarr``/``.zarr.zip`` -> mlds, ``.xyz``/``.extxyz`` ->
    extxyz, ``*.data`` (``input.data``) -> n2p2; a folder needs ``--to aenet``.
    A name that says one format while ``--to`` says another is an error.
    """
    out = Path(output)
    by_name = next((fmt for suffix, fmt in _SUFFIX_FORMATS if out.name.lower().endswith(suffix)), None)
    if to_fmt is not None:
        to_fmt = to_fmt.lower()
        if to_fmt != "mlds":
            get_writer(to_fmt)  # unknown name -> one line listing the known ones
        if by_name is not None and by_name != to_fmt:
            raise FormatError(out, f"the name says {by_name} but --to says {to_fmt}; rename the output or drop --to")
        if to_fmt in FOLDER_FORMATS and out.exists() and not out.is_dir():
            raise FormatError(out, f"--to {to_fmt} writes a folder, but this is a file")
        return to_fmt
    if by_name is None:
        kind = "a folder" if out.is_dir() else "this name"
        raise FormatError(out, f"cannot tell the output format from {kind}; use .h5/.zarr/.zarr.zip (mlds), "
                          ".xyz/.extxyz (extxyz), input.data (n2p2), or pass --to (aenet writes a folder)")
    return by_name


def check_output(output: str | os.PathLike, fmt: str, *, force: bool = False) -> None:
    """Refuse, before any work, an output that would destroy something or cannot be made."""
    out = Path(output)
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise FormatError(out, f"folder {parent} does not exist (mlds does not create it; make it first)")
    if not (out.exists() or out.is_symlink()):
        return
    if fmt in FOLDER_FORMATS:
        if not out.is_dir():
            raise OutputExistsError(f"{out} exists and is not a folder; {fmt} output is a folder")
        return  # files are merged in; clashes are checked when the writer has made them
    if out.is_dir() and not (fmt == "mlds" and is_mlds_zarr_dir(out)):
        raise OutputExistsError(f"{out} is a folder; not replacing it (choose another output name)")
    if not force:
        raise OutputExistsError(f"{out} already exists; pass --force to replace it")


def commit(stage: Path, target: Path, *, force: bool) -> None:
    """Move what the writer made from ``stage`` to ``target`` (and its siblings), refusing clashes.

    A folder output into an existing folder (aenet) merges file by file: the
    folder's other files stay.  A Zarr dataset folder replaces an existing one
    only with ``force``.
    """
    moves: list[tuple[Path, Path]] = []
    for entry in sorted(stage.iterdir()):
        dest = target.parent / entry.name
        if entry.is_dir() and dest.is_dir() and not is_mlds_zarr_dir(entry):
            for f in sorted(p for p in entry.rglob("*") if not p.is_dir()):
                moves.append((f, dest / f.relative_to(entry)))
        else:
            moves.append((entry, dest))
    clashes = [d for _, d in moves if d.exists() or d.is_symlink()]
    for d in clashes:
        if d.is_dir() and not (force and is_mlds_zarr_dir(d)):
            raise OutputExistsError(f"{d} is a folder; not replacing it")
    if clashes and not force:
        more = f" (and {len(clashes) - 1} more)" if len(clashes) > 1 else ""
        raise OutputExistsError(f"{clashes[0]} already exists{more}; pass --force to replace it")
    for src, dest in moves:
        dest.parent.mkdir(parents=True, exist_ok=True)
        move_into_place(src, dest, replace_dir=is_mlds_zarr_dir if force else None)
