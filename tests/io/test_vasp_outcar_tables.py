"""The OUTCAR reader parses a chunk's POSITION/TOTAL-FORCE tables together (_fixed_tables): each table
must come out exactly as fixed_rows makes it alone (the same bits, or None), whatever the mix."""

from __future__ import annotations

import numpy as np

from mlds.io._vasp_common import fixed_rows
from mlds.io.vasp_outcar import _fixed_tables
from tests.io.test_vasp_fixed_rows import _fortran_table, _outcar_table


def _same(texts: list[str], nrows: int, ncols: int) -> int:
    got = _fixed_tables(texts, nrows, ncols)
    parsed = 0
    for text, g in zip(texts, got):
        ref = fixed_rows(text, nrows, ncols)
        assert (g is None) == (ref is None), text
        if ref is not None:
            assert g.shape == ref.shape and np.array_equal(g.view(np.int64), ref.view(np.int64))
            parsed += 1
    return parsed


def test_tables_together_equal_tables_alone():
    rng = np.random.default_rng(3)
    real = _outcar_table()
    alphabet = list("0123456789-+. \neE*dx\t") + ["é"]
    texts = [real]
    for _ in range(60):  # the real table with one character replaced, deleted or inserted
        i = int(rng.integers(len(real)))
        c = alphabet[int(rng.integers(len(alphabet)))]
        op = rng.integers(3)
        texts.append(real[:i] + c + real[i + 1:] if op == 0 else real[:i] + real[i + 1:] if op == 1
                     else real[:i] + c + real[i:])
    texts += [real] * 5
    assert _same(texts, 84, 6) >= 6
    generated = [_fortran_table(rng, 84)[0] for _ in range(12)]  # other layouts, mixed with the real one
    assert _same(generated + [real] + generated[:3], 84, 6) == 16
    assert _same([real[:-1], real + "\n", ""], 84, 6) == 0
