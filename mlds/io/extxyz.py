"""Extended XYZ reader and writer (through ASE's extxyz module).

Reader: ``ase.io.iread(path, index=":", format="extxyz")`` (streams frame by
frame), then the key spellings in use are mapped to mlds fields.  Reference
(``REF_``) keys win over plain ones because plain ``energy``/``forces`` are
also what a model's calculator writes (MACE, nequip convention):

=========  ==================================================================
energy     ``REF_energy`` > calculator ``free_energy`` > ``energy`` > info ``Energy``
forces     array ``REF_forces`` > calculator ``forces`` > array ``force`` (QUIP/GAP, dpdata)
stress     ``REF_stress`` > ``REF_virial`` > calculator ``stress`` > info ``virial``
magmoms    array ``REF_magmoms`` > calculator ``magmoms`` > ``initial_magmoms`` > ``magmom``
=========  ==================================================================

Stress is in eV/Å³ with ASE's sign (positive = tensile).  A virial ``W`` (eV;
the QUIP/GAP and dpdata convention, W = -σ·V) becomes ``stress = -W / V``.
A virial on a frame without a cell volume cannot be converted and is dropped
with a warning in the source report.  9-element tensors are read in the
column-major order ASE uses for ``virial``/``stress``; 6-element ones as Voigt
(xx yy zz yz xz xy).  Consumed keys are removed from ``info``; other info
keys are kept as they are, so the training labels MACE/GAP/n2p2 users rely on
(``config_type``, ``config_weight``, ``set``) travel on ``Frame.info``.

Elements come from the ``species`` column.  ASE 3.29 takes them from a ``Z``
column when there is one; ``dpdata/tests/xyz/xyz_unittest.xyz`` frame 2 has
species B1C9 but Z B5C5.  mlds follows the species column (the one extxyz
requires, and what dpdata uses) and records a warning in the source report.

Writer: our own, float64-exact (see :class:`ExtxyzWriter` for why not
``ase.io.write``); energy (also as ``free_energy``), forces and stress are
written under the keys ASE turns into SinglePointCalculator results.
Multi-line string info values are joined into one line.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from mlds.errors import FormatError
from mlds.format.ase_bridge import atoms_to_frame
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


_Z_COLUMN = "Z_column_in_file"


def _keep_species(line: str, sep: str | None = None) -> dict:
    """ASE's comment-line parser, but a ``Z`` column no longer overrides ``species``."""
    from ase.io.extxyz import key_val_str_to_dict

    d = key_val_str_to_dict(line, sep=sep)
    props = d.get("Properties")
    if isinstance(props, str):
        parts = props.split(":")
        names = parts[0::3]
        if "species" in names and "Z" in names:
            parts[3 * names.index("Z")] = _Z_COLUMN
            d["Properties"] = ":".join(parts)
    return d


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

        frames = ase.io.iread(str(self.path), index=":", format="extxyz", properties_parser=_keep_species)
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
        z_col = atoms.arrays.get(_Z_COLUMN)
        if z_col is not None and (np.asarray(z_col) != atoms.numbers).any():
            bad = int((np.asarray(z_col) != atoms.numbers).sum())
            self.report.warn(f"frame {k}: species and Z columns disagree on {bad} atom(s); species used")
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

        magmoms = None
        for value in (atoms.arrays.get("REF_magmoms"), results.get("magmoms"), atoms.arrays.get("initial_magmoms"),
                      atoms.arrays.get("magmom")):
            if value is not None and np.ndim(value) == 1:  # collinear moments only (Frame.magmoms is (n,))
                magmoms = np.asarray(value, dtype=np.float64)
                break

        extra = {k2: v for k2, v in info.items() if k2 not in _CONSUMED_INFO}
        atoms.info = extra
        atoms.calc = None
        return atoms_to_frame(atoms, energy=energy, forces=forces, stress=stress, magmoms=magmoms)


@register_writer
class ExtxyzWriter(Writer):
    """Written by hand, not with ``ase.io.write``: ASE rounds per-atom arrays to
    ``%16.8f`` (1e-8 Å), and a dataset exported for exchange must keep every
    float64 bit.  ``repr(float)`` is the shortest string that parses back to the
    same double, so the file stays compact and ASE reads it unchanged:
    energy, forces and stress arrive on a SinglePointCalculator.
    """

    name = "extxyz"
    extensions = (".xyz", ".extxyz")
    description = "extended XYZ, float64-exact (readable by ASE)"

    def write(self, frames: Iterable[Frame], metadata: dict[str, Any] | None = None) -> int:
        count = 0
        with atomic_path(self.path) as tmp:
            with open(tmp, "w", encoding="utf-8") as fh:
                for frame in frames:
                    fh.write(_frame_text(frame))
                    count += 1
        return count


def _r(x: float) -> str:
    return repr(float(x))


def _frame_text(frame: Frame) -> str:
    from mlds.elements import chemical_symbols

    n = frame.n_atoms
    props = ["species:S:1", "pos:R:3"]
    cols = [frame.positions]
    if frame.forces is not None and not np.isnan(frame.forces).all():
        props.append("forces:R:3")
        cols.append(frame.forces)
    if frame.charges is not None and not np.isnan(frame.charges).all():
        props.append("initial_charges:R:1")
        cols.append(frame.charges[:, None])
    if frame.magmoms is not None and not np.isnan(frame.magmoms).all():
        props.append("initial_magmoms:R:1")
        cols.append(frame.magmoms[:, None])
    head = []
    if frame.pbc.any() or np.any(frame.cell):
        head.append('Lattice="' + " ".join(_r(x) for x in frame.cell.reshape(-1)) + '"')
    head.append("Properties=" + ":".join(props))
    if not math.isnan(frame.energy):
        head.append(f"energy={_r(frame.energy)} free_energy={_r(frame.energy)}")
    if frame.stress is not None and not np.isnan(frame.stress).all():
        head.append('stress="' + " ".join(_r(x) for x in frame.stress.reshape(-1)) + '"')
    for key in ("energy_sigma0", "total_charge"):
        value = getattr(frame, key)
        if not math.isnan(value):
            head.append(f"{key}={_r(value)}")
    if not frame.converged:
        head.append("converged=F")
    for key, value in frame.info.items():
        if isinstance(value, (bool, np.bool_)):
            head.append(f"{key}={'T' if value else 'F'}")
        elif isinstance(value, (int, np.integer)):
            head.append(f"{key}={int(value)}")
        elif isinstance(value, (float, np.floating)):
            head.append(f"{key}={_r(value)}")
        elif isinstance(value, str) and key.isidentifier():
            text = " ".join(value.splitlines()).replace("\\", "\\\\").replace('"', '\\"')
            head.append(f'{key}="{text}"')
    head.append('pbc="' + " ".join("T" if p else "F" for p in frame.pbc) + '"')
    table = np.hstack(cols) if len(cols) > 1 else cols[0]
    symbols = [chemical_symbols[z] for z in frame.numbers.tolist()]
    lines = [str(n), " ".join(head)]
    for sym, row in zip(symbols, table.tolist()):
        lines.append(sym + " " + " ".join(map(repr, row)))
    return "\n".join(lines) + "\n"
