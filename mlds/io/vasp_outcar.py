"""VASP OUTCAR reader (streaming, line by line).

One :class:`Frame` per ab-initio ionic step.  Choices (formats.md §3.1):

* ``energy`` = ``free  energy   TOTEN`` (F, the energy forces/stress derive from);
  ``energy_sigma0`` = ``energy(sigma->0)``.  With vdW corrections the trailing
  ``w/o vdW`` columns are ignored (the values used include the correction,
  like the forces).
* stress from the ``in kB`` line (XX YY ZZ XY YZ ZX, pressure-like) converted
  to σ in eV/Å³ with the ASE sign: ``σ = -kB * 0.1 GPa`` (spec constants); ``None``
  for steps that print no stress.
* cell: the last ``direct lattice vectors`` block before the step's forces
  (changes per step for ISIF=3 relax and NpT MD).
* dropped steps are counted in ``report.dropped``:
  ``ml-predicted`` (VASP >= 6.3 MLFF blocks, marked ``ML FORCE on cell`` / ``TOTAL-FORCE ... (ML)`` /
  ``ML FREE ENERGIE`` / ``free  energy ML TOTEN``; their numbers are kept apart from the
  ab-initio data, so an ML block before, inside or after a DFT step never leaks into a frame),
  ``scf-unconverged`` (last ``Iteration`` index of the step
  reached NELM; kept with ``converged=False`` when ``keep_unconverged=True``),
  ``no-forces`` (NWRITE settings that omit the POSITION/TOTAL-FORCE block: without it
  there are no positions, so the step cannot be a frame), ``non-finite`` (NaN/Inf labels).
* ``info["step"]`` is the 0-based index of the energy block in the file (every
  ionic step, ab-initio or ML, kept or dropped, counts); ``info["ionic_step"]`` is
  VASP's own ionic-step counter from the ``Iteration N(M)`` lines when present.
* A file that ends inside a step (killed job) yields the complete steps before
  it and a ``report.warn``; a file with no complete step yields nothing and warns.
* A header that disagrees with itself (ions per type vs NIONS, fewer POTCARs than
  types) or a corrupt number raises ``FormatError(path, ..., line=N)``.
* Options: ``keep_unconverged=False``.  ``magmoms`` = the ``tot`` column of the last
  ``magnetization (x)`` table of the step, for collinear ISPIN=2 runs only.
* OUTCAR prints positions with 5 decimals (1e-5 Å); vasprun.xml has 8 (fractional).
"""

from __future__ import annotations

import math
import re
from bisect import bisect_left
from itertools import chain
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from mlds.elements import atomic_numbers
from mlds.errors import FormatError
from mlds.format.frame import Frame
from mlds.io import _vasp_common as vc
from mlds.io.registry import Reader, register_reader

_ITER = re.compile(r"Iteration\s*(\d+)\s*\(\s*(\d+)\s*\)")
_TOTEN = re.compile(r"TOTEN\s*=\s*(\S+)")
_SIGMA0 = re.compile(r"energy\(sigma->0\)\s*=\s*(\S+)")
_ML = re.compile(r"\bML\b")
_VERSION = re.compile(r"vasp\.(\d+\.\d+(?:\.\d+)?)")
_HEADER_KEYS = (
    "NELM", "ISPIN", "ENCUT", "EDIFF", "IBRION", "ISIF", "ISMEAR", "SIGMA", "GGA", "METAGGA", "LHFCALC",
    "HFSCREEN", "AEXX", "IVDW", "NWRITE", "PSTRESS", "LNONCOLLINEAR", "ML_LMLFF", "ML_MODE", "NSW",
    "POTIM", "LEXCH", "EDIFFG", "LASPH",
)
_HEADER_RE = re.compile(r"(?<![A-Za-z_])(" + "|".join(_HEADER_KEYS) + r")\s*=\s*([-+\w.]+)")
_EXTRA_KEYS = ("ISMEAR", "NELM", "IBRION", "ISIF", "EDIFF", "IVDW", "ISPIN", "NWRITE", "PSTRESS", "EDIFFG",
               "NSW", "POTIM", "ML_LMLFF", "ML_MODE", "LASPH")
_PBC = np.ones(3, dtype=bool)
_CHUNK = 1 << 19  # bytes per read (whole lines are appended); small enough for malloc to reuse the memory
# Every line the step parser reacts to contains one of these (see the dispatch in _parse), so all
# other lines are skipped with C-level searches.  Each entry: (needle, anchor) where anchor is
# None for a plain ``str.find`` (fast for long needles: it skips ahead by up to the needle's length)
# or (character, its index in the needle) for short needles made of common characters, which are
# found through the occurrences of that rarer character (memchr).  "Iteration" (many per step) is
# handled apart, a whole run of SCF iterations at a time.
_ITERATION = ("Iteration", ("I", 0))
# "FORCE on cell" lines are not searched: they only say whether the "in kB" line that follows is an
# MLFF one, which _stress_is_ml looks up backwards from that line (a short C-level search instead of
# a pass over every byte).  "magnetization (" lines matter only for ISPIN=2 runs.
_SCAN = (("in kB", ("k", 3)), ("TOTAL-FORCE", None), ("direct lattice vectors", None),
         ("FREE ENERGIE OF THE ION-ELECTRON SYSTEM", None))
_SCAN_SPIN = _SCAN + (("magnetization (", ("z", 7)),)
# TOTEN / energy(sigma->0) (in every SCF iteration) only matter inside an energy block
_SCAN_ENERGY_ONLY = (("TOTEN", None), ("energy(sigma->0)", None))
assert all(mk[a[1]] == a[0] for mk, a in _SCAN_SPIN + _SCAN_ENERGY_ONLY + (_ITERATION,) if a)
# a run of SCF "Iteration" lines: per line, the first match of _ITER (``\s`` without the line end,
# so that a match never leaves its line), then the rest of the line
_ITER_RUN = re.compile(r"Iteration[^\S\n]*(\d+)[^\S\n]*\([^\S\n]*(\d+)[^\S\n]*\)[^\n]*")
_TF = 2  # index of "TOTAL-FORCE" in the scan position cache of _parse (0 is "Iteration")
assert _SCAN[_TF - 1][0] == "TOTAL-FORCE"
_ZERO = np.uint8(48)
_BLOCK_ROWS = 256  # rows per matrix product: small enough that BLAS stays on one thread


