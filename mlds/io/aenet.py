"""aenet structure files: XSF reader, ``generate.in`` training-set reader, and writer.

aenet's XSF dialect (``src/ext/xsflib.f90`` in aenet 2.0.4)::

    # total energy = -4990.44928342 eV
    CRYSTAL
    PRIMVEC
       ax ay az            (rows)
       bx by bz
       cx cy cz
    PRIMCOORD
    6 1
    Ti x y z fx fy fz      (Cartesian Å, forces eV/Å)

or, for an isolated structure, ``ATOMS`` followed by ``sym x y z [fx fy fz]``.

Differences from ASE 3.29's XSF reader, on purpose: the energy comes from the
``# total energy = E eV`` line (ASE ignores it), and forces are taken in eV/Å
as aenet writes them (ASE multiplies them by 27.211 because the XCrySDen spec
says Hartree/Å; aenet ignores the spec).  A file without an energy line gives
``energy=NaN``; a file with 4-column atom lines gives ``forces=None``.
``cohesive energy = X`` lines go to ``info["cohesive_energy"]``; other ``#``
lines to ``info["comment"]``.  An energy line with a unit other than eV is an
error rather than a silent mis-scaling.

``generate.in`` reader (``aenet-generate``): reads ``FILES`` (count + paths) and
yields the frames of every listed XSF in order; relative paths are resolved
against the directory holding ``generate.in``.  All listed files are checked
before the first frame is yielded; a missing one is a FormatError naming it
and its line in ``generate.in``.

Writer (``aenet``): the target is a directory holding ``structure-000001.xsf``
... (one per frame, 1-based, repr-exact floats) and ``generate.in``::

    OUTPUT refdata.train
    TYPES
    2
    O 0.0
    Ti 0.0
    SETUPS
    O O.fingerprint.stp
    Ti Ti.fingerprint.stp
    FILES
    N
    structure-000001.xsf
    ...

Types are sorted by atomic number.  The atomic reference energies are 0.0
(aenet then trains on total energies) unless the option
``atomic_energies={"O": -432.5, ...}`` is given; ``output=`` renames the
training-set file.  The ``<El>.fingerprint.stp`` setup files are
PLACEHOLDER names: they are not written (descriptor choice belongs to the
training step) and must be created next to ``generate.in`` before running
``generate.x generate.in``.  Every frame needs an energy and forces (aenet's
generate.x stops otherwise), else FormatError naming the 0-based frame index
and nothing is left behind.  Periodic frames (all pbc True) are written as
CRYSTAL/PRIMVEC/PRIMCOORD, non-periodic ones as ATOMS; mixed pbc is an error.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from mlds.errors import FormatError
from mlds.format.frame import Frame
from mlds.io.registry import Reader, Writer, register_reader, register_writer
from mlds.util import atomic_path

_SECTION = {"CRYSTAL", "SLAB", "POLYMER", "MOLECULE", "PRIMVEC", "CONVVEC", "PRIMCOORD", "CONVCOORD", "ATOMS",
            "ANIMSTEPS"}
_ENERGY_RE = re.compile(r"(total|cohesive)\s+energy\s*=\s*(\S+)\s*(\S*)", re.IGNORECASE)


def _atomic_number(tok: str) -> int | None:
    from mlds.elements import atomic_numbers

    if tok.isdigit():
        z = int(tok)
        return z if 0 < z < 119 else None
    z = atomic_numbers.get(tok)
    return None if not z else int(z)


def read_xsf(path: Path) -> Frame:
    """Parse one aenet XSF file (see the module docstring)."""
    energy = math.nan
    info: dict[str, Any] = {}
    comments: list[str] = []
    cell: np.ndarray | None = None
    atoms: list[tuple[int, list[float]]] = []
    section = None
    expect = 0          # PRIMCOORD: atom lines still expected (-1: count line next)
    vec_rows: list[list[float]] = []
    vec_kind = None
    ncols = None

    def num(tok: str, ln: int, what: str) -> float:
        try:
            return float(tok.replace("d", "e").replace("D", "e"))
        except ValueError:
            raise FormatError(path, f"bad number {tok!r} in {what}", line=ln) from None

    with open(path, encoding="utf-8", errors="replace") as fh:
        for ln, raw in enumerate(fh, start=1):
            line = raw.strip()
            if not line:
                continue
            m = _ENERGY_RE.search(line)
            if m and line.startswith("#"):
                value = num(m.group(2), ln, "energy line")
                unit = m.group(3).lower()
                if unit and unit != "ev":
                    raise FormatError(path, f"energy given in {m.group(3)!r}; aenet XSF energies must be eV", line=ln)
                if m.group(1).lower() == "total":
                    energy = value
                else:
                    info["cohesive_energy"] = value
                continue
            if line.startswith("#"):
                comments.append(line[1:].strip())
                continue
            word = line.split()[0].upper()
            if word in _SECTION and len(line.split()) == 1 or word == "ANIMSTEPS":
                if vec_kind is not None and len(vec_rows) < 3:
                    raise FormatError(path, f"{vec_kind} needs 3 lattice vectors, found {len(vec_rows)}", line=ln)
                if expect > 0:
                    raise FormatError(path, f"PRIMCOORD block ends {expect} atom line(s) early", line=ln)
                if word == "ANIMSTEPS":
                    raise FormatError(path, "animated XSF is not supported by aenet", line=ln)
                section = word
                vec_kind = None
                if word in ("PRIMVEC", "CONVVEC"):
                    vec_kind, vec_rows = word, []
                elif word in ("PRIMCOORD", "CONVCOORD"):
                    expect = -1
                elif word == "ATOMS":
                    expect = 0
                continue
            parts = line.split()
            if vec_kind is not None and len(vec_rows) < 3:
                if len(parts) != 3:
                    raise FormatError(path, f"{vec_kind} row needs 3 numbers", line=ln)
                vec_rows.append([num(t, ln, vec_kind) for t in parts])
                if len(vec_rows) == 3:
                    if vec_kind == "PRIMVEC":
                        cell = np.array(vec_rows, dtype=np.float64)
                    vec_kind = None
                continue
            if section in ("PRIMCOORD", "CONVCOORD") and expect == -1:
                try:
                    expect = int(parts[0])
                except ValueError:
                    raise FormatError(path, f"expected the atom count after {section}, found {parts[0]!r}",
                                      line=ln) from None
                continue
            if section == "CONVCOORD":
                expect -= 1
                continue
            if section == "ATOMS" or (section == "PRIMCOORD" and expect > 0):
                if len(parts) not in (4, 7):
                    raise FormatError(path, f"atom line needs 4 or 7 columns (symbol x y z [fx fy fz]), "
                                      f"found {len(parts)}", line=ln)
                if ncols is None:
                    ncols = len(parts)
                elif ncols != len(parts):
                    raise FormatError(path, "some atom lines have forces and some do not", line=ln)
                z = _atomic_number(parts[0])
                if z is None:
                    raise FormatError(path, f"unknown element {parts[0]!r}", line=ln)
                atoms.append((z, [num(t, ln, "atom line") for t in parts[1:]]))
                if section == "PRIMCOORD":
                    expect -= 1
                continue
            raise FormatError(path, f"unexpected line {line[:40]!r}", line=ln)
    if vec_kind is not None:
        raise FormatError(path, f"{vec_kind} needs 3 lattice vectors, found {len(vec_rows)}")
    if expect > 0 or expect == -1:
        raise FormatError(path, "PRIMCOORD block ends early (file truncated?)")
    if not atoms:
        raise FormatError(path, "no atoms (expected PRIMCOORD or ATOMS)")
    numbers = np.array([a[0] for a in atoms], dtype=np.uint8)
    vals = np.array([a[1] for a in atoms], dtype=np.float64)
    periodic = cell is not None
    if comments:
        info["comment"] = "\n".join(comments)
    return Frame(
        numbers=numbers,
        positions=vals[:, 0:3],
        cell=cell if periodic else np.zeros((3, 3)),
        pbc=np.full(3, periodic),
        energy=energy,
        forces=vals[:, 3:6] if ncols == 7 else None,
        info=info,
    )


def _looks_like_xsf(head: bytes) -> bool:
    text = head.decode("utf-8", "replace")
    for line in text.splitlines()[:200]:
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        return s.upper() in ("CRYSTAL", "SLAB", "POLYMER", "MOLECULE", "ATOMS", "PRIMVEC")
    return False


@register_reader
class AenetXsfReader(Reader):
    name = "aenet-xsf"
    extensions = (".xsf",)
    description = "aenet XSF (energy from '# total energy = E eV', forces in eV/Å)"

    @classmethod
    def sniff(cls, path: Path, head: bytes) -> bool:
        return _looks_like_xsf(head)

    def _frames(self) -> Iterator[Frame]:
        self.report.code = "aenet"
        yield read_xsf(self.path)


def parse_generate_in(path: Path) -> dict[str, Any]:
    """Keywords of a ``generate.in``: output, types [(sym, E)], setups {sym: file}, files [(path, line)]."""
    lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    out: dict[str, Any] = {"output": None, "types": [], "setups": {}, "files": []}

    def strip(s: str) -> str:
        for c in "!#":
            s = s.split(c, 1)[0]
        return s.strip()

    def count_at(i: int, kw: str) -> int:
        while i < len(lines) and not strip(lines[i]):
            i += 1
        if i >= len(lines):
            raise FormatError(path, f"{kw} needs a count on the next line", line=i)
        try:
            return int(strip(lines[i]).split()[0])
        except ValueError:
            raise FormatError(path, f"{kw} needs a count, found {strip(lines[i])!r}", line=i + 1) from None

    def entries(i: int, n: int, kw: str) -> tuple[list[tuple[str, int]], int]:
        got: list[tuple[str, int]] = []
        while len(got) < n:
            if i >= len(lines):
                raise FormatError(path, f"{kw} announces {n} entries but the file ends after {len(got)}",
                                  line=len(lines))
            s = strip(lines[i])
            if s:
                got.append((s, i + 1))
            i += 1
        return got, i

    i = 0
    while i < len(lines):
        s = strip(lines[i])
        i += 1
        if not s:
            continue
        kw = s.split()[0].upper()
        if kw == "OUTPUT":
            out["output"] = s.split()[1] if len(s.split()) > 1 else None
        elif kw in ("TYPES", "SETUPS", "FILES"):
            # skip to the count line
            while i < len(lines) and not strip(lines[i]):
                i += 1
            if kw == "SETUPS":
                n = len(out["types"])
            else:
                n = count_at(i, kw)
                i += 1
            got, i = entries(i, n, kw)
            if kw == "TYPES":
                for text, _ in got:
                    toks = text.split()
                    e = float(toks[1]) if len(toks) > 1 and _isfloat(toks[1]) else 0.0
                    out["types"].append((toks[0], e))
            elif kw == "SETUPS":
                for text, _ in got:
                    toks = text.split()
                    out["setups"][toks[0]] = toks[1] if len(toks) > 1 else ""
            else:
                out["files"] = [(text.split()[0], ln) for text, ln in got]
        # other keywords (TIMING, DEBUG, ...) carry no structure data
    return out


def _isfloat(tok: str) -> bool:
    try:
        float(tok.replace("d", "e").replace("D", "e"))
        return True
    except ValueError:
        return False


@register_reader
class AenetGenerateReader(Reader):
    name = "aenet-generate"
    extensions = (".in",)
    description = "aenet generate.in: every XSF file it lists"

    @classmethod
    def sniff(cls, path: Path, head: bytes) -> bool:
        words = set()
        for line in head.decode("utf-8", "replace").splitlines():
            toks = line.split()
            if toks:
                words.add(toks[0].upper())
        return {"TYPES", "FILES"} <= words and ("SETUPS" in words or "OUTPUT" in words)

    def _frames(self) -> Iterator[Frame]:
        self.report.code = "aenet"
        spec = parse_generate_in(self.path)
        base = self.path.parent
        resolved = []
        for name, ln in spec["files"]:
            p = Path(name)
            p = p if p.is_absolute() else base / p
            if not p.is_file():
                raise FormatError(self.path, f"listed XSF file {name!r} not found (looked for {p})", line=ln)
            resolved.append(p)
        for p in resolved:
            frame = read_xsf(p)
            frame.info.setdefault("source_file", str(p))
            yield frame


def _r(x: float) -> str:
    return repr(float(x))


def frame_to_xsf(frame: Frame) -> str:
    lines = [f"# total energy = {_r(frame.energy)} eV", ""]
    if frame.pbc.all():
        lines += ["CRYSTAL", "PRIMVEC"]
        lines += ["  " + " ".join(_r(v) for v in row) for row in frame.cell]
        lines += ["PRIMCOORD", f"{frame.n_atoms} 1"]
    else:
        lines += ["ATOMS"]
    for sym, pos, f in zip(frame.symbols, frame.positions, frame.forces):
        lines.append(f"{sym} " + " ".join(_r(v) for v in pos) + " " + " ".join(_r(v) for v in f))
    return "\n".join(lines) + "\n"


@register_writer
class AenetWriter(Writer):
    name = "aenet"
    extensions = ()
    description = "aenet training directory: structure-NNNNNN.xsf files + generate.in"

    def write(self, frames: Iterable[Frame], metadata: dict[str, Any] | None = None) -> int:
        atomic_energies = dict(self.options.get("atomic_energies") or {})
        output = str(self.options.get("output") or "refdata.train")
        names: list[str] = []
        species: set[int] = set()
        with atomic_path(self.path, is_dir=True) as tmp:
            for i, frame in enumerate(frames):
                if math.isnan(frame.energy):
                    raise FormatError(self.path, f"frame {i} has no energy; aenet needs energy and forces for "
                                      "every structure")
                if frame.forces is None or not np.isfinite(frame.forces).all():
                    raise FormatError(self.path, f"frame {i} has no (or non-finite) forces; aenet needs energy "
                                      "and forces for every structure")
                if frame.pbc.any() and not frame.pbc.all():
                    raise FormatError(self.path, f"frame {i} has mixed periodicity pbc={frame.pbc.tolist()}; "
                                      "aenet XSF is either periodic (PRIMVEC) or isolated (ATOMS)")
                if (frame.numbers == 0).any():
                    raise FormatError(self.path, f"frame {i} has atoms without an element (Z=0)")
                name = f"structure-{i + 1:06d}.xsf"
                (tmp / name).write_text(frame_to_xsf(frame), encoding="utf-8")
                names.append(name)
                species.update(int(z) for z in frame.numbers)
            (tmp / "generate.in").write_text(self._generate_in(names, species, atomic_energies, output),
                                             encoding="utf-8")
        return len(names)

    @staticmethod
    def _generate_in(names: list[str], species: set[int], atomic_energies: dict[str, float], output: str) -> str:
        from mlds.elements import chemical_symbols

        syms = [chemical_symbols[z] for z in sorted(species)]
        lines = [f"OUTPUT {output}", "", "TYPES", str(len(syms))]
        lines += [f"{s} {_r(atomic_energies.get(s, 0.0))}" for s in syms]
        lines += ["", "SETUPS"]
        lines += [f"{s} {s}.fingerprint.stp" for s in syms]
        lines += ["", "FILES", str(len(names))]
        lines += names
        return "\n".join(lines) + "\n"
