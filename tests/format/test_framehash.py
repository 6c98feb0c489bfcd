"""The frame content hash (spec §16): equal for the same configuration, different for any change."""

from __future__ import annotations

import hashlib
import struct

import numpy as np
import pytest

import mlds
from mlds.format.frame import Frame
from mlds.format.framehash import dataset_hashes, duplicate_groups, frame_hash


def _frame(seed: int = 0, n: int = 4, **over) -> Frame:
    rng = np.random.default_rng(seed)
    fields = dict(numbers=rng.integers(1, 30, n), positions=rng.normal(size=(n, 3)), cell=np.eye(3) * 5.0,
                  pbc=[True, True, True], energy=float(rng.normal()), forces=rng.normal(size=(n, 3)),
                  stress=rng.normal(size=(3, 3)))
    fields.update(over)
    return Frame(**fields)


def _spec_bytes(f: Frame) -> str:
    """The canonical bytes written out from the spec text with struct, independently of the module."""
    def floats(a) -> bytes:
        vals = [0.0 if v == 0.0 else v for v in np.asarray(a, dtype=float).ravel()]
        return b"".join(b"\x00\x00\x00\x00\x00\x00\xf8\x7f" if v != v else struct.pack("<d", v) for v in vals)

    n = len(f.numbers)
    data = b"mlds-frame-v1\0" + struct.pack("<q", n) + bytes(int(z) for z in f.numbers)
    data += floats(f.positions) + floats(f.cell) + bytes(int(p) for p in f.pbc) + floats([f.energy])
    data += (b"F" + floats(f.forces)) if f.forces is not None and not np.isnan(f.forces).all() else b"-"
    data += (b"S" + floats(f.stress)) if f.stress is not None and not np.isnan(f.stress).all() else b"-"
    return hashlib.sha256(data).hexdigest()


def test_matches_the_spec_bytes():
    for seed in range(5):
        f = _frame(seed)
        assert frame_hash(f) == _spec_bytes(f)
    bare = _frame(7, forces=None, stress=None, pbc=[False] * 3, cell=np.zeros((3, 3)))
    assert frame_hash(bare) == _spec_bytes(bare)


def test_negative_zero_and_nan_payloads_are_canonical():
    f = _frame(1)
    g = _frame(1)
    g.positions[0, 0] = 0.0
    f.positions[0, 0] = -0.0
    assert frame_hash(f) == frame_hash(g)
    weird_nan = np.array([0x7FF0000000000123], dtype="<u8").view("<f8")[0]
    assert np.isnan(weird_nan)
    assert frame_hash(_frame(2, energy=weird_nan)) == frame_hash(_frame(2, energy=float("nan")))
    # all-missing labels count as absent
    assert frame_hash(_frame(3, forces=np.full((4, 3), np.nan))) == frame_hash(_frame(3, forces=None))
    assert frame_hash(_frame(3, stress=np.full((3, 3), np.nan))) == frame_hash(_frame(3, stress=None))


@pytest.mark.parametrize("field", ["numbers", "positions", "cell", "pbc", "energy", "forces", "stress"])
def test_any_change_changes_the_hash(field):
    base = _frame(4)
    changed = _frame(4)
    value = getattr(changed, field)
    if field == "numbers":
        value[0] = value[0] % 29 + 1
    elif field == "pbc":
        value[1] = not value[1]
    elif field == "energy":
        changed.energy = np.nextafter(value, np.inf)
    else:
        value.flat[0] = np.nextafter(value.flat[0], np.inf)
    assert frame_hash(changed) != frame_hash(base)


def test_metadata_does_not_change_the_hash():
    f, g = _frame(5), _frame(5)
    g.source, g.calculation, g.info = 3, 2, {"set": "test"}
    g.magmoms = np.ones(4)
    assert frame_hash(f) == frame_hash(g)


def test_dataset_hashes_equal_frame_hashes_and_find_duplicates(tmp_path):
    frames = [_frame(s, n=2 + s % 3) for s in range(6)] + [_frame(2, n=4)]
    frames[1].stress = None
    path = tmp_path / "d.h5"
    mlds.write(path, frames)
    with mlds.open(path) as ds:
        got = dataset_hashes(ds)
        assert got == [frame_hash(ds[i]) for i in range(len(ds))]
        assert got[2:5] == dataset_hashes(ds, 2, 5)
    assert got == [frame_hash(f) for f in frames]
    assert duplicate_groups(got) == [[2, 6]]


def test_edge_values_match_the_spec_bytes():
    """-0.0, NaN payloads, infinities, overflowing sums and partly missing labels hash as the spec
    bytes say (the module canonicalises all floats in one buffer; this checks every branch)."""
    rng = np.random.default_rng(11)
    weird_nan = np.array([0x7FF0000000000123], dtype="<u8").view("<f8")[0]
    specials = [-0.0, weird_nan, np.inf, -np.inf, 1e308]
    for trial in range(40):
        n = int(rng.integers(0, 5))
        f = _frame(trial, n=n, cell=rng.normal(size=(3, 3)), pbc=list(rng.integers(0, 2, 3).astype(bool)))
        for field in ("positions", "cell", "forces", "stress"):
            arr = getattr(f, field)
            if arr.size and rng.random() < 0.5:
                arr.flat[int(rng.integers(arr.size))] = specials[int(rng.integers(len(specials)))]
        if rng.random() < 0.3:
            f.energy = float(specials[int(rng.integers(len(specials)))])
        if rng.random() < 0.2:
            f.forces = None
        if rng.random() < 0.2:
            f.stress = np.full((3, 3), np.nan)
        assert frame_hash(f) == _spec_bytes(f), trial


def test_frame_digests_equal_frame_hash():
    """The batched hashes (convert's look-ahead) are frame_hash's bytes, or None where frame_hash must
    decide: a NaN in a frame, or a list whose frames differ in size or labels."""
    from mlds.format.framehash import frame_digests

    def plain(seed, **over):
        f = _frame(seed, **over)
        f.numbers = f.numbers.astype(np.uint8)
        return f

    for labels in ({}, {"forces": None}, {"stress": None}, {"forces": None, "stress": None}):
        frames = [plain(s, **labels) for s in range(6)]
        frames[1].positions[0, 0] = -0.0
        frames[4].positions[1, 2] = np.nan
        digests = frame_digests(frames)
        assert digests[4] is None
        assert [d for i, d in enumerate(digests) if i != 4] == \
               [bytes.fromhex(frame_hash(f)) for i, f in enumerate(frames) if i != 4]
    assert frame_digests([plain(0), plain(1, n=5)]) == [None, None]
    assert frame_digests([plain(0), plain(1, forces=None)]) == [None, None]
    assert frame_digests([plain(0)]) == [None]
