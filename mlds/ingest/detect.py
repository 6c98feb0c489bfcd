"""Which files are calculation outputs, and has their run finished?

Recognition is by content, through the registry's own sniffers, but only for
the DFT output formats a calculation folder holds (the ASE fallback would claim
input files too).  "Finished" is what each code writes last:

* VASP ``OUTCAR``: the closing "General timing and accounting" block;
* ``vasprun.xml``: the closing ``</modeling>`` tag;
* pw.x output: ``JOB DONE.``;
* pw.x ``data-file-schema.xml``: the closing ``</qes:espresso>`` tag.

A file without its closing mark is either still being written or from a run
that stopped (killed, crashed, out of time).  The caller tells them apart by
age and by watching the file over a short interval.
"""

from __future__ import annotations

from pathlib import Path

DFT_FORMATS = ("vasp-outcar", "vasp-xml", "qe-pw", "qe-xml")


def sniff(name: str, head: bytes) -> str | None:
    """The reader name for a calculation output, or None for anything else."""
    from mlds.io.registry import get_reader

    for fmt in DFT_FORMATS:
        if get_reader(fmt).sniff(Path(name), head):
            return fmt
    return None


def is_finished(fmt: str, tail: bytes) -> bool:
    """True when ``tail`` (the last bytes of the file) holds the code's closing mark."""
    end = tail.rstrip()
    if fmt == "vasp-outcar":
        return b"General timing and accounting" in tail
    if fmt == "vasp-xml":
        return end.endswith(b"</modeling>")
    if fmt == "qe-pw":
        return b"JOB DONE" in tail
    if fmt == "qe-xml":
        return end.endswith(b"</qes:espresso>")
    return False


def run_folder(loc: str, fmt: str | None) -> str:
    """The run a file belongs to: its folder (QE's XML may sit in ``<prefix>.save/`` below it)."""
    folder = loc.rstrip("/").rsplit("/", 1)[0] if "/" in loc else ""
    if fmt == "qe-xml" and folder.endswith(".save"):
        folder = folder.rsplit("/", 1)[0] if "/" in folder else ""
    return folder
