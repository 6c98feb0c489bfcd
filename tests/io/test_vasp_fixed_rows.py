"""The column-wise fixed-format table parser used for VASP's POSITION/TOTAL-FORCE blocks.

Its promise: either None (the caller's careful parser decides) or exactly what ``float()`` of
every whitespace-separated token gives.  Checked on tables cut from a real OUTCAR, on generated
Fortran-style tables and on thousands of corrupted variants of both.
"""

from __future__ import annotations

import numpy as np
import pytest

from mlds.io._vasp_common import fixed_rows
from tests.conftest import data_file as tf


def _reference(text: str, ncols: int) -> np.ndarray | None:
    """float() of each token, when every row has exactly ncols tokens that float() accepts."""
    rows = []
    for line in text.splitlines():
        toks = line.split()
        if len(toks) != ncols:
            return None
        try:
            rows.append([float(t) for t in toks])
        except ValueError:
            return None
    return np.array(rows)


def _check(text: str, nrows: int, ncols: int) -> bool:
    """fixed_rows agrees with float() bit for bit, or declines; True when it parsed."""
    got = fixed_rows(text, nrows, ncols)
    if got is None:
        return False
    ref = _reference(text, ncols)
    assert ref is not None, f"fixed_rows accepted a table float() rejects: {text!r}"
    assert got.shape == ref.shape
    assert np.array_equal(got.view(np.int64), ref.view(np.int64)), text  # bits, so -0.0 != 0.0
    return True


def _outcar_table() -> str:
    text = tf("custodian/tests/files/npt_common/OUTCAR").read_text()
    start = text.index("\n", text.index("\n", text.index("TOTAL-FORCE")) + 1) + 1
    lines = text[start:].splitlines(keepends=True)[:84]
    return "".join(lines)


def _fortran_table(rng: np.random.Generator, nrows: int) -> tuple[str, int]:
    """Rows like VASP's (3F13.5, 3X, 3F14.6), with negative zeros and large magnitudes mixed in."""
    vals = rng.normal(0, 10, (nrows, 6)) * rng.choice([1e-7, 1, 1e3], (nrows, 6))
    vals[rng.random((nrows, 6)) < 0.05] = -0.0
    rows = ["".join(f"{v:13.5f}" for v in r[:3]) + "   " + "".join(f"{v:14.6f}" for v in r[3:]) + "\n"
            for r in vals]
    return "".join(rows), 6


def test_real_outcar_table_bit_identical():
    table = _outcar_table()
    assert _check(table, 84, 6)


def test_generated_tables_bit_identical():
    rng = np.random.default_rng(1)
    for nrows in (1, 3, 84, 300, 700):  # 300/700: the block-wise matrix products
        table, ncols = _fortran_table(rng, nrows)
        assert _check(table, nrows, ncols)


def test_corrupted_tables_decline_or_agree():
    """One character replaced, deleted or inserted: never a number float() would not give."""
    rng = np.random.default_rng(2)
    tables = [(_outcar_table(), 84, 6)] + [(*_fortran_table(rng, 5), ) for _ in range(3)]
    tables = [(t, t.count("\n"), 6) for t, *_ in tables]
    alphabet = list("0123456789-+. \neE*dx\t")
    parsed = declined = 0
    for text, nrows, ncols in tables:
        for _ in range(700):
            i = int(rng.integers(len(text)))
            c = alphabet[int(rng.integers(len(alphabet)))]
            op = rng.integers(3)
            bad = text[:i] + c + text[i + 1:] if op == 0 else text[:i] + text[i + 1:] if op == 1 else text[:i] + c + text[i:]
            if _check(bad, nrows, ncols):
                parsed += 1
            else:
                declined += 1
    assert parsed and declined  # both paths were exercised


@pytest.mark.parametrize("text", [
    "   1.00000   -2.00000\n   3.00000   -4.00000\n",      # fine: 2 columns
    "   1.00000   -2.00000\n   3.00000  --4.00000\n",      # two signs
    "   1.00000   -2.00000\n   3.00000  - 4.00000\n",      # blank after the sign
    "   1.00000   -2.00000\n   3.00000 -4.000000\n",       # dot moved
    "   1.00000   -2.00000\n   3.0000-   4.00000\n",       # sign after digits
    "   1.00000   -2.00000\n   3.00000   -4.0000 \n",      # blank in the fraction
    "   1.00000   -2.00000\n   3.00000   -4.00000",        # last line without newline
    "   1.00000   -2.00000\n   3.00000   -4.0000E\n",      # exponent letter
])
def test_small_cases(text):
    rows = text.count("\n") or 1
    got = _check(text, rows, 2)
    assert got == (text == "   1.00000   -2.00000\n   3.00000   -4.00000\n")
