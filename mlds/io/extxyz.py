"""Extended XYZ reader and writer (through ASE's extxyz module).

Reader: ``ase.io.iread(path, index=":", format="extxyz")`` (streams frame by
frame), then the key spellings in use are mapped to mlds fields.  Reference
(``REF_``) keys win over plain ones because plain ``energy``/``forces`` are
also what a model's calculator writes (MACE, nequip convention):

=========  ==================================================================
energy     ``REF_energy`` > calculator ``free_energy`` > ``energy`` > info ``Energy``
forces     array ``REF_forces`` > calculator ``forces`` > array ``force`` (QUIP/GAP, dpdata)
stress     ``REF_stress`` > ``REF_virial`` > calculator ``stress`` > info ``virial``
=========  ==================================================================

Stress is in eV/Å³ with ASE's sign (positive = tensile).  A virial ``W`` (eV;
the QUIP/GAP and dpdata convention, W = -σ·V) becomes ``stress = -W / V``.
A virial on a frame without a cell volume cannot be converted and is dropped
with a warning in the source report.  9-element tensors are read in the
column-major order ASE uses for ``virial``/``stress``; 6-element ones as Voigt
(xx yy zz yz xz xy).  Consumed keys are removed from ``info``; other info
keys are kept.

Writer: ``frame_to_atoms`` + ``ase.io.write(..., format="extxyz")``, so energy
(also as ``free_energy``), forces and stress travel as SinglePointCalculator
results that ASE reads back.  Precision: ASE 3.29 writes per-atom arrays
(positions, forces, charges) with ``%16.8f``, i.e. rounded to 1e-8 absolute
(Å, eV/Å); energy, stress and Lattice go through ``str(float)`` and are
bit-exact.  ASE offers no option to change that format.  ASE also writes
newlines inside string info values raw, which breaks the file, so multi-line
strings (e.g. an n2p2 comment) are joined into one line with spaces.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from mlds.errors import FormatError
from mlds.format.ase_bridge import atoms_to_frame, frame_to_atoms
from mlds.format.frame import Frame, _as_stress_matrix
from mlds.io.registry import Reader, Writer, register_reader, register_writer
from mlds.util import atomic_path

_CONSUMED_INFO = ("REF_energy", "Energy", "REF_stress", "REF_virial", "virial", "stress", "energy",
                  "free_energy")


def _tensor(value: Any) -> np.ndarray | None:
    arr = np.asarray(value, dtype=np.float64)
    if arr.size == 9:
        return arr.reshape(3, 3, order="F") if arr.ndim == 1 else arr.reshape(3, 3)
    if arr.size == 6:
        return _as_stress_matrix(arr.reshape(6))
    return None


def _looks_like_extxyz(head: bytes) -> bool:
    lines = head.decode("utf-8", "replace").splitlines()
    if len(lines) < 2:
        return False
    try:
        int(lines[0].strip())
    except ValueError:
        return False
    return "Properties=" in lines[1] or "Lattice=" in lines[1]


@register_reader
class ExtxyzReader(Reader):
    name = "extxyz"
    extensions = (".xyz", ".extxyz")
    description = "extended XYZ (energy/REF_energy, forces/force/REF_forces, stress/virial)"

    @classmethod
    def sniff(cls, path: Path, head: bytes) -> bool:
        return _looks_like_extxyz(head)

    def _frames(self) -> Iterator[Frame]:
        import ase.io

        frames = ase.io.iread(str(self.path), index=":", format="extxyz")
        k = 0
        while True:
            try:
                atoms = next(frames)
            except StopIteration:
                return
            except (ValueError, IndexError, KeyError, OSError) as err:   # XYZError is an IOError
                raise FormatError(self.path, f"frame {k} (0-based) is not valid extxyz: {err}") from None
            yield self._convert(k, atoms)
            k += 1

    def _convert(self, k: int, atoms) -> Frame:
        info = atoms.info
        results = dict(atoms.calc.results) if atoms.calc is not None else {}

        energy = math.nan
        for value in (info.get("REF_energy"), results.get("free_energy"), results.get("energy"),
                      info.get("Energy"), info.get("energy"), info.get("free_energy")):
            if value is not None:
                energy = float(value)
                break

        forces = None
        for value in (atoms.arrays.get("REF_forces"), results.get("forces"), atoms.arrays.get("forces"),
                      atoms.arrays.get("force")):
            if value is not None:
                forces = np.asarray(value, dtype=np.float64)
                break

        stress = None
        volume = abs(float(np.linalg.det(np.asarray(atoms.cell)))) if atoms.pbc.all() or atoms.cell.any() else 0.0
        candidates = (("REF_stress", info.get("REF_stress"), False), ("REF_virial", info.get("REF_virial"), True),
                      ("stress", results.get("stress"), False), ("stress", info.get("stress"), False),
                      ("virial", info.get("virial"), True))
        for key, value, is_virial in candidates:
            if value is None:
                continue
            t = _tensor(value)
            if t is None:
                self.report.warn(f"frame {k}: {key} has {np.size(value)} values, not 6 or 9; ignored")
                continue
            if is_virial:
                if volume <= 0.0:
                    self.report.warn(f"frame {k}: {key} given but the frame has no cell volume; stress dropped")
                    continue
                t = -t / volume
            stress = t
            break

        extra = {k2: v for k2, v in info.items() if k2 not in _CONSUMED_INFO}
        atoms.info = extra
        atoms.calc = None
        return atoms_to_frame(atoms, energy=energy, forces=forces, stress=stress)


@register_writer
class ExtxyzWriter(Writer):
    name = "extxyz"
    extensions = (".xyz", ".extxyz")
    description = "extended XYZ via ASE (per-atom arrays rounded to 1e-8 by ASE's %16.8f)"

    def write(self, frames: Iterable[Frame], metadata: dict[str, Any] | None = None) -> int:
        import ase.io

        count = 0
        with atomic_path(self.path) as tmp:
            with open(tmp, "w", encoding="utf-8") as fh:
                for frame in frames:
                    atoms = frame_to_atoms(frame)
                    for key, value in list(atoms.info.items()):
                        if isinstance(value, str) and ("\n" in value or "\r" in value):
                            # ASE writes newlines raw and breaks the file; one line it is
                            atoms.info[key] = " ".join(value.splitlines())
                    ase.io.write(fh, atoms, format="extxyz")
                    count += 1
        return count
