"""Quantum ESPRESSO pw.x text output (stdout) reader.

Streams the file line by line (memory bounded by one ionic step).  One frame
per ionic step (scf, relax, md, vc-relax, vc-md); the ``.in`` file is never
read.

Rules (see ``spec``/``formats.md`` §4.1):

* **Geometry of step k** is the one printed *before* its SCF: the header
  (``crystal axes`` in alat units × ``lattice parameter (alat)``, ``site n.
  ... positions (alat units)``) for the first step, then the last
  ``CELL_PARAMETERS`` / ``ATOMIC_POSITIONS`` block printed after step k-1.
  Any ibrav works because the header always prints the cell vectors.  Cells
  are kept as printed: left-handed cells are neither rotated nor rejected.
* **Energy** = the last ``!!`` (EXX/hybrid converged) or ``!`` line of the
  step, i.e. the last one before its forces.  Outputs with iprint print ``!``
  on every SCF iteration; the last is the converged one.  This is the free
  energy F that the forces derive from.
* **Unconverged SCF** (``convergence NOT achieved``) → dropped with reason
  ``scf-unconverged``; ``keep_unconverged=True`` keeps it with
  ``converged=False`` and the last printed total energy.  A hybrid step with
  ``!`` but no ``!!`` counts as unconverged (EXX loop not finished).
* **Incomplete steps**: a step whose forces or stress block is cut off, or
  whose SCF never reported convergence, or which has an energy but no forces
  in a file that did not finish (no ``JOB DONE``/timing report), is dropped
  with reason ``incomplete-step`` and a warning (its labels may be partial).
  A run with zero complete steps yields nothing and warns (no exception).
* **Forces** Ry/Bohr → eV/Å (only the first ``nat`` lines after ``Forces
  acting on atoms``: high verbosity prints per-term contributions after the
  total).  Steps without forces (tprnfor off) keep ``forces=None``.
* **Stress** from the Ry/Bohr³ columns of ``total   stress`` (8 decimals,
  the kbar columns have 2), σ_ASE = −printed (QE prints a pressure-like
  tensor, P = trace/3).
* **Spin**: ``Magnetic moment per site`` (collinear) → ``magmoms`` (last block
  of the step), ``settings["spin_polarized"]``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from mlds.errors import FormatError
from mlds.format.frame import Frame
from mlds.io import _qe_common as qe
from mlds.io.registry import Reader, register_reader

_ENERGY_RE = re.compile(r"^\s*(!!|!)?\s*total energy\s+=\s*(\S+)\s+Ry")
_FORCES_HDR = "Forces acting on atoms"
_FORCE_LINE_RE = re.compile(r"^\s*atom\s+(\d+)\s+type\s+\d+\s+force\s+=(.*)$")
_STRESS_HDR_RE = re.compile(r"^\s*total\s+stress\s+\(Ry/bohr\*\*3\)")
_CELLPAR_RE = re.compile(r"^\s*CELL_PARAMETERS\s*(?:[({]\s*(\w+)\s*(?:=\s*(\S+?))?\s*[)}])?")
_ATPOS_RE = re.compile(r"^\s*ATOMIC_POSITIONS\s*(?:[({]\s*(\w+)\s*[)}])?")
_MAGN_RE = re.compile(r"magn[:=]\s*(.*?)(?:constr|$)")
_SPECIES_PSD_RE = re.compile(r"([A-Za-z]{1,2})\s*\(\s*[\d.]+\s*\)")


class _Lines:
    """Line iterator with 1-based line numbers and one-line pushback."""

    def __init__(self, fh) -> None:
        self._fh = fh
        self.lineno = 0
        self._back: str | None = None
        self.partial_lineno: int | None = None  # last line, cut without newline

    def next(self) -> str | None:
        if self._back is not None:
            line, self._back = self._back, None
            self.lineno += 1
            return line
        line = self._fh.readline()
        if not line:
            return None
        self.lineno += 1
        if not line.endswith("\n"):
            # last line cut without newline: a killed run; a partial number
            # could still parse, so the line is not trusted
            if line.strip(" =-\t\r"):
                self.partial_lineno = self.lineno
            return None
        return line

    def push(self, line: str) -> None:
        self._back = line
        self.lineno -= 1


class _Step:
    def __init__(self) -> None:
        self.energy_marked: float | None = None   # last '!' or '!!' (Ry)
        self.marked_kind: str | None = None
        self.energy_any: float | None = None      # last total energy of any kind
        self.converged: bool | None = None
        self.forces: np.ndarray | None = None
        self.forces_incomplete = False
        self.stress: np.ndarray | None = None
        self.stress_incomplete = False
        self.magmoms: list[float] | None = None

    @property
    def started(self) -> bool:
        return self.energy_any is not None or self.converged is not None


@register_reader
class QEPwReader(Reader):
    name = "qe-pw"
    extensions = (".out", ".pwo", ".log")
    description = "Quantum ESPRESSO pw.x text output (scf, relax, md, vc-relax, vc-md)"

    @classmethod
    def sniff(cls, path: Path, head: bytes) -> bool:
        return b"Program PWSCF" in head

    # ------------------------------------------------------------------ state
    def _reset(self) -> None:
        self.nat: int | None = None
        self.alat: float | None = None          # Bohr
        self.cell: np.ndarray | None = None      # Å, rows
        self.labels: list[str] | None = None
        self.positions: np.ndarray | None = None  # Å
        self.species: dict[str, str] = {}       # label -> element
        self.step = _Step()
        self.step_index = 0
        self.job_done = False
        self.exx_run = False
        self.seen_forces = False
        self.seen_md = False
        self.seen_bfgs = False
        self.seen_cellpar = False
        self.seen_dynamics_vc = False
        self.spin = False
        self.nspin_collinear = False
        self.s: dict[str, Any] = {"code": qe.CODE}
        self.extra: dict[str, Any] = {}
        self.pseudos: list[dict[str, str]] = []

    def _err(self, msg: str, lineno: int | None) -> FormatError:
        return FormatError(self.path, msg, line=lineno)

    # --------------------------------------------------------------- parsing
    def _frames(self) -> Iterator[Frame]:
        self._reset()
        self.report.code = qe.CODE
        keep_unconverged = bool(self.options.get("keep_unconverged", False))
        with open(self.path, "r", encoding="utf-8", errors="replace") as fh:
            L = _Lines(fh)
            while True:
                line = L.next()
                if line is None:
                    break
                yield from self._line(line, L, keep_unconverged)
            if L.partial_lineno is not None:
                self.report.warn(f"file ends in the middle of line {L.partial_lineno} (no newline): line ignored")
        # end of file: the pending step
        yield from self._flush(keep_unconverged, at_eof=True)
        self._finish_settings()
        if self.report.kept == 0:
            self.report.warn("no complete ionic step in the file (interrupted run?): 0 frames")
            if self.step_index == 0:
                self.report.set_empty_reason("the run stopped before its first SCF step (no energy in the file)")

    def _line(self, line: str, L: _Lines, keep: bool) -> Iterator[Frame]:
        s = line.strip()
        if not s:
            return
        st = self.step
        # ---------------------------------------------------------- energies
        if "total energy" in line:
            m = _ENERGY_RE.match(line)
            if m:
                val = qe.to_float(m.group(2), self.path, L.lineno)
                if st.forces is not None or st.stress is not None:
                    # a new SCF started without a geometry block (should not happen)
                    yield from self._flush(keep)
                    st = self.step
                st.energy_any = val
                if m.group(1):
                    st.energy_marked = val
                    st.marked_kind = m.group(1)
                    if m.group(1) == "!!":
                        self.exx_run = True
                return
        if s.startswith("convergence has been achieved"):
            st.converged = True
            return
        if s.startswith("convergence NOT achieved"):
            st.converged = False
            return
        if s.startswith("EXX") or "est. exchange err" in s:
            self.exx_run = True
            return
        # ------------------------------------------------------------ forces
        if _FORCES_HDR in line:
            self._read_forces(L)
            return
        if _STRESS_HDR_RE.match(line):
            self._read_stress(L)
            return
        if s.startswith("Magnetic moment per site"):
            self._read_magn(L)
            return
        # ---------------------------------------------------------- geometry
        m = _CELLPAR_RE.match(line)
        if m and s.startswith("CELL_PARAMETERS"):
            yield from self._flush(keep)
            self._read_cellpar(L, m)
            self.seen_cellpar = True
            return
        m = _ATPOS_RE.match(line)
        if m and s.startswith("ATOMIC_POSITIONS"):
            yield from self._flush(keep)
            self._read_atpos(L, (m.group(1) or "alat").lower())
            return
        if s.startswith("Begin final coordinates"):
            yield from self._flush(keep)
            return
        if s.startswith("lattice parameter (alat)"):
            yield from self._flush(keep)
            self.alat = qe.to_float(s.split("=")[1].split()[0], self.path, L.lineno)
            return
        if s.startswith("celldm(1)="):
            # same as 'lattice parameter (alat)' but printed with 6 decimals, not 4
            celldm1 = qe.to_float(s.split("=")[1].split()[0], self.path, L.lineno)
            if self.alat is None or abs(celldm1 - self.alat) <= 1e-4 * max(abs(self.alat), 1.0):
                self.alat = celldm1
            return
        if s.startswith("crystal axes:"):
            yield from self._flush(keep)
            self._read_crystal_axes(L)
            return
        if s.startswith("site n.") and "alat units" in s:
            yield from self._flush(keep)
            self._read_header_positions(L)
            return
        # ------------------------------------------------------------ header
        if s.startswith("number of atoms/cell"):
            self.nat = int(s.split("=")[1])
            return
        if s.startswith("atomic species") and "pseudopotential" in s:
            self._read_species(L)
            return
        if s.startswith("Program PWSCF"):
            v = qe.version_from_text(s[len("Program PWSCF"):])
            if v:
                self.s["code_version"] = v
            return
        if s.startswith("Exchange-correlation"):
            name = qe.functional_name(s.split("=", 1)[1]) if "=" in s else None
            if name:
                self.s["functional"] = name
                self.extra["exchange_correlation"] = " ".join(s.split("=", 1)[1].split("(")[0].split())
            return
        if s.startswith("kinetic-energy cutoff"):
            self.s["plane_wave_cutoff_eV"] = self._ry_value(s, L) * qe.RY_EV
            return
        if s.startswith("charge density cutoff"):
            self.extra["ecutrho_eV"] = self._ry_value(s, L) * qe.RY_EV
            return
        if s.startswith("number of k points="):
            self._kpoints_line(s, L)
            return
        if s.startswith("PseudoPot. #"):
            self._read_pseudo(s, L)
            return
        if s.startswith("Molecular Dynamics Calculation"):
            self.seen_md = True
            return
        if s.startswith("BFGS Geometry Optimization"):
            self.seen_bfgs = True
            return
        if s.startswith("Entering Dynamics;") or "Wentzcovitch" in s:
            self.seen_dynamics_vc = True
            return
        if s.startswith("Entering Dynamics"):
            self.seen_md = True
            return
        if ("Starting magnetic structure" in s or s.startswith("total magnetization")
                or "SPIN UP" in s or s.startswith("Noncollinear calculation")):
            self.spin = True
            if "Noncollinear" in s:
                self.extra["noncollinear"] = True
            return
        if "JOB DONE" in s or re.match(r"PWSCF\s+:", s):
            self.job_done = True
            return

    # ---------------------------------------------------------------- blocks
    def _ry_value(self, s: str, L: _Lines) -> float:
        return qe.to_float(s.split("=")[1].split()[0], self.path, L.lineno)

    def _need_nat(self, what: str, lineno: int) -> int:
        if self.nat is None:
            raise self._err(f"{what} before 'number of atoms/cell' (header missing)", lineno)
        return self.nat

    def _read_forces(self, L: _Lines) -> None:
        st = self.step
        if self.nat is None:
            # header missing (stripped file): cannot attribute forces
            st.forces_incomplete = True
            return
        nat = self.nat
        vals = np.empty((nat, 3))
        got = 0
        while got < nat:
            line = L.next()
            if line is None:
                st.forces_incomplete = True
                return
            if not line.strip():
                continue
            m = _FORCE_LINE_RE.match(line)
            if not m:
                L.push(line)
                st.forces_incomplete = True
                return
            idx = int(m.group(1)) - 1
            if not 0 <= idx < nat:
                raise self._err(f"force for atom {idx + 1} but nat = {nat}", L.lineno)
            vals[idx] = qe.floats(m.group(2), 3, self.path, L.lineno)
            got += 1
        st.forces = vals * qe.RY_BOHR_TO_EV_ANG
        st.forces_incomplete = False
        self.seen_forces = True

    def _read_stress(self, L: _Lines) -> None:
        st = self.step
        rows = []
        for _ in range(3):
            line = L.next()
            if line is None:
                st.stress_incomplete = True
                return
            vals = qe.floats(line, None, self.path, L.lineno)
            if len(vals) not in (3, 6):
                L.push(line)
                st.stress_incomplete = True
                return
            rows.append(vals[:3])
        st.stress = -np.array(rows) * qe.RY_BOHR3_TO_EV_ANG3
        st.stress_incomplete = False

    def _read_magn(self, L: _Lines) -> None:
        mags: list[float] = []
        while True:
            line = L.next()
            if line is None:
                break
            s = line.strip()
            if not s:
                if mags:
                    break
                continue
            if not s.startswith("atom"):
                L.push(line)
                break
            m = _MAGN_RE.search(s)
            if not m:
                continue
            vals = qe.floats(m.group(1), None, self.path, L.lineno)
            if len(vals) != 1:  # noncollinear vector moments: not stored
                return
            mags.append(vals[0])
        if mags:
            self.step.magmoms = mags
            self.nspin_collinear = True
            self.spin = True

    def _read_crystal_axes(self, L: _Lines) -> None:
        if self.alat is None:
            raise self._err("'crystal axes' before 'lattice parameter (alat)'", L.lineno)
        rows = []
        for _ in range(3):
            line = L.next()
            if line is None:
                return  # truncated file: nothing follows
            m = re.search(r"=\s*\((.*)\)", line)
            if not m:
                raise self._err("expected 'a(i) = ( x y z )'", L.lineno)
            rows.append(qe.floats(m.group(1), 3, self.path, L.lineno))
        self.cell = np.array(rows) * self.alat * qe.BOHR_ANGSTROM

    def _read_header_positions(self, L: _Lines) -> None:
        nat = self._need_nat("atom positions", L.lineno)
        if self.alat is None:
            raise self._err("positions before 'lattice parameter (alat)'", L.lineno)
        labels, pos = [], []
        while len(labels) < nat:
            line = L.next()
            if line is None:
                return  # truncated file: nothing follows
            m = re.match(r"^\s*\d+\s+(\S+)\s+tau\(\s*\d+\)\s*=\s*\((.*)\)", line)
            if not m:
                raise self._err("expected 'n  X  tau( n) = ( x y z )'", L.lineno)
            labels.append(m.group(1))
            pos.append(qe.floats(m.group(2), 3, self.path, L.lineno))
        self.labels = labels
        self.positions = np.array(pos) * self.alat * qe.BOHR_ANGSTROM

    def _read_cellpar(self, L: _Lines, m: re.Match) -> None:
        unit = (m.group(1) or "alat").lower()
        rows = []
        for _ in range(3):
            line = L.next()
            if line is None:
                return  # truncated file: nothing follows
            rows.append(qe.floats(line, 3, self.path, L.lineno))
        cell = np.array(rows)
        if unit == "alat":
            alat = qe.to_float(m.group(2), self.path, L.lineno) if m.group(2) else self.alat
            if alat is None:
                raise self._err("CELL_PARAMETERS (alat) without a lattice parameter", L.lineno)
            cell = cell * alat * qe.BOHR_ANGSTROM
        elif unit == "bohr":
            cell = cell * qe.BOHR_ANGSTROM
        elif unit == "angstrom":
            pass
        else:
            raise self._err(f"unknown CELL_PARAMETERS unit {unit!r}", L.lineno)
        self.cell = cell

    def _read_atpos(self, L: _Lines, unit: str) -> None:
        labels, pos = [], []
        start = L.lineno
        while self.nat is None or len(labels) < self.nat:
            line = L.next()
            if line is None:
                break
            parts = line.split()
            if not parts or not re.match(r"^[A-Za-z]", parts[0]) or parts[0] in ("End",):
                L.push(line)
                break
            if len(parts) < 4:
                raise self._err("expected 'X x y z' in ATOMIC_POSITIONS", L.lineno)
            labels.append(parts[0])
            pos.append(qe.floats(" ".join(parts[1:4]), 3, self.path, L.lineno))
        if self.nat is not None and len(labels) != self.nat:
            # truncated block at end of file: no step follows it anyway
            if L.next() is None:
                return
            raise self._err(f"ATOMIC_POSITIONS has {len(labels)} atoms, expected {self.nat}", start)
        p = np.array(pos).reshape(-1, 3)
        if unit == "alat":
            if self.alat is None:
                raise self._err("ATOMIC_POSITIONS (alat) without a lattice parameter", start)
            p = p * self.alat * qe.BOHR_ANGSTROM
        elif unit == "bohr":
            p = p * qe.BOHR_ANGSTROM
        elif unit == "angstrom":
            pass
        elif unit == "crystal":
            if self.cell is None:
                raise self._err("ATOMIC_POSITIONS (crystal) without a cell", start)
            p = p @ self.cell
        else:
            raise self._err(f"unsupported ATOMIC_POSITIONS unit {unit!r}", start)
        self.labels = labels
        self.positions = p

    def _read_species(self, L: _Lines) -> None:
        while True:
            line = L.next()
            if line is None:
                return
            parts = line.split()
            if not parts:
                return
            label = parts[0]
            m = _SPECIES_PSD_RE.search(line)
            elem = None
            if m:
                try:
                    elem = qe.element_from_label(m.group(1))
                except ValueError:
                    elem = None
            if elem is None:
                try:
                    elem = qe.element_from_label(label)
                except ValueError:
                    raise self._err(f"cannot tell the element of species {label!r}", L.lineno) from None
            self.species[label] = elem

    def _read_pseudo(self, s: str, L: _Lines) -> None:
        m = re.match(r"PseudoPot\.\s*#\s*\d+\s+for\s+(\S+)", s)
        entry: dict[str, str] = {}
        if m:
            try:
                entry["element"] = qe.element_from_label(m.group(1))
            except ValueError:
                entry["element"] = m.group(1)
        line = L.next()
        if line is None:
            return
        name = line.strip().replace("\\", "/").rsplit("/", 1)[-1]
        if name:
            entry["name"] = name
        line = L.next()
        if line is not None:
            mm = re.search(r"MD5 check sum:\s*([0-9a-fA-F]{32})", line)
            if mm:
                entry["md5"] = mm.group(1).lower()
            else:
                L.push(line)
        self.pseudos.append(entry)

    def _kpoints_line(self, s: str, L: _Lines) -> None:
        m = re.match(r"number of k points=\s*(\d+)(.*)$", s)
        if not m:
            return
        self.s["kpoints"] = {"n_kpoints": int(m.group(1))}
        rest = m.group(2)
        sm = re.search(r"([\w-]+)\s+smearing,\s*width\s*\(Ry\)=\s*(\S+)", rest)
        if sm:
            self.s["smearing"] = qe.smearing_entry(
                sm.group(1), qe.to_float(sm.group(2), self.path, L.lineno) * qe.RY_EV)
        elif "tetrahedr" in rest.lower():
            self.s["smearing"] = {"method": "tetrahedron"}
        else:  # fixed occupations (insulator): nothing printed after the count
            self.s["smearing"] = {"method": "none"}

    # ------------------------------------------------------------------ flush
    def _flush(self, keep: bool, at_eof: bool = False) -> Iterator[Frame]:
        st = self.step
        if not st.started:
            return
        self.step = _Step()
        k = self.step_index
        self.step_index += 1
        if st.energy_any is None:
            self._drop("incomplete-step", f"step {k}: no total energy printed",
                       "run interrupted before the first SCF finished (no total energy printed)")
            return
        if st.forces_incomplete or st.stress_incomplete:
            self._drop("incomplete-step", f"step {k}: forces or stress block cut off",
                       "the file ends inside the forces or stress of the first step (job killed?)")
            return
        if st.converged is None:
            self._drop("incomplete-step", f"step {k}: SCF did not finish",
                       "run interrupted before the first SCF converged")
            return
        if at_eof and st.forces is None and not self.job_done:
            self._drop("incomplete-step", f"step {k}: run ended before forces were printed",
                       "run interrupted before the forces of the first step were printed")
            return
        converged = bool(st.converged)
        if converged and self.exx_run and st.marked_kind != "!!":
            converged = False
        if converged and st.energy_marked is None:
            converged = False
        if not converged and not keep:
            self._drop("scf-unconverged", None)
            return
        energy_ry = st.energy_marked if converged else st.energy_any
        if self.positions is None or self.cell is None or self.labels is None:
            raise FormatError(self.path, f"step {k} has an energy but no geometry was printed before it")
        numbers = [qe.atomic_number(self._element(lbl)) for lbl in self.labels]
        magmoms = st.magmoms if st.magmoms is not None and len(st.magmoms) == len(numbers) else None
        yield Frame(
            numbers=numbers,
            positions=self.positions.copy(),
            cell=self.cell.copy(),
            pbc=[True, True, True],
            energy=energy_ry * qe.RY_EV,
            forces=st.forces,
            stress=st.stress,
            magmoms=magmoms,
            converged=converged,
            info={"step": k},
        )

    def _drop(self, reason: str, warning: str | None, empty: str | None = None) -> None:
        self.report.drop(reason)
        if warning:
            self.report.warn(warning)
        if empty and self.step_index == 1:  # the first step: why the file gives no frame at all
            self.report.set_empty_reason(empty)

    def _element(self, label: str) -> str:
        if label in self.species:
            return self.species[label]
        try:
            return qe.element_from_label(label)
        except ValueError:
            raise FormatError(self.path, f"cannot tell the element of atom label {label!r}") from None

    # --------------------------------------------------------------- settings
    def _finish_settings(self) -> None:
        s = self.s
        s["spin_polarized"] = bool(self.spin)
        if self.pseudos:
            s["pseudopotentials"] = self.pseudos
        if self.seen_cellpar and (self.seen_dynamics_vc or self.seen_md):
            calc = "vc-md"
        elif self.seen_cellpar and self.seen_bfgs:
            calc = "vc-relax"
        elif self.seen_bfgs:
            calc = "relax"
        elif self.seen_md:
            calc = "md"
        elif self.step_index == 1 and self.job_done:
            calc = "scf"
        else:
            calc = None
        if calc:
            self.extra["calculation"] = calc
        if self.extra:
            s["extra"] = self.extra
        self.report.settings = s
