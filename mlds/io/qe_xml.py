"""Quantum ESPRESSO XML data file (``<prefix>.save/data-file-schema.xml``).

Streaming: the file is fed line by line to an ``XMLPullParser`` and each
element is cleared once used, so memory stays bounded (band structures of big
runs are large) and a bad number is reported with its line number.

Units in the file are Hartree atomic units (Ha, Bohr, Ha/Bohr, Ha/Bohr³) for
every schema version (qes-1.0: qes_190304, qes_200420, qes_211101, ...,
qes_260128); converted with CODATA 2018 (``_qe_common``).  Stress is stored
with the same pressure-like sign as the text output: σ_ASE = −stored.

Frames: one per ``<step>`` (relax/md/vc-* runs write one per ionic step:
structure, energy, forces, stress when computed), then one for ``<output>``
(final structure/energy/forces/stress).  For relax runs the output repeats the
last step: if the last step has the same structure (to 1e-8 Bohr) and the same
energy (to 1e-10 Ha) as ``<output>``, only the output frame is kept (it may
carry stress the step lacks).  A vc-relax final SCF in a fresh basis has a
different energy and so stays a separate frame, as in the text reader.
Steps whose SCF did not converge are dropped (``scf-unconverged``) unless
``keep_unconverged=True``.  A file truncated at its end keeps the complete
steps and warns.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from mlds.errors import FormatError
from mlds.format.frame import Frame
from mlds.io import _qe_common as qe
from mlds.io.registry import Reader, register_reader


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _is_truncation(err: ET.ParseError) -> bool:
    """expat's messages for a document that simply stops."""
    msg = str(err)
    return "no element found" in msg or "unclosed token" in msg


def _bool(text: str | None) -> bool:
    return (text or "").strip().lower() in ("true", "t", ".true.", "1")


class _Struct:
    def __init__(self) -> None:
        self.labels: list[str] = []
        self.positions: list[list[float]] = []
        self.cell: list[list[float] | None] = [None, None, None]
        self.energy: float | None = None     # Ha
        self.forces: np.ndarray | None = None  # Ha/Bohr
        self.stress: np.ndarray | None = None  # Ha/Bohr^3, QE sign
        self.converged: bool | None = None
        self.n_step: int | None = None

    def complete(self) -> bool:
        return bool(self.labels) and all(c is not None for c in self.cell) and self.energy is not None