def _fixed_tables(texts: list[str], nrows: int, ncols: int) -> list[np.ndarray | None]:
    """``[vc.fixed_rows(t, nrows, ncols) for t in texts]``, the same arrays (or None), computed together.

    One POSITION/TOTAL-FORCE table (84 rows) costs fixed_rows a dozen numpy passes and a matrix
    product whose fixed costs outweigh the bytes; here the tables of one chunk that share a layout
    (the first row's shape decides it, as in fixed_rows) go through those steps once.  Rows are
    checked against the same shape index, the digits get the same weights and divisors (sums of
    exact products: the same bits in any grouping), so each table comes out as fixed_rows makes it;
    anything unusual (a row shape that is not plain, non-ASCII text) sends the tables of that layout
    through fixed_rows one by one."""
    out: list[np.ndarray | None] = [None] * len(texts)
    groups: dict[tuple[bytes, int], list[int]] = {}
    for i, t in enumerate(texts):
        width = len(t) // nrows if nrows > 0 else 0
        if width and len(t) == width * nrows and t.isascii():
            groups.setdefault((t[:width].encode("ascii").translate(vc._SHAPE), ncols), []).append(i)
        else:
            out[i] = vc.fixed_rows(t, nrows, ncols)
    for key, idx in groups.items():
        width = len(key[0])
        lay = _layout(key, texts[idx[0]][:width].encode("ascii")) if len(idx) > 1 else None
        data = lay and _plain_rows(lay, "".join(texts[i] for i in idx).encode("ascii"), nrows * len(idx), width,
                                   ncols)
        if data is None:
            for i in idx:
                out[i] = vc.fixed_rows(texts[i], nrows, ncols)
        else:
            for j, i in enumerate(idx):
                out[i] = data[j * nrows:(j + 1) * nrows]
    return out


def _layout(key: tuple[bytes, int], row: bytes) -> Any:
    """fixed_rows' layout for a table whose first row is ``row`` (from its cache, made as it makes it)."""
    lay = vc._layouts.get(key, False)
    if lay is False:
        if len(vc._layouts) >= 64:
            vc._layouts.clear()
        lay = vc._layouts[key] = vc._layout(row, key[1])
    return lay


def _plain_rows(lay: Any, raw: bytes, nrows: int, width: int, ncols: int) -> np.ndarray | None:
    """fixed_rows' computation for ``raw`` (``nrows`` lines of ``width`` bytes) with the layout
    ``lay``; None when a row is not plain.  The digits' values and the row shapes (digits as '0') come
    from numpy passes instead of two bytes.translate calls."""
    a = np.frombuffer(raw, dtype=np.uint8)
    digits = a - _ZERO  # a digit's value, 10..255 for anything else
    digits *= digits < 10
    rows = (a - digits).tobytes().split(b"\n")
    if len(rows) != nrows + 1 or rows.pop():
        return None
    which = vc.shape_index(lay, rows, nrows)
    if which is None:
        return None
    values = digits.reshape(nrows, width).astype(np.float64)
    mant = np.empty((nrows, ncols))
    for i in range(0, nrows, _BLOCK_ROWS):
        np.dot(values[i:i + _BLOCK_ROWS], lay.weights, out=mant[i:i + _BLOCK_ROWS])
    mant /= lay.divisors[which]
    return mant


def _find(buf: str, needle: str, anchor: tuple[str, int] | None, pos: int) -> int:
    """``buf.find(needle, pos)``, by way of the occurrences of ``anchor`` when given."""
    if anchor is None:
        return buf.find(needle, pos)
    ch, off = anchor
    q = buf.find(ch, pos + off)
    while q >= 0:
        if buf.startswith(needle, q - off):
            return q - off
        q = buf.find(ch, q + 1)
    return -1


def _decode(raw: bytes) -> str:
    """What open(path, "r", encoding="utf-8", errors="replace") gives for whole lines: ``raw`` ends at
    a line end, so no UTF-8 sequence or "\r\n" pair is split; universal newlines as in text mode."""
    text = raw.decode("utf-8", "replace")
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


def _read_chunk(read: Any, readline: Any) -> bytes:
    """The next chunk: ``read(_CHUNK)`` completed to the end of its last line."""
    raw = read(_CHUNK)
    if raw and not raw.endswith(b"\n"):
        raw += readline()
    return raw


def _count_lines(raw: bytes) -> int:
    """Lines ended in ``raw`` (whole lines) after universal-newline translation."""
    return raw.count(b"\n") + raw.count(b"\r") - raw.count(b"\r\n")


