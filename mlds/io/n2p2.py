"""n2p2 / RuNNer ``input.data`` reader and writer.

Format (n2p2 ``src/libnnp/Structure.cpp`` ``readFromLines``)::

    begin [set=train|set=test]
    comment <free text>                 # any number
    lattice ax ay az                    # exactly 0 or 3 lines (rows)
    lattice bx by bz
    lattice cx cy cz
    atom x y z Elem c n fx fy fz        # c: per-atom charge, n: unused
    energy E                            # total energy of the structure
    charge Q                            # total charge
    end

**Units.** The format carries none; n2p2 is unit-agnostic and its own examples
use Å/eV (Cu2S_PBE), Bohr/Hartree (H2O_RPBE-D3) and Å positions with Hartree
energies (QM9), so length and energy units are independent.  The reader never
guesses: it needs a length unit (``"angstrom"`` or ``"bohr"``) and an energy
unit (``"eV"`` or ``"hartree"``), given as ``length_unit=``/``energy_unit=`` or
as one ``units="<length>-<energy>"`` string (the presets ``"angstrom-ev"`` and
``"bohr-hartree"``, or the mixed ``"angstrom-hartree"``/``"bohr-ev"``); dpdata
1.1.0 silently assumes Bohr/Hartree, which turns Cu2S's -573.7 eV into -15611.
The units read are recorded in the source's provenance (``report.units``).
Constants are the spec's (CODATA 2018, :mod:`mlds.format.spec`).  The writer
defaults to Å/eV and records the units next to the data in
``<file>.units.json`` so that a training step writes ``input.nn`` (cutoffs,
eta, r_s) and LAMMPS ``cflength``/``cfenergy`` in the same units;
:func:`n2p2_unit_factors` gives those two numbers.

Reader conventions: periodic iff the 3 ``lattice`` lines are present (then
``pbc`` is all True; otherwise cell is zero and pbc all False); positions are
kept as written (not wrapped); a per-atom charge column that is 0.0 for every
atom is n2p2's "unused" marker and gives ``charges=None``; ``charge`` gives
``total_charge`` (NaN when the line is absent); ``set=`` goes to
``info["set"]`` and comment lines (joined by newlines) to ``info["comment"]``.
A block without an ``energy`` line gives ``energy=NaN``.

Writer conventions: every frame needs an energy and forces (FormatError naming
the 0-based frame index otherwise, and nothing is written); ``lattice`` lines
only for fully periodic frames (mixed pbc is an error, as is a non-zero total
charge on a periodic frame, which n2p2 rejects); per-atom charges 0.0 and total
charge 0.0 when unknown; floats written with ``repr`` so an Å/eV round trip is
bit-exact (Bohr/Hartree adds one multiply and one divide: a few ulp).  Only
``info["comment"]`` and ``info["set"]`` survive; other info keys, and the cell of
a non-periodic frame, cannot be represented.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from mlds.errors import FormatError
from mlds.format.frame import Frame
from mlds.format.spec import BOHR_ANGSTROM, HARTREE_EV
from mlds.io.registry import Reader, Writer, register_reader, register_writer
from mlds.util import atomic_path

UNIT_SYSTEMS = ("angstrom-ev", "bohr-hartree")  # the presets; "<length>-<energy>" mixes are accepted too
LENGTH_UNITS = {"angstrom": 1.0, "bohr": BOHR_ANGSTROM}  # size of the unit in Å
ENERGY_UNITS = {"eV": 1.0, "hartree": HARTREE_EV}  # size of the unit in eV
_LENGTH_NAMES = {"angstrom": "angstrom", "ang": "angstrom", "bohr": "bohr"}
_ENERGY_NAMES = {"ev": "eV", "hartree": "hartree", "ha": "hartree"}
_NO_UNITS = ("n2p2 files carry no units; pass units='angstrom-ev' or 'bohr-hartree' (--units), or "
             "length_unit='angstrom'|'bohr' and energy_unit='eV'|'hartree' (--length-unit, --energy-unit)")
_KEYWORDS = {"begin", "comment", "lattice", "atom", "energy", "charge", "end"}
_SETS = ("train", "test")


def resolve_units(units: Any = None, length_unit: Any = None, energy_unit: Any = None, *, path: Any = None,
                  default: tuple[str, str] | None = None) -> tuple[str, str]:
    """(length unit, energy unit) from a ``units`` preset and/or the two separate options.

    The preset and a separate option may both be given only when they agree; with neither,
    ``default`` is used when given, else FormatError (the reader never guesses).
    """
    length = energy = None
    if units is not None:
        text = str(units).strip().lower().replace("_", "-")
        parts = text.split("-")
        if len(parts) != 2 or parts[0] not in _LENGTH_NAMES or parts[1] not in _ENERGY_NAMES:
            raise FormatError(path, f"unknown n2p2 unit system {units!r}; use 'angstrom-ev' or 'bohr-hartree' "
                              "(or 'angstrom-hartree', 'bohr-ev')")
        length, energy = _LENGTH_NAMES[parts[0]], _ENERGY_NAMES[parts[1]]
    length = _one_unit("length", length_unit, length, _LENGTH_NAMES, "'angstrom' or 'bohr'", units, path)
    energy = _one_unit("energy", energy_unit, energy, _ENERGY_NAMES, "'eV' or 'hartree'", units, path)
    if length is None and energy is None and default is not None:
        return default
    if length is None or energy is None:
        missing = "length" if length is None else "energy"
        raise FormatError(path, _NO_UNITS if length is None and energy is None else
                          f"n2p2 files carry no units: the {missing} unit is missing "
                          f"({missing}_unit=..., --{missing}-unit)")
    return length, energy


def _one_unit(kind: str, given: Any, from_units: str | None, names: dict[str, str], choices: str, units: Any,
              path: Any) -> str | None:
    """The ``kind`` unit: ``given`` (checked against the preset's) or the preset's."""
    if given is None:
        return from_units
    unit = names.get(str(given).strip().lower())
    if unit is None:
        raise FormatError(path, f"unknown {kind} unit {given!r}; use {choices}")
    if from_units is not None and unit != from_units:
        raise FormatError(path, f"{kind} unit {given!r} contradicts units={units!r}")
    return unit


def _unit_options(options: dict[str, Any], path: Any, default: tuple[str, str] | None = None) -> tuple[str, str]:
    return resolve_units(options.get("units"), options.get("length_unit"), options.get("energy_unit"),
                         path=path, default=default)


def units_name(length: str, energy: str) -> str:
    """'angstrom-ev', 'bohr-hartree', 'angstrom-hartree' or 'bohr-ev'."""
    return f"{length}-{energy.lower()}"


def n2p2_unit_factors(units: str | None = None, *, length_unit: str | None = None,
                      energy_unit: str | None = None) -> tuple[float, float]:
    """(length_factor, energy_factor) = (file length units per Å, file energy units per eV).

    Multiply Å / eV quantities by these to get the values written in the
    file; they are exactly LAMMPS ``pair_style hdnnp``'s ``cflength`` and
    ``cfenergy`` (1.8897261246..., 0.0367493222... for Bohr/Hartree; 1, 1 for Å/eV).
    """
    length, energy = resolve_units(units, length_unit, energy_unit)
    return 1.0 / LENGTH_UNITS[length], 1.0 / ENERGY_UNITS[energy]


def units_sidecar(units: str | None = None, *, length_unit: str | None = None,
                  energy_unit: str | None = None) -> dict[str, Any]:
    """Content of the ``<file>.units.json`` sidecar written next to the data."""
    length, energy = resolve_units(units, length_unit, energy_unit)
    lf, ef = n2p2_unit_factors(length_unit=length, energy_unit=energy)
    return {
        "units": units_name(length, energy),
        "length": length,
        "energy": energy,
        "force": f"{energy}/{length}",
        "length_per_angstrom": lf,
        "energy_per_eV": ef,
        "codata": "2018",
    }


def _looks_like_n2p2(head: bytes) -> bool:
    text = head.decode("utf-8", "replace")
    tokens: list[str] = []
    for line in text.splitlines()[:50]:
        parts = line.split()
        if parts:
            tokens.append(parts[0])
        if len(tokens) >= 3:
            break
    if not tokens or tokens[0] != "begin":
        return False
    return all(t in _KEYWORDS for t in tokens[1:])


@register_reader
class N2p2Reader(Reader):
    name = "n2p2"
    extensions = (".data",)
    description = "n2p2/RuNNer input.data (needs units= or length_unit= and energy_unit=)"

    def __init__(self, path, **options: Any) -> None:
        super().__init__(path, **options)
        self.length_unit, self.energy_unit = _unit_options(options, self.path)
        self.units = units_name(self.length_unit, self.energy_unit)
        self.report.code = "n2p2"
        self.report.units = {"length": self.length_unit, "energy": self.energy_unit}

    @classmethod
    def sniff(cls, path: Path, head: bytes) -> bool:
        return _looks_like_n2p2(head)

    def _frames(self) -> Iterator[Frame]:
        length, energy_unit = LENGTH_UNITS[self.length_unit], ENERGY_UNITS[self.energy_unit]
        force_unit = energy_unit / length
        path = self.path
        block: dict[str, Any] | None = None
        lineno = 0

        def num(tok: str, ln: int, what: str) -> float:
            try:
                return float(tok)
            except ValueError:
                raise FormatError(path, f"bad number {tok!r} for {what}", line=ln) from None

        with open(path, encoding="utf-8", errors="replace") as fh:
            for lineno, raw in enumerate(fh, start=1):
                parts = raw.split()
                if not parts:
                    continue
                key = parts[0]
                if block is None:
                    if key != "begin":
                        raise FormatError(path, f"expected 'begin', found {key!r}", line=lineno)
                    block = {"begin": lineno, "lattice": [], "lattice_lines": [], "atoms": [],
                             "comment": [], "energy": math.nan, "charge": math.nan, "set": None}
                    for tag in parts[1:]:
                        if tag.startswith("set=") and tag[4:] in _SETS:
                            block["set"] = tag[4:]
                        else:
                            raise FormatError(path, f"unknown tag {tag!r} on begin line "
                                              "(only set=train or set=test)", line=lineno)
                    continue
                if key == "begin":
                    raise FormatError(path, f"missing 'end' for the structure begun at line {block['begin']}",
                                      line=lineno)
                if key == "comment":
                    text = raw.strip()[len("comment"):]
                    block["comment"].append(text[1:] if text[:1] in (" ", "\t") else text)
                elif key == "lattice":
                    if len(parts) != 4:
                        raise FormatError(path, f"lattice line needs 3 numbers, found {len(parts) - 1}", line=lineno)
                    if block["atoms"]:
                        raise FormatError(path, "lattice line after atom lines", line=lineno)
                    block["lattice"].append([num(t, lineno, "lattice") for t in parts[1:]])
                    block["lattice_lines"].append(lineno)
                    if len(block["lattice"]) > 3:
                        raise FormatError(path, "more than 3 lattice lines", line=lineno)
                elif key == "atom":
                    if len(parts) != 10:
                        raise FormatError(path, "atom line needs 9 fields (x y z element charge n fx fy fz), "
                                          f"found {len(parts) - 1}", line=lineno)
                    sym = parts[4]
                    z = _atomic_number(sym)
                    if z is None:
                        raise FormatError(path, f"unknown element {sym!r}", line=lineno)
                    vals = [num(t, lineno, "atom") for t in parts[1:4] + parts[5:10]]
                    block["atoms"].append((z, vals))
                elif key in ("energy", "charge"):
                    if len(parts) != 2:
                        raise FormatError(path, f"{key} line needs 1 number", line=lineno)
                    block[key] = num(parts[1], lineno, key)
                elif key == "end":
                    yield self._make_frame(block, lineno, length, energy_unit, force_unit)
                    block = None
                else:
                    raise FormatError(path, f"unknown keyword {key!r}", line=lineno)
        if block is not None:
            raise FormatError(path, f"missing 'end': file ends at line {lineno} inside the structure begun "
                              f"at line {block['begin']}", line=lineno)
        if self.report.kept == 0:
            self.report.set_empty_reason("no structure (begin ... end block) in the file")

    def _make_frame(self, block: dict[str, Any], lineno: int, length: float, energy_unit: float,
                    force_unit: float) -> Frame:
        nlat = len(block["lattice"])
        if nlat not in (0, 3):
            raise FormatError(self.path, f"{nlat} lattice line(s) (lines {block['lattice_lines']}); need 0 "
                              "(non-periodic) or 3 (periodic)", line=block["lattice_lines"][0])
        if not block["atoms"]:
            raise FormatError(self.path, f"structure begun at line {block['begin']} has no atoms", line=lineno)
        numbers = np.array([a[0] for a in block["atoms"]], dtype=np.uint8)
        vals = np.array([a[1] for a in block["atoms"]], dtype=np.float64)
        positions = vals[:, 0:3] * length
        charges = vals[:, 3].copy()
        forces = vals[:, 5:8] * force_unit
        if nlat == 3:
            cell = np.array(block["lattice"], dtype=np.float64) * length
            pbc = np.ones(3, dtype=bool)
        else:
            cell = np.zeros((3, 3))
            pbc = np.zeros(3, dtype=bool)
        info: dict[str, Any] = {}
        if block["comment"]:
            info["comment"] = "\n".join(block["comment"])
        if block["set"]:
            info["set"] = block["set"]
        e = block["energy"]
        return Frame(
            numbers=numbers,
            positions=positions,
            cell=cell,
            pbc=pbc,
            energy=e * energy_unit if not math.isnan(e) else math.nan,
            forces=forces,
            charges=None if not charges.any() else charges,
            total_charge=block["charge"],
            info=info,
        )


def _atomic_number(sym: str) -> int | None:
    from mlds.elements import atomic_numbers

    z = atomic_numbers.get(sym)
    if z is None or z == 0:
        return None
    return int(z)


def _r(x: float) -> str:
    return repr(float(x))


@register_writer
class N2p2Writer(Writer):
    name = "n2p2"
    extensions = (".data",)
    description = "n2p2/RuNNer input.data (+ <file>.units.json); options units= or length_unit=/energy_unit=, split="

    def write(self, frames: Iterable[Frame], metadata: dict[str, Any] | None = None) -> int:
        lu, eu = _unit_options(self.options, self.path, default=("angstrom", "eV"))
        length, energy_unit = LENGTH_UNITS[lu], ENERGY_UNITS[eu]
        force_unit = energy_unit / length
        split = self._split_map(self.options.get("split"))
        sidecar = self.path.with_name(self.path.name + ".units.json")
        count = 0
        with atomic_path(self.path) as tmp, atomic_path(sidecar) as tmp_side:
            with open(tmp, "w", encoding="utf-8") as out:
                for i, frame in enumerate(frames):
                    out.write(self._block(i, frame, split, length, energy_unit, force_unit))
                    count += 1
            tmp_side.write_text(json.dumps(units_sidecar(length_unit=lu, energy_unit=eu), indent=2) + "\n",
                                encoding="utf-8")
        return count

    def _split_map(self, split: Any) -> dict[int, str]:
        if not split:
            return {}
        out: dict[int, str] = {}
        for name, indices in dict(split).items():
            if name not in _SETS:
                raise FormatError(self.path, f"split names must be 'train' or 'test', got {name!r}")
            for idx in indices:
                idx = int(idx)
                if out.get(idx, name) != name:
                    raise FormatError(self.path, f"frame {idx} is in both the train and the test split")
                out[idx] = name
        return out

    def _block(self, i: int, frame: Frame, split: dict[int, str], length: float, energy_unit: float,
               force_unit: float) -> str:
        if math.isnan(frame.energy):
            raise FormatError(self.path, f"frame {i} has no energy; n2p2 needs energy and forces for every frame")
        if frame.forces is None or not np.isfinite(frame.forces).all():
            raise FormatError(self.path, f"frame {i} has no (or non-finite) forces; n2p2 needs energy and forces "
                              "for every frame")
        if frame.pbc.any() and not frame.pbc.all():
            raise FormatError(self.path, f"frame {i} has mixed periodicity pbc={frame.pbc.tolist()}; n2p2 "
                              "structures are either fully periodic (3 lattice lines) or not periodic at all")
        if (frame.numbers == 0).any():
            raise FormatError(self.path, f"frame {i} has atoms without an element (Z=0)")
        periodic = bool(frame.pbc.all())
        qtot = 0.0 if math.isnan(frame.total_charge) else frame.total_charge
        if periodic and qtot != 0.0:
            raise FormatError(self.path, f"frame {i} is periodic with total charge {qtot}; n2p2 requires "
                              "periodic structures to be neutral")
        tag = split.get(i, frame.info.get("set"))
        if tag is not None and tag not in _SETS:
            raise FormatError(self.path, f"frame {i} has info['set']={tag!r}; must be 'train' or 'test'")
        lines = ["begin" + (f" set={tag}" if tag else "")]
        comment = frame.info.get("comment")
        if comment is not None:
            for text in str(comment).split("\n"):
                lines.append(f"comment {text}".rstrip() if text else "comment")
        if periodic:
            for row in frame.cell:
                lines.append("lattice " + " ".join(_r(v / length) for v in row))
        charges = frame.charges if frame.charges is not None else np.zeros(frame.n_atoms)
        for sym, pos, q, f in zip(frame.symbols, frame.positions, charges, frame.forces):
            lines.append("atom " + " ".join(_r(v / length) for v in pos) + f" {sym} {_r(q)} 0.0 "
                         + " ".join(_r(v / force_unit) for v in f))
        lines.append(f"energy {_r(frame.energy / energy_unit)}")
        lines.append(f"charge {_r(qtot)}")
        lines.append("end")
        return "\n".join(lines) + "\n"