@register_reader
class QEXmlReader(Reader):
    name = "qe-xml"
    extensions = (".xml",)
    description = "Quantum ESPRESSO data-file-schema.xml (qes schema, Hartree atomic units)"

    @classmethod
    def sniff(cls, path: Path, head: bytes) -> bool:
        return b"<qes:espresso" in head

    def _err(self, msg: str, line: int | None) -> FormatError:
        return FormatError(self.path, msg, line=line)

    def _frames(self) -> Iterator[Frame]:
        self.report.code = qe.CODE
        keep = bool(self.options.get("keep_unconverged", False))
        settings: dict[str, Any] = {"code": qe.CODE}
        extra: dict[str, Any] = {}
        pseudos: list[dict[str, str]] = []
        species_done = False
        stack: list[str] = []
        cur: _Struct | None = None      # the <step> or <output> being read
        pending: _Struct | None = None  # last step, held back for de-duplication
        n_steps = 0
        spin = {"lsda": False, "noncolin": False}
        parser = ET.XMLPullParser(events=("start", "end"))
        lineno = 0
        truncated = False

        def numbers(elem: ET.Element, n: int | None) -> list[float]:
            return qe.floats(elem.text or "", n, self.path, lineno)

        with open(self.path, "r", encoding="utf-8", errors="replace") as fh:
            eof = False
            while not eof:
                line = fh.readline()
                if line:
                    lineno += 1
                    try:
                        parser.feed(line)
                    except ET.ParseError as err:
                        raise self._err(f"malformed XML: {err}", lineno) from None
                else:
                    eof = True
                    try:
                        parser.close()
                    except ET.ParseError as err:
                        if _is_truncation(err):
                            truncated = True
                        else:
                            raise self._err(f"malformed XML: {err}", lineno) from None
                try:
                    events = list(parser.read_events())
                except ET.ParseError as err:
                    if eof and _is_truncation(err):
                        truncated, events = True, []
                    else:
                        raise self._err(f"malformed XML: {err}", lineno) from None
                for event, elem in events:
                    tag = _local(elem.tag)
                    if event == "start":
                        stack.append(tag)
                        if len(stack) == 1 and tag != "espresso":
                            raise self._err(f"root element is <{tag}>, not <qes:espresso>", lineno)
                        if len(stack) == 2 and tag in ("step", "output"):
                            cur = _Struct()
                            if tag == "step":
                                try:
                                    cur.n_step = int(elem.get("n_step", "0"))
                                except ValueError:
                                    raise self._err("bad n_step attribute", lineno) from None
                        continue
                    # ---------------------------------------------------- end
                    path = "/".join(stack[1:])
                    stack.pop()
                    top = path.split("/", 1)[0] if path else ""
                    if top == "general_info" and tag == "creator":
                        v = elem.get("VERSION")
                        if v:
                            settings["code_version"] = v
                    elif path == "input/control_variables/calculation":
                        extra["calculation"] = (elem.text or "").strip()
                    elif tag == "functional" and top in ("input", "output") and path.endswith("dft/functional"):
                        if elem.text and elem.text.strip():
                            settings["functional"] = elem.text.strip()
                    elif tag == "ecutwfc" and top in ("input", "output"):
                        settings["plane_wave_cutoff_eV"] = numbers(elem, 1)[0] * qe.HARTREE_EV
                    elif tag == "ecutrho" and top in ("input", "output"):
                        extra["ecutrho_eV"] = numbers(elem, 1)[0] * qe.HARTREE_EV
                    elif tag == "monkhorst_pack" and top in ("input", "output"):
                        try:
                            mesh = [int(elem.get(k, "")) for k in ("nk1", "nk2", "nk3")]
                            # spec §8.3: QE k1=1 (half-step offset) -> shift 0.5
                            shift = [0.5 * int(elem.get(k, "0")) for k in ("k1", "k2", "k3")]
                            settings["kpoints"] = {"mesh": mesh, "shift": shift}
                        except ValueError:
                            pass
                    elif tag == "nks" and top == "output" and "kpoints" not in settings:
                        settings["kpoints"] = {"n_kpoints": int(float((elem.text or "0").strip()))}
                    elif tag == "nk" and path.startswith("input/k_points_IBZ") and "kpoints" not in settings:
                        settings["kpoints"] = {"n_kpoints": int(float((elem.text or "0").strip()))}
                    elif tag == "smearing" and top in ("input", "output") and elem.text:
                        width = elem.get("degauss")
                        settings["smearing"] = qe.smearing_entry(
                            elem.text,
                            None if width is None else qe.to_float(width, self.path, lineno) * qe.HARTREE_EV)
                    elif tag in ("occupations", "occupations_kind") and top in ("input", "output") \
                            and "smearing" not in settings and elem.text:
                        occ = elem.text.strip().lower()
                        if occ == "fixed":
                            settings["smearing"] = {"method": "none"}
                        elif occ.startswith("tetrahedra"):
                            settings["smearing"] = {"method": "tetrahedron"}
                    elif tag == "degauss" and top in ("input", "output") and "smearing" in settings:
                        settings["smearing"].setdefault("width_eV", numbers(elem, 1)[0] * qe.HARTREE_EV)
                    elif tag in ("lsda", "noncolin") and top in ("input", "output") and _bool(elem.text):
                        spin[tag] = True
                    elif tag == "species" and path.endswith("atomic_species/species") and not species_done:
                        label = elem.get("name", "")
                        entry: dict[str, str] = {}
                        try:
                            entry["element"] = qe.element_from_label(label)
                        except ValueError:
                            entry["element"] = label
                        pf = None
                        for child in elem:
                            if _local(child.tag) == "pseudo_file":
                                pf = child
                        if pf is not None and pf.text:
                            entry["name"] = pf.text.strip().replace("\\", "/").rsplit("/", 1)[-1]
                            if pf.get("md5"):
                                entry["md5"] = pf.get("md5").lower()
                        pseudos.append(entry)
                    elif tag == "atomic_species" and pseudos:
                        species_done = True
                    elif cur is not None and top in ("step", "output"):
                        self._struct_elem(cur, path, tag, elem, numbers, lineno)
                    # a finished step / output
                    if path in ("step", "output") and cur is not None:
                        s, cur = cur, None
                        if path == "step":
                            n_steps += 1
                            if pending is not None:
                                yield from self._emit(pending, keep)
                            pending = s
                        else:
                            if pending is not None and not self._same(pending, s):
                                yield from self._emit(pending, keep)
                            if pending is not None and self._same(pending, s):
                                s.n_step = pending.n_step
                            elif s.n_step is None:
                                s.n_step = n_steps + 1
                            pending = None
                            yield from self._emit(s, keep, is_output=True)
                    # bounded memory: drop each top-level block once read, and
                    # the bulky band-structure entries as they go by
                    if len(stack) == 1 or tag in ("ks_energies", "atom"):
                        elem.clear()
        if pending is not None:
            yield from self._emit(pending, keep)
        if truncated:
            self.report.warn(f"XML ends early (truncated file); kept the {self.report.kept} complete step(s)")
        if self.report.kept == 0:
            self.report.warn("no complete structure with an energy in the file: 0 frames")
        settings["spin_polarized"] = bool(spin["lsda"] or spin["noncolin"])
        if spin["noncolin"]:
            extra["noncollinear"] = True
        if pseudos:
            settings["pseudopotentials"] = pseudos
        if extra:
            settings["extra"] = extra
        self.report.settings = settings

    # ---------------------------------------------------------------- helpers
    def _struct_elem(self, cur: _Struct, path: str, tag: str, elem: ET.Element, numbers, lineno: int) -> None:
        rel = path.split("/", 1)[1] if "/" in path else ""
        if rel == "atomic_structure/atomic_positions/atom":
            cur.labels.append(elem.get("name", ""))
            cur.positions.append(numbers(elem, 3))
        elif rel in ("atomic_structure/cell/a1", "atomic_structure/cell/a2", "atomic_structure/cell/a3"):
            cur.cell[int(tag[1]) - 1] = numbers(elem, 3)
        elif rel == "atomic_structure/crystal_positions/atom":
            raise self._err("crystal_positions in atomic_structure are not supported", lineno)
        elif rel == "total_energy/etot":
            cur.energy = numbers(elem, 1)[0]
        elif rel == "forces":
            vals = numbers(elem, None)
            if len(vals) % 3:
                raise self._err(f"forces: {len(vals)} values, not a multiple of 3", lineno)
            cur.forces = np.array(vals).reshape(-1, 3)
        elif rel == "stress":
            cur.stress = np.array(numbers(elem, 9)).reshape(3, 3)
        elif rel in ("scf_conv/convergence_achieved", "convergence_info/scf_conv/convergence_achieved"):
            cur.converged = _bool(elem.text)

    @staticmethod
    def _same(a: _Struct, b: _Struct) -> bool:
        if not (a.complete() and b.complete()) or a.labels != b.labels:
            return False
        if abs(a.energy - b.energy) > 1e-10:
            return False
        return bool(np.allclose(a.positions, b.positions, rtol=0, atol=1e-8)
                    and np.allclose(np.array(a.cell), np.array(b.cell), rtol=0, atol=1e-8))

    def _emit(self, s: _Struct, keep: bool, is_output: bool = False) -> Iterator[Frame]:
        if not s.complete():
            self.report.drop("incomplete-step")
            self.report.warn(f"{'output' if is_output else f'step {s.n_step}'}: no structure or energy")
            return
        converged = True if s.converged is None else s.converged
        if not converged and not keep:
            self.report.drop("scf-unconverged")
            return
        nat = len(s.labels)
        try:
            numbers = [qe.atomic_number(qe.element_from_label(lbl)) for lbl in s.labels]
        except ValueError as err:
            raise self._err(f"cannot tell the element of atom label {err}", None) from None
        forces = None
        if s.forces is not None:
            if s.forces.shape != (nat, 3):
                raise self._err(f"forces for {s.forces.shape[0]} atoms, structure has {nat}", None)
            forces = s.forces * qe.HA_BOHR_TO_EV_ANG
        stress = None if s.stress is None else -s.stress * qe.HA_BOHR3_TO_EV_ANG3
        step = (s.n_step - 1) if s.n_step else 0
        yield Frame(
            numbers=numbers,
            positions=np.array(s.positions) * qe.BOHR_ANGSTROM,
            cell=np.array(s.cell) * qe.BOHR_ANGSTROM,
            pbc=[True, True, True],
            energy=s.energy * qe.HARTREE_EV,
            forces=forces,
            stress=stress,
            converged=converged,
            info={"step": step, "source": "output" if is_output else "step"},
        )