@register_reader
class VaspOutcarReader(Reader):
    name = "vasp-outcar"
    extensions = ("OUTCAR",)
    description = "VASP OUTCAR (all ionic steps; TOTEN energy, forces, stress)"
    hashes_while_reading = True  # every byte goes through _read/_readline (SHA-256 in the same pass)

    @classmethod
    def sniff(cls, path: Path, head: bytes) -> bool:
        first = head[:4096].lstrip()
        if not first.startswith(b"vasp."):
            return False
        # an OUTCAR echoes POTCARs / INCAR early; vasprun.xml starts with '<'
        return b"POTCAR:" in head or b"INCAR:" in head or b"executed on" in head

    # ------------------------------------------------------------------ reading
    def _frames(self) -> Iterator[Frame]:
        keep_unconverged = bool(self.options.get("keep_unconverged", False))
        self.report.code = "VASP"
        with open(self.path, "rb") as fh:  # decoded per chunk in _fill (faster than a text-mode file)
            self._fh = fh
            self._buf = ""  # a chunk of whole lines; self._pos = start of the next unread line
            self._pos = 0
            self._gen = 0  # bumped on every refill (invalidates cached marker positions)
            self._extended_from = 0  # set by _extend: the old length of the buffer
            # MLFF-stress state (_stress_is_ml): where this buffer's steps begin (-1: in the header),
            # the state at that point, and the start of the last MLFF energy block's end line
            self._force_floor, self._force_carry, self._ml_reset_at = -1, False, -1
            self._chunk_byte0 = 0  # file offset of the chunk in self._buf
            self._chunk_len = 0  # its length in bytes
            self._known = (0, 0)  # (file offset of a chunk start, lines before it), for lineno
            self._tables: dict[int, tuple[int, int, np.ndarray]] = {}  # _prefetch_tables: start -> (nrows, end, rows)
            self._nions = 0  # known after the header
            self._held = b""  # the start of the next chunk (_hold_back)
            yield from self._parse(keep_unconverged)
        self._buf = ""

    # The file is read in large chunks that always end on a line boundary.  The step parser
    # never looks at most lines (SCF iterations are ~95 % of an OUTCAR): it jumps with C-level
    # ``str.find`` to the next line that contains one of the markers it reacts to.  Line numbers
    # are needed only for messages, so they are counted only when one is asked for (``lineno``).
    def _fill(self) -> bool:
        """Load the next chunk once the current one is used up; False at end of file."""
        fh = self._fh
        raw = _read_chunk(lambda n: self._read(fh, n), lambda: self._readline(fh))
        more = bool(raw)  # not yet at the end of the file
        if self._held:
            raw, self._held = self._held + raw, b""
        if more:
            raw, self._held = self._hold_back(raw)
        if self._force_floor >= 0:  # the steps have begun: carry the MLFF-stress state over
            self._force_carry = self._stress_is_ml(len(self._buf))
            self._force_floor, self._ml_reset_at = 0, -1
        self._chunk_byte0 += self._chunk_len
        self._chunk_len = len(raw)
        self._buf, self._pos = _decode(raw), 0
        self._gen += 1
        self._tables = {}
        return bool(raw)

    def _hold_back(self, raw: bytes) -> tuple[bytes, bytes]:
        """``raw`` cut before the line of its last "TOTAL-FORCE" marker when the table after that line
        is not all in it (fewer than NIONS + 2 line ends follow): (chunk, part for the next chunk).
        The table is then read whole in the next chunk, with that chunk's other tables
        (_prefetch_tables), instead of through _extend, which copies the buffer.  A chunk may end at
        any line end (the parser carries its state over), so this changes no result."""
        nions = self._nions
        q = raw.rfind(b"TOTAL-FORCE") if nions > 0 else -1
        if q < 0 or raw.count(b"\n", q) >= nions + 2:
            return raw, b""
        start = raw.rfind(b"\n", 0, q) + 1
        return (raw[:start], raw[start:]) if start > 0 else (raw, b"")

    def _stress_is_ml(self, end: int) -> bool:
        """Whether an "in kB" line starting at ``end`` belongs to an MLFF block: what the last
        "FORCE on cell" line before it says (``ML FORCE on cell``), unless an MLFF energy block ended
        after that line.  Lines are taken as the dispatch in _parse classifies them (a line with
        "Iteration" or starting with "in kB" is not a "FORCE on cell" line)."""
        buf, floor, reset = self._buf, self._force_floor, self._ml_reset_at
        q = buf.rfind("FORCE on cell", floor, end)
        while q > reset:
            start = buf.rfind("\n", floor, q) + 1 or floor
            line = buf[start:buf.find("\n", q) + 1 or len(buf)]
            if "Iteration" not in line and not line.strip().startswith("in kB"):
                return bool(_ML.search(line))
            q = buf.rfind("FORCE on cell", floor, start)
        return False if reset >= 0 else self._force_carry

    def _extend(self) -> bool:
        """Append the next chunk to the current one (a table that runs past the chunk's end is then
        read in one piece); False at end of file.  Positions in the buffer stay valid."""
        fh = self._fh
        raw = _read_chunk(lambda n: self._read(fh, n), lambda: self._readline(fh))
        if self._held:  # the bytes _hold_back kept for the next chunk come first
            raw, self._held = self._held + raw, b""
        if not raw:
            return False
        self._chunk_len += len(raw)
        if not self._extended_from:  # needles not found before here may be in the new part
            self._extended_from = len(self._buf)
        self._buf += _decode(raw)
        return True

    @property
    def lineno(self) -> int:
        """Number of lines before self._pos (= 1-based number of the last line read)."""
        return self._line_at(self._chunk_byte0, self._pos)

    def _line_at(self, byte0: int, pos: int) -> int:
        """Lines before position ``pos`` of the chunk that starts at file offset ``byte0`` (that chunk
        is read again when it is not the current one).  Only for messages: it rereads the file."""
        known_byte, known_lines = self._known
        if byte0 < known_byte:
            known_byte, known_lines = 0, 0
        with open(self.path, "rb") as fh:
            fh.seek(known_byte)
            while known_byte < byte0:
                block = fh.read(min(1 << 22, byte0 - known_byte))
                if not block:
                    break
                if block.endswith(b"\r") and fh.read(1) == b"\n":  # a "\r\n" across the blocks
                    block += b"\n"
                else:
                    fh.seek(known_byte + len(block))
                known_lines += _count_lines(block)
                known_byte += len(block)
            self._known = (known_byte, known_lines)
            if byte0 == self._chunk_byte0:
                text = self._buf
            else:  # an earlier buffer: its chunk (and the chunks _extend appended, up to pos) again
                fh.seek(byte0)
                text = _decode(_read_chunk(fh.read, fh.readline))
                while len(text) < pos:
                    more = _read_chunk(fh.read, fh.readline)
                    if not more:
                        break
                    text += _decode(more)
        return known_lines + text.count("\n", 0, pos)

    def _next(self) -> str | None:
        buf, pos = self._buf, self._pos
        if pos >= len(buf):
            if not self._fill():
                return None
            buf, pos = self._buf, 0
        end = buf.find("\n", pos) + 1 or len(buf)
        self._pos = end
        return buf[pos:end]

    def _unread(self, line: str) -> None:
        """Push back the line just returned by ``_next`` (it is still in the buffer)."""
        self._pos -= len(line)

    def _err(self, msg: str, line: int | None = None) -> FormatError:
        return FormatError(self.path, msg, line=self.lineno if line is None else line)

    def _parse(self, keep_unconverged: bool) -> Iterator[Frame]:
        hdr = self._read_header()
        if hdr is None:
            return
        numbers, nions, nelm = hdr
        self._nions = nions
        ispin2 = self.report.settings.get("spin_polarized", False)
        scan_energy = (_SCAN_SPIN if ispin2 else _SCAN) + _SCAN_ENERGY_ONLY
        # (index in nxt, needle, anchor) of the needles searched outside / inside an energy block
        scan_energy = tuple((k, mk, anchor) for k, (mk, anchor) in enumerate(scan_energy, 1))
        scan = scan_energy[:len(scan_energy) - len(_SCAN_ENERGY_ONLY)]
        self._force_floor = self._pos

        cell: np.ndarray | None = self._initial_cell
        step = 0
        pend = _Pending()
        # MLFF blocks (VASP >= 6.3 on-the-fly) are kept apart from the ab-initio data: every
        # ML-marked line ("ML FORCE on cell", "TOTAL-FORCE ... (ML)", "ML FREE ENERGIE",
        # "free  energy ML TOTEN") only feeds ``ml_*`` state, so an ML block printed before,
        # after or instead of a DFT step can never leak into a frame.
        energy_block: str | None = None  # None, "dft" or "ml": inside a FREE ENERGIE block
        ml_energy: float | None = None
        energy_at = (0, 0)  # (chunk, position) of the TOTEN line, for a message's line number
        line_no = lambda: self.lineno  # noqa: E731  (counted only when a message needs it)
        # next position of "Iteration" (index 0) and of each scan_energy needle in the current chunk
        # (valid while gen == self._gen); every line the dispatch below reacts to contains one of
        # them, all others are no-ops.
        nxt = [-1] * (len(scan_energy) + 1)
        gen = -1
        # _prefetch_tables: for chunk tables_gen, the "TOTAL-FORCE" positions from a table start up to tables_to
        tables_gen, tf_found, tables_to = -1, [], 0
        while True:
            # ---- jump to the next line holding a marker
            buf, pos = self._buf, self._pos
            if self._extended_from:  # the buffer grew (_extend): "not found" is no longer sure
                old_n, self._extended_from = self._extended_from, 0
                nxt = [-1 if q >= old_n else q for q in nxt]
            if gen != self._gen:
                gen = self._gen
                nxt = [-1] * len(nxt)
            n = len(buf)
            best = n
            for k, mk, anchor in scan_energy if energy_block is not None else scan:
                q = nxt[k]
                if q < pos:
                    q = buf.find(mk, pos) if anchor is None else _find(buf, mk, anchor, pos)
                    if q < 0:
                        q = n
                    nxt[k] = q
                if q < best:
                    best = q
            it = nxt[0]
            if it < pos:
                it = _find(buf, *_ITERATION, pos)
                nxt[0] = it = n if it < 0 else it
            if it < best:
                # a run of SCF "Iteration" lines (and the lines between them) before the next other
                # marker: they only update pend (no error is possible), so take them in one go, from
                # the line of the first to the end of the line of the last
                ls = buf.rfind("\n", pos, it) + 1 or pos
                end = buf.find("\n", buf.rfind("Iteration", it, best)) + 1 or n
                found = _ITER_RUN.findall(buf, ls, end)
                if found:
                    pend.ionic = int(found[-1][0])
                    scf = max(map(int, [s for _, s in found]))
                    if scf > pend.scf_max:
                        pend.scf_max = scf
                    pend.started = True
                self._pos = end
                continue
            if best >= n:  # nothing more in this chunk
                self._pos = n
                if not self._fill():
                    break
                continue
            self._pos = line_at = buf.rfind("\n", pos, best) + 1 or pos
            line = self._next()
            # ---- the same per-line dispatch as a plain line-by-line loop
            if "Iteration" in line:
                m = _ITER.search(line)
                if m:
                    pend.ionic = int(m.group(1))
                    pend.scf_max = max(pend.scf_max, int(m.group(2)))
                    pend.started = True
                continue
            s = line.strip()
            if s.startswith("in kB"):
                kb = vc.parse_floats(s[5:], 6, self.path, line_no, "'in kB' stress line")
                if not self._stress_is_ml(line_at):
                    pend.stress_kb = kb
                    pend.started = True
            elif "FORCE on cell" in line:
                pass  # read back by _stress_is_ml when the "in kB" line comes
            elif "direct lattice vectors" in line:
                rows = self._three_rows()  # the usual block; else line by line, as careful as before
                if rows is None:
                    rows = []
                    for _ in range(3):
                        ln = self._next()
                        if ln is None:
                            self._warn_truncated(step, "lattice vectors")
                            return
                        rows.append(vc.parse_floats(ln, 3, self.path, line_no, "lattice vector"))
                cell = np.array(rows)
            elif "TOTAL-FORCE" in line:
                ml_block = "(ML)" in line
                if self._next() is None:  # dashes
                    self._warn_truncated(step, "forces")
                    return
                if tables_gen != self._gen or self._pos >= tables_to:  # the first table of this chunk (or part)
                    tables_gen = self._gen
                    tf_found, tables_to = self._prefetch_tables(nions)
                data = self._rows_fast(nions, 6)
                finite = data is not None and self._plain
                if data is None:  # a row the fast path cannot take: careful parse, row by row
                    data = np.empty((nions, 6))
                    for i in range(nions):
                        ln = self._next()
                        if ln is None:
                            self._warn_truncated(step, "forces")
                            return
                        if ln.lstrip().startswith("---"):
                            raise self._err(f"TOTAL-FORCE block has {i} rows, expected NIONS={nions}")
                        data[i] = vc.parse_floats(ln, 6, self.path, line_no, "POSITION/TOTAL-FORCE row")
                if not ml_block:
                    pend.positions, pend.forces, pend.table = data[:, :3], data[:, 3:], data
                    pend.finite = finite
                    pend.cell = cell
                    pend.started = True
                if tables_gen == self._gen:  # the next "TOTAL-FORCE" is known from _prefetch_tables' scan
                    i = bisect_left(tf_found, self._pos)
                    if i < len(tf_found):
                        nxt[_TF] = tf_found[i]
                    elif tables_to == len(self._buf):
                        nxt[_TF] = tables_to
            elif "magnetization (x)" in line and nions:
                pend.magmoms = self._read_magnetization(nions)
                if pend.magmoms is False:
                    self._warn_truncated(step, "magnetization")
                    return
            elif "magnetization (y)" in line:
                pend.noncollinear = True
            elif "FREE ENERGIE OF THE ION-ELECTRON SYSTEM" in line:
                energy_block = "ml" if _ML.search(line) else "dft"
                ml_energy = None
                if energy_block == "dft":
                    pend.started = True
            elif energy_block is not None and "TOTEN" in line:
                m = _TOTEN.search(line)
                if m and (energy_block == "ml" or _ML.search(line)):
                    energy_block = "ml"
                    ml_energy = self._float(m.group(1), "ML TOTEN")
                elif m and pend.energy is None:
                    pend.energy = self._float(m.group(1), "TOTEN")
                    energy_at = (self._chunk_byte0, self._pos)
                    if "w/o vdW" in line:  # vdW-corrected run (IVDW is not always echoed in the header)
                        self.report.settings.setdefault("extra", {})["vdw_correction"] = True
            elif energy_block is not None and "energy(sigma->0)" in line:
                m = _SIGMA0.search(line)
                if not m:
                    raise self._err("cannot read energy(sigma->0)")
                sigma0 = self._float(m.group(1), "energy(sigma->0)")
                if energy_block == "ml":
                    if ml_energy is not None:
                        self.report.drop("ml-predicted")
                        step += 1
                    self._ml_reset_at = line_at  # an MLFF step ends: its stress state with it
                elif pend.energy is not None:
                    pend.sigma0 = sigma0
                    frame = self._finish(pend, step, numbers, nelm, keep_unconverged, ispin2, energy_at)
                    if frame is not None:
                        yield frame
                    step += 1
                    pend = _Pending()
                energy_block = None
        if pend.started:
            self._warn_truncated(step, "energy")
        elif step == 0:
            self.report.warn(f"{self.path}: no complete ionic step in the file (run aborted or truncated); 0 frames")
            self.report.set_empty_reason("no complete ionic step: the run stopped before its first ionic step "
                                         "finished (no energy, no forces)")

    def _three_rows(self) -> list[list[float]] | None:
        """The first three numbers of each of the next three lines when they are all in the buffer and
        each starts with three numbers (what parse_floats returns for them); else None, nothing consumed."""
        buf, pos = self._buf, self._pos
        e1 = buf.find("\n", pos) + 1
        e2 = e1 and buf.find("\n", e1) + 1
        e3 = e2 and buf.find("\n", e2) + 1
        if not e3:
            return None
        try:
            rows = [[float(t) for t in toks[:3]] for toks in map(str.split, (buf[pos:e1], buf[e1:e2], buf[e2:e3]))]
        except ValueError:
            return None
        if len(rows[0]) != 3 or len(rows[1]) != 3 or len(rows[2]) != 3:
            return None
        self._pos = e3
        return rows

    def _prefetch_tables(self, nrows: int) -> tuple[list[int], int]:
        """Parse together (_fixed_tables) the POSITION/TOTAL-FORCE table that starts here and the one
        after every later "TOTAL-FORCE" line of the buffer, each as _rows_fast would cut it (``nrows``
        lines as long as its first); _rows_fast takes them from ``self._tables`` as the parser meets
        them.  Returns the positions of those "TOTAL-FORCE" lines and the buffer length searched: the
        parser's own search for that marker need not scan these bytes again."""
        buf, pos = self._buf, self._pos
        n = len(buf)
        found: list[int] = []
        starts = [pos]
        q = buf.find("TOTAL-FORCE", pos)
        while q >= 0:
            found.append(q)
            dashes = buf.find("\n", q) + 1
            start = dashes and buf.find("\n", dashes) + 1  # after the marker line and the dashes
            if start:
                starts.append(start)
            q = buf.find("TOTAL-FORCE", q + 1)
        spans, texts = [], []
        for start in starts:
            end = start + (buf.find("\n", start) + 1 - start) * nrows
            if start < end <= n:
                spans.append((start, end))
                texts.append(buf[start:end])
        if nrows > 0 and texts:
            for (start, end), data in zip(spans, _fixed_tables(texts, nrows, 6)):
                if data is not None:
                    self._tables[start] = (nrows, end, data)
        return found, n

    def _rows_fast(self, nrows: int, ncols: int) -> np.ndarray | None:
        """The next ``nrows`` lines as an (nrows, ncols) array when every line is exactly ``ncols``
        numbers (``float()`` itself converts them, so the careful parser would accept the same) and
        all lines are in the current chunk; else None with nothing consumed."""
        if nrows <= 0:
            return None
        buf, pos = self._buf, self._pos
        hit = self._tables.pop(pos, None)
        self._plain = True  # a fixed-format table (digits only: no NaN/Inf) unless the last fallback reads it
        if hit is not None and hit[0] == nrows and ncols == 6:  # parsed with the chunk's other tables
            self._pos = hit[1]
            return hit[2]
        first = buf.find("\n", pos) + 1
        if not first:
            return None
        # VASP's fixed-format table (all rows as long as the first): parsed column-wise by numpy
        end = pos + (first - pos) * nrows
        if end > len(buf) and self._extend():  # the table runs past the chunk: take the next one too
            buf = self._buf
        if end <= len(buf):
            data = vc.fixed_rows(buf[pos:end], nrows, ncols)
            if data is not None:
                self._pos = end
                return data
        # fixed-format rows: all lines about as long as the first one; slack for the odd longer one
        seg = buf[pos:pos + (first - pos + 8) * nrows + 64]
        rows = seg.split("\n", nrows)
        if len(rows) <= nrows:  # fewer than nrows line ends in the estimate (or the chunk)
            return None
        rest = rows.pop()
        toks = list(map(str.split, rows))
        if set(map(len, toks)) != {ncols}:
            return None
        try:
            data = np.array(list(map(float, chain.from_iterable(toks)))).reshape(nrows, ncols)
        except ValueError:  # glued numbers, '---' line, corrupt token
            return None
        self._pos = pos + len(seg) - len(rest)
        self._plain = False
        return data

    def _float(self, tok: str, what: str) -> float:
        try:
            return float(tok)
        except ValueError:
            raise self._err(f"corrupt number {tok!r} in {what}") from None

    def _warn_truncated(self, step: int, where: str) -> None:
        self.report.warn(
            f"{self.path}: file ends inside ionic step {step} (while reading {where}); "
            f"kept the {step} complete step(s) before it"
        )
        if step == 0:
            self.report.set_empty_reason("the file ends inside the first ionic step (job killed or still running?)")
        elif self.report.kept == 0:
            self.report.set_empty_reason(f"{self.report.default_empty_reason()}; the file ends inside ionic "
                                         f"step {step}")

    def _read_magnetization(self, nions: int):
        # "# of ion  s p d (f) tot" then a dashed line, then one row per ion; take the last column
        while True:
            ln = self._next()
            if ln is None:
                return False
            if ln.lstrip().startswith("---"):
                break
        out = np.empty(nions)
        for i in range(nions):
            ln = self._next()
            if ln is None:
                return False
            toks = ln.split()
            if not toks:
                raise self._err(f"magnetization block has {i} rows, expected {nions}")
            out[i] = self._float(toks[-1], "magnetization")
        return out

    def _finish(self, p: "_Pending", step: int, numbers, nelm, keep_unconverged, ispin2, energy_at):
        rep = self.report
        if p.positions is None:
            rep.drop("no-forces")
            return None
        converged = not (nelm is not None and p.scf_max >= nelm)
        if not converged and not keep_unconverged:
            rep.drop("scf-unconverged")
            return None
        kb = p.stress_kb
        # one check over the POSITION/TOTAL-FORCE table (positions and forces are views of it); the
        # stress is finite exactly when its 6 numbers are (they are scaled down, never overflow)
        if not (math.isfinite(p.energy) and (p.finite or np.isfinite(p.table).all())
                and (kb is None or all(map(math.isfinite, kb)))):
            rep.drop("non-finite")
            rep.warn(f"{self.path}: step {step} (line {self._line_at(*energy_at)}) has NaN/Inf energy, positions, forces or stress; dropped")
            return None
        info: dict[str, Any] = {"step": step}
        if p.ionic is not None:
            info["ionic_step"] = p.ionic
        if p.scf_max:
            info["scf_iterations"] = p.scf_max
        stress = vc.kb6_to_stress(kb) if kb is not None else None
        magmoms = p.magmoms if (ispin2 and p.magmoms is not None and not p.noncollinear) else None
        # every array already float64 (uint8 numbers) of its final shape, energies Python floats:
        # what Frame.__post_init__ would make of them, without its per-frame conversions
        return Frame._trusted(
            numbers=numbers, positions=p.positions, cell=p.cell if p.cell is not None else np.zeros((3, 3)),
            pbc=_PBC.copy(), energy=p.energy, forces=p.forces, stress=stress, energy_sigma0=p.sigma0,
            magmoms=magmoms, converged=converged, info=info,
        )

    # ------------------------------------------------------------------ header
    def _read_header(self):
        """Read up to the first SCF iteration / energy block; fill report.settings.

        Returns (numbers, nions, nelm) or None when the file ends first.
        """
        potcars: list[str] = []
        titels: list[str] = []
        vrhfin: list[str] = []
        ions_per_type: list[int] | None = None
        ipt_line = 0
        nions = None
        nions_line = 0
        version = None
        values: dict[str, str] = {}
        lexch_potcar = None
        kmesh = kshift = None
        nkpts = None
        self._initial_cell = None
        lexch_internal = None
        step_started = False
        while True:
            line = self._next()
            if line is None:
                break
            if ("Iteration" in line and _ITER.search(line)) or "FREE ENERGIE" in line or "TOTAL-FORCE" in line:
                # first step starts: rewind this line so the step parser sees it
                self._unread(line)
                step_started = True
                break
            if version is None:
                m = _VERSION.search(line)
                if m:
                    version = m.group(1)
            s = line.strip()
            if s.startswith("POTCAR:"):
                potcars.append(" ".join(s[7:].split()))
            elif s.startswith("TITEL"):
                titels.append(" ".join(s.split("=", 1)[1].split()))
            elif s.startswith("VRHFIN"):
                vrhfin.append(s.split("=", 1)[1].split(":")[0].strip())
            elif s.startswith("LEXCH") and lexch_potcar is None and "internal" not in s:
                lexch_potcar = s.split("=", 1)[1].split()[0] if "=" in s else None
            elif "ions per type" in line:
                try:
                    ipt = [int(t) for t in line.split("=", 1)[1].split()]
                except ValueError:
                    raise self._err("corrupt 'ions per type' line") from None
                if ions_per_type is None:
                    ions_per_type, ipt_line = ipt, self.lineno
                elif ipt != ions_per_type:
                    raise self._err(f"'ions per type' {ipt} disagrees with line {ipt_line} ({ions_per_type})")
            elif "NIONS =" in line and nions is None:
                # the first one: VASP <= 6.3 may print a second, garbled "Dimension of arrays" block
                # (NIONS = 3 in a 48-atom run, dpdata's outcar.longit)
                m = re.search(r"NIONS\s*=\s*(\S+)", line)
                try:
                    nions, nions_line = int(m.group(1)), self.lineno
                except (ValueError, AttributeError):
                    raise self._err("corrupt NIONS value") from None
            elif "generate k-points for:" in line:
                try:
                    kmesh = [int(t) for t in line.split(":", 1)[1].split()[:3]]
                except ValueError:
                    kmesh = None
            elif "Shift w.r.t. Gamma" in line and kmesh is not None and kshift is None:
                ln = self._next()
                if ln is not None:
                    try:
                        kshift = [float(t) for t in ln.split()[:3]]
                    except ValueError:
                        kshift = None
            elif "Following reciprocal coordinates:" in line and kmesh is not None and kshift is None:
                # no explicit shift line (VASP 5): the first generated k-point is s/N (fractional)
                self._next()  # "Coordinates   Weight"
                ln = self._next()
                try:
                    first = [float(t) for t in (ln or "").split()[:3]]
                    kshift = [round((k * n) % 1.0, 6) % 1.0 for k, n in zip(first, kmesh)]
                except ValueError:
                    kshift = None
            elif "NKPTS =" in line and nkpts is None:
                m = re.search(r"NKPTS\s*=\s*(\d+)", line)
                nkpts = int(m.group(1)) if m else None
            elif "direct lattice vectors" in line and self._initial_cell is None:
                rows = []
                for _ in range(3):
                    ln = self._next()
                    if ln is None:
                        break
                    rows.append(vc.parse_floats(ln, 3, self.path, self.lineno, "lattice vector"))
                if len(rows) == 3:
                    self._initial_cell = np.array(rows)
            elif "LEXCH" in line and "internal" in line:
                m = re.search(r"LEXCH\s*=\s*(-?\d+)", line)
                lexch_internal = int(m.group(1)) if m else None
            if "=" in line:
                for key, val in _HEADER_RE.findall(line):
                    if key == "LEXCH":
                        continue
                    values[key] = val  # later (parameter dump) overrides the INCAR echo

        if ions_per_type is None:
            if version is None and not potcars:
                raise FormatError(self.path, "not a VASP OUTCAR (no 'vasp.' version line, no POTCAR lines)", line=1)
            if step_started:
                raise FormatError(self.path, "header has no 'ions per type' line before the first ionic step",
                                  line=self.lineno + 1)
            self.report.warn(f"{self.path}: file ends before the 'ions per type' header line; 0 frames")
            self.report.set_empty_reason("the file ends inside the header: the run stopped before its first "
                                         "ionic step")
            self._fill_settings(version, values, potcars, [], lexch_potcar, lexch_internal, kmesh, kshift, nkpts)
            return None
        total = sum(ions_per_type)
        if nions is not None and nions != total:
            ions_per_type = self._complete_ion_counts(ions_per_type, nions, nions_line, ipt_line, titels, potcars,
                                                      vrhfin)
            total = nions
        ntypes = len(ions_per_type)
        # species: one TITEL per type (VASP 5).  VASP 6 prints no TITEL; its POTCAR: lines are a
        # summary list (ntypes or ntypes+1 entries, more in some VASP <= 6.3 builds) followed by one
        # line per type as each POTCAR is read: the LAST ntypes lines, which must repeat the
        # beginning of the summary.
        if titels:
            if len(titels) != ntypes:
                raise FormatError(
                    self.path, f"header disagrees with itself: {ntypes} ion types in 'ions per type' but "
                    f"{len(titels)} POTCARs (TITEL lines)", line=ipt_line)
            ppnames = titels
        else:
            if len(potcars) < 2 * ntypes or potcars[:ntypes] != potcars[-ntypes:]:
                raise FormatError(
                    self.path, f"header disagrees with itself: {ntypes} ion types in 'ions per type' but the "
                    f"POTCAR: lines {potcars} do not list {ntypes} pseudopotentials", line=ipt_line)
            ppnames = potcars[-ntypes:]
        symbols = []
        for i, name in enumerate(ppnames):
            sym = vc.element_from_potcar(name)
            if sym is None and i < len(vrhfin) and vc.is_valid_symbol(vrhfin[i]):
                sym = vrhfin[i]
            if sym is None:
                raise FormatError(self.path, f"cannot tell the element of POTCAR {name!r}", line=ipt_line)
            symbols.append(sym)
        numbers = np.repeat([atomic_numbers[s] for s in symbols], ions_per_type).astype(np.uint8)
        self._fill_settings(version, values, ppnames, symbols, lexch_potcar, lexch_internal, kmesh, kshift, nkpts)
        nelm_v = vc.to_num(values.get("NELM"))
        nelm = int(nelm_v) if isinstance(nelm_v, (int, float)) and not isinstance(nelm_v, bool) else None
        if nelm is None:
            self.report.warn(f"{self.path}: NELM not found in the header; SCF convergence cannot be checked")
        return numbers, total, nelm

    def _complete_ion_counts(self, ipt: list[int], nions: int, nions_line: int, ipt_line: int,
                             titels: list[str], potcars: list[str], vrhfin: list[str]) -> list[int]:
        """'ions per type' that does not add up to NIONS.  VASP <= 6.3 prints at most 10 counts there,
        so a run with more species (more POTCARs than counts) lacks the rest: they are taken from the
        run's POSCAR, CONTCAR or vasprun.xml beside the OUTCAR when one matches (with a warning).
        Anything else is a header that disagrees with itself: FormatError citing both lines."""
        total = sum(ipt)
        npot = _potcar_types(potcars)
        ppnames = titels if titels else potcars[-npot:] if npot else []
        if len(ppnames) <= len(ipt) or total >= nions:
            raise FormatError(
                self.path, f"header disagrees with itself: 'ions per type' {ipt} sums to {total} "
                f"but NIONS = {nions} (line {nions_line})", line=ipt_line)
        elements = [vc.element_from_potcar(n) or (vrhfin[i] if i < len(vrhfin) else None)
                    for i, n in enumerate(ppnames)]
        problems = []
        for name in ("POSCAR", "CONTCAR", "vasprun.xml"):
            beside = self.path.parent / name
            if not beside.is_file():
                continue
            try:
                symbols, counts = _species_of(beside)
            except (OSError, ValueError, FormatError) as err:
                problems.append(f"{name}: {getattr(err, 'message', err)}")
                continue
            if (len(counts) != len(ppnames) or counts[:len(ipt)] != ipt or sum(counts) != nions
                    or (symbols is not None and symbols != elements)):
                problems.append(f"{name} lists {dict(zip(symbols or elements, counts))}, which does not match")
                continue
            self.report.warn(
                f"{self.path}: 'ions per type' lists only {len(ipt)} of the {len(ppnames)} species (VASP <= 6.3 "
                f"prints at most 10); the atom counts {counts} were taken from the {name} beside it")
            return counts
        tried = f" ({'; '.join(problems)})" if problems else ""
        raise FormatError(
            self.path, f"'ions per type' lists {len(ipt)} count(s) ({total} atoms) but NIONS = {nions} (line "
            f"{nions_line}) and the POTCARs name {len(ppnames)} species: VASP <= 6.3 prints at most 10 counts "
            f"there. Put this run's POSCAR, CONTCAR or vasprun.xml beside the OUTCAR (the counts are then taken "
            f"from it), or convert its vasprun.xml instead{tried}", line=ipt_line)

    def _fill_settings(self, version, values, ppnames, symbols, lexch_potcar, lexch_internal, kmesh, kshift, nkpts):
        st: dict[str, Any] = {"code": "VASP"}
        if version:
            st["code_version"] = version
        num = {k: vc.to_num(v) for k, v in values.items()}
        func = vc.functional(values.get("GGA"), values.get("METAGGA"), vc.to_bool(values.get("LHFCALC")),
                             _f(num.get("HFSCREEN")), _f(num.get("AEXX")), ppnames, lexch_potcar, lexch_internal)
        func = vc.with_vdw(func, num.get("IVDW"))
        if func:
            st["functional"] = func
        if _f(num.get("ENCUT")) is not None:
            st["plane_wave_cutoff_eV"] = float(num["ENCUT"])
        if kmesh is not None:
            st["kpoints"] = {"mesh": kmesh, "shift": kshift if kshift is not None else [0.0, 0.0, 0.0]}
        elif nkpts is not None:
            st["kpoints"] = {"n_kpoints": nkpts}
        ismear = num.get("ISMEAR")
        sm = vc.smearing(ismear if isinstance(ismear, int) else None, _f(num.get("SIGMA")))
        if sm:
            st["smearing"] = sm
        if isinstance(num.get("ISPIN"), int):
            st["spin_polarized"] = num["ISPIN"] == 2
        if symbols:
            st["pseudopotentials"] = [{"element": e, "name": n} for e, n in zip(symbols, ppnames)]
        extra = {k: num[k] for k in _EXTRA_KEYS if k in num}
        if extra:
            st["extra"] = extra
        self.report.settings = st


