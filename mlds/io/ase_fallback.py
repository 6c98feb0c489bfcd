"""Fallback reader: anything ``ase.io.iread`` can read, through ``atoms_to_frame``.

``sniff`` always returns False, so automatic detection never picks this
reader over a specific one: it is used only with an explicit ``--from ase``
(or by the registry as a last resort).  Results are whatever ASE's reader puts
on the calculator, in ASE's units and conventions, with ASE's known mistakes
(e.g. aenet XSF forces ×27.2, first QE SCF energy, unconverged VASP steps
kept); use a specific mlds reader when one exists.  Option ``ase_format``
passes a format name to ASE (default: ASE guesses); ``index`` an ASE index
string (default ``":"``, all frames).  Nothing format-specific belongs here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from mlds.format.ase_bridge import atoms_to_frame
from mlds.format.frame import Frame
from mlds.io.registry import Reader, register_reader


@register_reader
class AseReader(Reader):
    name = "ase"
    extensions = ()
    description = "anything ase.io.iread reads (explicit --from ase only)"

    @classmethod
    def sniff(cls, path: Path, head: bytes) -> bool:
        return False

    def _frames(self) -> Iterator[Frame]:
        import ase.io

        fmt = self.options.get("ase_format")
        index = self.options.get("index", ":")
        for atoms in ase.io.iread(str(self.path), index=index, format=fmt):
            yield atoms_to_frame(atoms)
