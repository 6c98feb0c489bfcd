"""Hypothesis strategies for random frames: periodic or not, any cell handedness, optional values."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

import mlds

finite = st.floats(allow_nan=False, allow_infinity=False, width=64, min_value=-1e6, max_value=1e6)


@st.composite
def frames(draw, *, max_atoms: int = 6, with_optional: bool = True) -> mlds.Frame:
    n = draw(st.integers(1, max_atoms))
    numbers = draw(st.lists(st.integers(1, 118), min_size=n, max_size=n))
    positions = np.array(draw(st.lists(finite, min_size=3 * n, max_size=3 * n))).reshape(n, 3)
    periodic = draw(st.booleans())
    if periodic:
        cell = np.array(draw(st.lists(st.floats(-20, 20, allow_nan=False, width=64), min_size=9, max_size=9))).reshape(3, 3)
        # keep cells non-degenerate; left-handed ones (det < 0) stay allowed
        cell = cell + np.diag([draw(st.sampled_from([-1, 1])) * 30.0, 30.0, 30.0])
        pbc = [True, True, True]
    else:
        cell = np.zeros((3, 3))
        pbc = [False, False, False]
    kw = {}
    if with_optional:
        if draw(st.booleans()):
            kw["forces"] = np.array(draw(st.lists(finite, min_size=3 * n, max_size=3 * n))).reshape(n, 3)
        if periodic and draw(st.booleans()):
            s = np.array(draw(st.lists(finite, min_size=9, max_size=9))).reshape(3, 3)
            kw["stress"] = np.triu(s) + np.triu(s, 1).T  # stress tensors are symmetric
        if draw(st.booleans()):
            kw["energy_sigma0"] = draw(finite)
        if draw(st.booleans()):
            kw["charges"] = np.array(draw(st.lists(finite, min_size=n, max_size=n)))
    energy = draw(st.one_of(finite, st.just(float("nan"))))
    return mlds.Frame(numbers=numbers, positions=positions, cell=cell, pbc=pbc, energy=energy, **kw)


def assert_frames_equal(a: mlds.Frame, b: mlds.Frame, *, optional: tuple[str, ...] = ("forces", "stress", "charges")) -> None:
    """Bit-exact equality; an absent optional value equals an all-NaN one (the spec's missing value)."""
    np.testing.assert_array_equal(a.numbers, b.numbers)
    np.testing.assert_array_equal(a.positions, b.positions)
    assert list(a.pbc) == list(b.pbc)
    if a.pbc.any():
        np.testing.assert_array_equal(a.cell, b.cell)
    np.testing.assert_array_equal(np.float64(a.energy), np.float64(b.energy))
    for name in optional:
        va, vb = getattr(a, name), getattr(b, name)
        if va is None or vb is None:
            other = vb if va is None else va
            assert other is None or np.isnan(other).all(), name
        else:
            np.testing.assert_array_equal(va, vb, err_msg=name)