def _potcar_types(potcars: list[str]) -> int:
    """Species named by VASP 6's POTCAR: lines (a summary list, then one line per species as each
    POTCAR is read, repeating the start of the summary): the largest such repeat, 0 if none."""
    for n in range(len(potcars) // 2, 0, -1):
        if potcars[:n] == potcars[-n:]:
            return n
    return 0


def _species_of(path: Path) -> tuple[list[str] | None, list[int]]:
    """(element symbols or None, atoms per species) of a POSCAR/CONTCAR or a vasprun.xml."""
    if path.name.endswith(".xml"):
        from mlds.io.vasp_xml import atom_types

        types = atom_types(path)
        return [t[1] for t in types], [t[0] for t in types]
    # POSCAR: comment, scale, 3 lattice rows, then (VASP 5) a line of symbols, then the counts.
    # Read by hand: only these two lines matter, and ASE's POSCAR reader would look for the
    # species in the OUTCAR/POTCAR being repaired when the symbols line is absent.
    with open(path, encoding="utf-8", errors="replace") as fh:
        lines = [next(fh, "") for _ in range(7)]
    first = lines[5].split()
    if first and all(t.isdigit() for t in first):
        return None, [int(t) for t in first]
    symbols = [re.match(r"[A-Za-z]*", t).group(0).capitalize() for t in first]  # "Fe_pv", "Fe/abc" -> "Fe"
    counts = lines[6].split()
    if not symbols or not all(t.isdigit() for t in counts) or len(counts) != len(symbols):
        raise ValueError("no species/counts lines (lines 6-7)")
    return symbols, [int(t) for t in counts]


def _f(v) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


class _Pending:
    """Everything seen so far for the ionic step being read."""

    __slots__ = ("started", "scf_max", "ionic", "stress_kb", "positions", "forces", "table", "finite", "cell",
                 "magmoms", "noncollinear", "energy", "sigma0")

    def __init__(self) -> None:
        self.started = False
        self.scf_max = 0
        self.ionic: int | None = None
        self.stress_kb = None
        self.positions = None
        self.forces = None
        self.table = None  # the (n, 6) POSITION/TOTAL-FORCE array positions and forces are views of
        self.finite = False  # the table is known to be finite (read as a fixed-format table of digits)
        self.cell = None
        self.magmoms = None
        self.noncollinear = False
        self.energy: float | None = None
        self.sigma0 = float("nan")
