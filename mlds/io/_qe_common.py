"""Constants and small helpers shared by the Quantum ESPRESSO readers.

Units: mlds stores Å, eV, eV/Å and eV/Å³ (ASE sign, positive = tensile).

Constants are CODATA 2018, the values QE itself uses since qe-6.6
(``Modules/constants.f90``, commit 68ea680 "Constants updated to NIST 2018").
ASE 3.29 converts every QE file with CODATA 2006 (``ase/io/espresso.py``
``create_units('2006')``); the two Rydbergs differ by 8.7e-8 relative, i.e.
2.6 meV on a -30 000 eV total energy.  The project spec fixes CODATA 2018 for
all QE files (older QE versions used slightly different constants internally,
which we cannot undo from the printed Ry values; the difference is below the
printed precision for all realistic cases).
"""

from __future__ import annotations

import re
from typing import Any

from mlds.errors import FormatError
from mlds.format.spec import BOHR_ANGSTROM, HARTREE_EV, RYDBERG_EV  # the spec's constants, CODATA 2018

RY_EV = RYDBERG_EV                      # eV per Rydberg = 13.605693122994

# derived conversions
RY_BOHR_TO_EV_ANG = RY_EV / BOHR_ANGSTROM                 # force, Ry/Bohr -> eV/Å
HA_BOHR_TO_EV_ANG = HARTREE_EV / BOHR_ANGSTROM            # force, Ha/Bohr -> eV/Å
RY_BOHR3_TO_EV_ANG3 = RY_EV / BOHR_ANGSTROM ** 3          # stress, Ry/Bohr³ -> eV/Å³
HA_BOHR3_TO_EV_ANG3 = HARTREE_EV / BOHR_ANGSTROM ** 3     # stress, Ha/Bohr³ -> eV/Å³

CODE = "Quantum ESPRESSO"

# one Fortran real: 1.0, -1., .5, 1.0E-3, 1.0d-3
_REAL = r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eEdD][-+]?\d+)?"
_REAL_RE = re.compile(_REAL)
# Fortran fixed-format fields can run together ("-0.12345678-0.12345678"):
_JOINED_RE = re.compile(r"(?:[-+]?(?:\d+\.\d*|\.\d+)(?:[eEdD][-+]?\d+)?)+")
_JOINED_ITEM_RE = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+)(?:[eEdD][-+]?\d+)?")


def to_float(tok: str, path: Any, lineno: int | None) -> float:
    try:
        return float(tok.replace("d", "e").replace("D", "E"))
    except ValueError:
        raise FormatError(path, f"not a number: {tok!r}", line=lineno) from None


def floats(text: str, n: int | None, path: Any, lineno: int | None) -> list[float]:
    """Parse whitespace-separated reals (Fortran ``D`` exponents and run-together
    fixed-width fields accepted).  Raise FormatError naming the line on any bad
    token or if the count differs from ``n``."""
    out: list[float] = []
    for tok in text.split():
        try:
            out.append(float(tok.replace("d", "e").replace("D", "E")))
            continue
        except ValueError:
            pass
        if _JOINED_RE.fullmatch(tok):
            out.extend(to_float(t, path, lineno) for t in _JOINED_ITEM_RE.findall(tok))
        else:
            raise FormatError(path, f"not a number: {tok!r}", line=lineno)
    if n is not None and len(out) != n:
        raise FormatError(path, f"expected {n} numbers, found {len(out)}: {text.strip()!r}", line=lineno)
    return out


def element_from_label(label: str) -> str:
    """QE species labels are element symbols optionally followed by digits or
    ``_``/``-`` suffixes (``Fe1``, ``Fe_up``, ``O-2``)."""
    from mlds.elements import atomic_numbers

    m = re.match(r"([A-Za-z]{1,2})", label.strip())
    if not m:
        raise ValueError(label)
    sym = m.group(1)
    cand = sym[0].upper() + sym[1:].lower()
    if cand in atomic_numbers:
        return cand
    cand = sym[0].upper()
    if cand in atomic_numbers:
        return cand
    raise ValueError(label)


def atomic_number(symbol: str) -> int:
    from mlds.elements import atomic_numbers

    return atomic_numbers[symbol]


# QE "Exchange-correlation=" short forms printed by old versions → common names
_XC_NAMES = {
    ("SLA", "PZ", "NOGX", "NOGC"): "LDA",
    ("SLA", "PW", "NOGX", "NOGC"): "LDA",
    ("SLA", "PW", "PBX", "PBC"): "PBE",
    ("SLA", "PW", "PBE", "PBE"): "PBE",
    ("SLA", "PW", "PSX", "PSC"): "PBESOL",
    ("SLA", "PW", "RPB", "PBC"): "RPBE",
    ("SLA", "PW", "PW86", "PBC"): "PW86PBE",
    ("SLA", "LYP", "B88", "BLYP"): "BLYP",
    ("SLA", "PW", "GGX", "GGC"): "PW91",
}


def functional_name(raw: str) -> str | None:
    """Name of the functional from the text after ``Exchange-correlation=``."""
    text = raw.split("(")[0].strip()
    if not text:
        return None
    words = tuple(text.upper().split())
    if len(words) >= 4 and words[:4] in _XC_NAMES:
        return _XC_NAMES[words[:4]]
    return " ".join(text.split())


SMEARING_NAMES = {
    "gaussian": "gaussian",
    "gauss": "gaussian",
    "methfessel-paxton": "methfessel-paxton",
    "m-p": "methfessel-paxton",
    "mp": "methfessel-paxton",
    "marzari-vanderbilt": "marzari-vanderbilt",
    "m-v": "marzari-vanderbilt",
    "mv": "marzari-vanderbilt",
    "cold": "marzari-vanderbilt",
    "fermi-dirac": "fermi-dirac",
    "f-d": "fermi-dirac",
    "fd": "fermi-dirac",
}


def smearing_name(raw: str) -> str:
    key = raw.strip().lower()
    return SMEARING_NAMES.get(key, "other")


def smearing_entry(raw: str, width_eV: float | None) -> dict[str, Any]:
    """spec §15: m-p -> methfessel-paxton order 1 (pw.x has no other order)."""
    out: dict[str, Any] = {"method": smearing_name(raw)}
    if out["method"] == "methfessel-paxton":
        out["order"] = 1
    if width_eV is not None:
        out["width_eV"] = width_eV
    return out


def version_from_text(text: str) -> str | None:
    """``v.6.7MaX`` -> ``6.7MaX``; ``v.6.1 (svn rev. 13591M)`` -> ``6.1``."""
    m = re.search(r"v\.?\s*(\d+(?:\.\d+)*\S*)", text)
    return m.group(1) if m else None
