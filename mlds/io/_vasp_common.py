"""Helpers shared by the VASP OUTCAR and vasprun.xml readers.

Conventions (see ``/work/shared/reference/formats.md`` §3):

* VASP prints stress "pressure-like" in kB (1 kB = 0.1 GPa), i.e. ``-σ``; mlds
  stores σ in eV/Å³ with the ASE sign (positive = tensile), so
  ``σ = -(in kB) * 0.1 GPa`` with the spec's CODATA 2018 GPa (:mod:`mlds.format.spec`;
  ``ase.units.GPa`` is CODATA 2014, 8e-9 relative apart).
* OUTCAR's "in kB" line is ordered XX YY ZZ XY YZ ZX.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Sequence

import numpy as np

from mlds.elements import chemical_symbols
from mlds.errors import FormatError
from mlds.format.spec import GPA_IN_EV_PER_ANGSTROM3

KB_TO_EV_A3 = 0.1 * GPA_IN_EV_PER_ANGSTROM3  # 1 kB in eV/Å³ (the spec's constants, CODATA 2018)

_VALID_SYMBOLS = frozenset(chemical_symbols[1:])  # index 0 is the placeholder "X"
# a '-' glued to a preceding digit or '.' starts a new number (fixed-format overflow, e.g. "-12.34567-123.45678")
_GLUED_MINUS = re.compile(r"(?<=[\d.])-")


def parse_floats(text: str, n: int, path: Any, line: int | Callable[[], int] | None, what: str) -> list[float]:
    """The first ``n`` numbers of ``text``; FormatError(line=...) if they are not numbers.

    Handles Fortran fixed-format overflow where a negative number runs into
    the previous one, but nothing looser: a corrupt token is an error, never
    silently split into two numbers.  ``line`` may be a function, called only for the error.
    """
    toks = text.split()
    try:
        vals = [float(t) for t in toks[:n]]
        if len(vals) == n:
            return vals
    except ValueError:
        pass
    toks = _GLUED_MINUS.sub(" -", text).split()
    try:
        vals = [float(t) for t in toks[:n]]
    except ValueError:
        bad = next((t for t in toks[:n] if not _is_float(t)), text.strip())
        raise FormatError(path, f"corrupt number {bad!r} in {what}", line=line() if callable(line) else line) from None
    if len(vals) < n:
        raise FormatError(path, f"expected {n} numbers in {what}, found {len(vals)}",
                          line=line() if callable(line) else line)
    return vals


def _is_float(tok: str) -> bool:
    try:
        float(tok)
    except ValueError:
        return False
    return True


def kb6_to_stress(kb: Sequence[float]) -> np.ndarray:
    """OUTCAR 'in kB' (XX YY ZZ XY YZ ZX, pressure-like) -> 3x3 σ in eV/Å³, ASE sign."""
    # the products in Python (exactly numpy's -p * c, elementwise) and one array from them
    c = KB_TO_EV_A3
    xx, yy, zz, xy, yz, zx = [-v * c for v in kb]
    return np.array([[xx, xy, zx], [xy, yy, yz], [zx, yz, zz]])


def kb33_to_stress(kb: np.ndarray) -> np.ndarray:
    """vasprun 3x3 stress (kB, pressure-like) -> σ in eV/Å³, ASE sign."""
    return -np.asarray(kb, dtype=float).reshape(3, 3) * KB_TO_EV_A3


def element_from_potcar(name: str) -> str | None:
    """'PAW_PBE Sn_d 06Sep2000' -> 'Sn'; 'PAW_PBE H1.25 07Sep2000' -> 'H'; None if unknown."""
    toks = name.replace("=", " ").split()
    if not toks:
        return None
    # first token is the POTCAR family (PAW_PBE, PAW, PAW_GGA, US, NC, ...) when more than one token
    cand = toks[1] if len(toks) >= 2 else toks[0]
    m = re.match(r"([A-Z][a-z]?)", cand)
    if m and m.group(1) in _VALID_SYMBOLS:
        return m.group(1)
    m = re.match(r"([A-Z])", cand)
    if m and m.group(1) in _VALID_SYMBOLS:
        return m.group(1)
    return None


def is_valid_symbol(sym: str) -> bool:
    return sym in _VALID_SYMBOLS


def smearing(ismear: int | None, sigma: float | None) -> dict[str, Any] | None:
    """VASP ISMEAR/SIGMA -> the metadata 'smearing' object."""
    if ismear is None:
        return None
    out: dict[str, Any]
    if ismear <= -4:  # -4 tetrahedron, -5 tetrahedron with Blöchl corrections
        out = {"method": "tetrahedron"}
    elif ismear == -1:
        out = {"method": "fermi-dirac"}
    elif ismear == 0:
        out = {"method": "gaussian"}
    elif ismear > 0:
        out = {"method": "methfessel-paxton", "order": int(ismear)}
    else:  # -2 / -3: occupations fixed by the user / scanned
        out = {"method": "other"}
    if sigma is not None and out["method"] != "tetrahedron":
        out["width_eV"] = float(sigma)
    return out


_GGA_NAMES = {
    "PE": "PBE", "RP": "RPBE", "PS": "PBEsol", "91": "PW91", "AM": "AM05", "CA": "LDA", "PZ": "LDA",
    "RE": "revPBE", "B3": "B3LYP", "B5": "BLYP", "BO": "optB88", "OR": "optPBE", "MK": "optB86b",
    "ML": "vdW-DF", "CX": "vdW-DF-cx", "HL": "Hedin-Lundqvist", "LIBXC": "LIBXC",
}
_LEXCH_INTERNAL = {8: "PBE", 0: "LDA", 1: "LDA", 2: "LDA", 4: "PW91", 9: "RPBE", 10: "AM05", 14: "PBEsol"}


def functional(gga: str | None, metagga: str | None, lhfcalc: bool | None, hfscreen: float | None,
               aexx: float | None, potcar_names: Sequence[str], lexch_potcar: str | None = None,
               lexch_internal: int | None = None) -> str | None:
    """Best-effort functional name from GGA/METAGGA/LHFCALC and the POTCAR type."""
    if lhfcalc:
        a = 0.25 if aexx is None else aexx
        if hfscreen and abs(hfscreen - 0.2) < 1e-6 and abs(a - 0.25) < 1e-6:
            return "HSE06"
        if hfscreen and abs(hfscreen - 0.3) < 1e-6 and abs(a - 0.25) < 1e-6:
            return "HSE03"
        if not hfscreen and abs(a - 0.25) < 1e-6:
            return "PBE0"
        return "hybrid"
    if metagga and metagga.strip().upper() not in ("", "F", "--", "NONE", ".FALSE."):
        return metagga.strip().upper().replace("R2SCAN", "r2SCAN")
    if gga and gga.strip() not in ("", "--"):
        g = gga.strip().upper()
        return _GGA_NAMES.get(g, g)
    if lexch_potcar:
        g = lexch_potcar.strip().upper()
        if g in _GGA_NAMES:
            return _GGA_NAMES[g]
    if lexch_internal is not None and lexch_internal in _LEXCH_INTERNAL:
        return _LEXCH_INTERNAL[lexch_internal]
    for name in potcar_names:
        fam = name.split()[0].upper() if name.split() else ""
        if fam.startswith("PAW_PBE"):
            return "PBE"
        if fam in ("PAW_GGA", "US_GGA"):
            return "PW91"
        if fam in ("PAW", "US", "PAW_LDA"):
            return "LDA"
    return None


_IVDW_NAMES = {1: "D2", 10: "D2", 11: "D3", 12: "D3(BJ)", 13: "D4", 2: "TS", 20: "TS", 21: "TS-HI",
               202: "MBD", 263: "MBD", 4: "dDsC"}


def with_vdw(func: str | None, ivdw: Any) -> str | None:
    """'PBE' + IVDW=11 -> 'PBE+D3' (spec: functional names include dispersion corrections)."""
    if func is None or not isinstance(ivdw, int) or isinstance(ivdw, bool) or ivdw == 0:
        return func
    return f"{func}+{_IVDW_NAMES.get(ivdw, f'IVDW{ivdw}')}"


def kpoint_shift(style: str, mesh: Sequence[int], usershift: Sequence[float] | None) -> list[float]:
    """Shift in the spec convention k = (n + s)/N: Monkhorst-Pack adds 1/2 along even divisions."""
    base = list(usershift) if usershift is not None else [0.0, 0.0, 0.0]
    mp = style.strip().lower().startswith("m")
    return [float((b + (0.5 if mp and n % 2 == 0 else 0.0)) % 1.0) for b, n in zip(base, mesh)]


def to_bool(text: str | None) -> bool | None:
    if text is None:
        return None
    t = text.strip().upper().strip(".")
    if t in ("T", "TRUE"):
        return True
    if t in ("F", "FALSE"):
        return False
    return None


def to_num(text: str | None) -> int | float | str | None:
    """'60' -> 60, '0.1E-05' -> 1e-6, 'T' -> True, otherwise the stripped text."""
    if text is None:
        return None
    t = text.strip().rstrip(";")
    b = to_bool(t)
    if b is not None:
        return b
    try:
        return int(t)
    except ValueError:
        pass
    try:
        return float(t.replace("D", "E").replace("d", "e"))
    except ValueError:
        return t


# ---------------------------------------------------------------------------- fixed-format rows
# VASP writes numeric tables with Fortran fixed formats (``3F13.5, 3F14.6`` for POSITION/TOTAL-FORCE):
# every row has the same length and every number its decimal point in the same column.  Such a table
# is parsed column-wise with numpy: each number is ``mantissa / 10**k`` with an integer mantissa of at
# most 15 digits, and one IEEE division of two exactly representable numbers is correctly rounded,
# i.e. bit-identical to ``float(token)``.  Anything else (ragged rows, glued numbers, ``****``,
# exponents, other characters) returns None and the caller's careful parser decides.
#
# Written by hand because no library parses text tables both exactly like float() and fast: numpy's
# text parsers (fromstring, loadtxt, astype from bytes) and float() per token take 3-5x longer here,
# and in an OUTCAR reader the POSITION/TOTAL-FORCE tables are the largest part of the work.
_MAX_DIGITS = 15  # mantissas stay below 2**53, so sums of digit * 10**p are exact in float64
_SHAPE = bytes.maketrans(b"0123456789-", b" " * 11)  # keeps the columns of the dots
_SIGNS = bytes.maketrans(b"0123456789", b"0" * 10)  # a row's shape: every digit a '0', signs kept
_DIGIT_VALUE = bytes(c - 48 if 48 <= c <= 57 else 0 for c in range(256))
_BLOCK_ROWS = 256  # rows per matrix product: small enough that BLAS stays on one thread
_layouts: dict[tuple[bytes, int], Any] = {}


class _Layout:
    """Columns of one fixed-format table: where each number is, and which row shapes are plain.

    A row is plain when, for every number, the columns from the blank that separates it from what
    precedes it up to its decimal point hold blanks, at most one '-', then at least one digit
    (``" +-?0+"`` in the row's shape, where every digit is a '0'), and the columns after the point
    hold its fraction digits; blanks after the last number.  Then the number in a row is
    ``±(sum of digit * weight) / 10**fraction_digits`` with the weights of the columns, and the
    shape alone says the signs: each plain shape seen gets an index into ``divisors``.
    """

    __slots__ = ("width", "dots", "pattern", "weights", "scale", "index", "divisors")

    def __init__(self, row: bytes, ncols: int) -> None:
        self.width = width = len(row)  # with the newline
        dots = [i for i, c in enumerate(row) if c == 46]
        if len(dots) != ncols or not row.endswith(b"\n"):
            raise ValueError("not a fixed-format row")
        self.dots = dots
        self.weights = np.zeros((width, ncols))  # power of ten of each digit column, per number
        self.scale = np.empty(ncols)  # 10**(number of fraction digits)
        parts = []
        lo = 0
        for k, d in enumerate(dots):
            end = d + 1
            while end < width and 48 <= row[end] <= 57:
                end += 1
            nfrac = end - d - 1
            if nfrac == 0 or d - lo < 2 or (d - lo - 1) + nfrac > _MAX_DIGITS:
                raise ValueError("not a fixed-format row")
            for j in range(lo, end):
                if j != d:
                    self.weights[j, k] = 10.0 ** (end - 1 - j - (j < d))
            self.scale[k] = 10.0 ** nfrac
            parts.append(rb" +(-?)0+\.0{%d}" % nfrac)
            lo = end
        self.pattern = re.compile(b"".join(parts) + rb" *")
        self.index: dict[bytes, int] = {}  # plain row shape (without newline) -> row of divisors
        self.divisors = np.empty((0, ncols))  # +-10**(fraction digits) of each number, per shape

    def add(self, shape: bytes) -> bool:
        """Index ``shape`` when it is plain; False when it is not."""
        m = self.pattern.fullmatch(shape) if len(shape) == self.width - 1 else None
        if m is None or any(shape[d] != 46 for d in self.dots):
            return False
        if len(self.index) >= 4096:  # bounded; shapes come back as they are met again
            self.index.clear()
            self.divisors = self.divisors[:0]
        signs = np.array([-1.0 if g else 1.0 for g in m.groups()])
        self.index[shape] = len(self.divisors)
        self.divisors = np.vstack((self.divisors, self.scale * signs))
        return True


def _layout(row: bytes, ncols: int) -> _Layout | None:
    try:
        return _Layout(row, ncols)
    except ValueError:
        return None


def shape_index(lay: Any, rows: list[bytes], nrows: int) -> np.ndarray | None:
    """The layout's index of each row's shape (digits as '0'); None when a shape not met before
    is not a plain row of the layout."""
    index = lay.index
    try:
        return np.fromiter(map(index.__getitem__, rows), dtype=np.intp, count=nrows)
    except KeyError:  # a row shape not met before: check the new ones
        if not all(r in index or lay.add(r) for r in set(rows)):
            return None
        return np.fromiter(map(index.__getitem__, rows), dtype=np.intp, count=nrows)


def fixed_rows(text: str | bytes, nrows: int, ncols: int) -> np.ndarray | None:
    """``text`` (exactly ``nrows`` lines, each ending in a newline) as an (nrows, ncols) array when it
    is a plain fixed-format table: every row as long as the first, ``ncols`` numbers
    ``[-]digits.digits`` per row, each after at least one blank and with its decimal point in the same
    column in every row.  None otherwise (nothing is guessed; the caller's careful parser decides).

    Bit-identical to ``float()`` of each token: each number is ``mantissa / 10**k`` with an integer
    mantissa below 2**53 (a sum of exact products digit * 10**p, exact in any order), and one IEEE
    division of exactly representable numbers is correctly rounded.
    """
    if isinstance(text, str):
        try:
            raw = text.encode("ascii")
        except UnicodeEncodeError:
            return None
    else:
        raw = text  # bytes: any non-ASCII byte makes a row shape that is never plain
    n = len(raw)
    if nrows <= 0 or n % nrows:
        return None
    width = n // nrows
    key = (raw[:width].translate(_SHAPE), ncols)
    lay = _layouts.get(key, False)
    if lay is False:
        if len(_layouts) >= 64:
            _layouts.clear()
        lay = _layouts[key] = _layout(raw[:width], ncols)
    if lay is None:
        return None
    rows = raw.translate(_SIGNS).split(b"\n")
    if len(rows) != nrows + 1 or rows.pop():  # nrows lines, the last one ending the text
        return None
    which = shape_index(lay, rows, nrows)
    if which is None:
        return None
    digits = np.frombuffer(raw.translate(_DIGIT_VALUE), dtype=np.uint8).reshape(nrows, width)
    if nrows <= _BLOCK_ROWS:
        mant = digits @ lay.weights
    else:
        mant = np.empty((nrows, ncols))
        for i in range(0, nrows, _BLOCK_ROWS):
            np.matmul(digits[i:i + _BLOCK_ROWS], lay.weights, out=mant[i:i + _BLOCK_ROWS])
    # mantissa / (+-10**k): one correctly rounded division (-0.0 for a negative zero, like float())
    return mant / lay.divisors[which]
