"""The frame content hash of spec §16: one identity for "the same labelled configuration".

Duplicate detection (import, add, ingest, ``info``) needs an identity that does
not depend on the container, the file a frame came from, or its metadata.  The
algorithm is fixed by the spec and named (``mlds-frame-v1``) so a stored hash
never has to be recomputed: a different algorithm would get a different name.

Canonical bytes (all little-endian, C order), hashed with SHA-256:

    b"mlds-frame-v1\\0"
    n_atoms            int64
    numbers            uint8[n]
    positions          float64[n, 3]
    cell               float64[3, 3]
    pbc                uint8[3]          (0 or 1)
    energy             float64
    b"F" + forces float64[n, 3]   or  b"-"   (absent or all missing)
    b"S" + stress float64[3, 3]   or  b"-"   (absent or all missing)

Floats are canonical: -0.0 is written as +0.0 and every NaN as the quiet NaN
0x7FF8000000000000, so the same values always give the same bytes.
"""

from __future__ import annotations

import hashlib
from typing import Any, Iterator

import numpy as np

ALGORITHM = "mlds-frame-v1"
_PREFIX = ALGORITHM.encode() + b"\0"
_QNAN = np.array([0x7FF8000000000000], dtype="<u8").view("<f8")[0]


def _label(a: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray | None:
    """A label's values, or None when absent (None, empty or all missing)."""
    if a is None or a.size == 0 or np.isnan(a).all():
        return None
    return a.reshape(shape)


def _floats(positions: Any, cell: Any, energy: float, f: np.ndarray | None, s: np.ndarray | None,
            n: int) -> np.ndarray:
    """The frame's floats in hash order, in a new array (canonicalising never touches the caller's)."""
    parts = [np.asarray(positions, dtype="<f8").reshape(3 * n), np.asarray(cell, dtype="<f8").reshape(9),
             np.asarray(energy, dtype="<f8").reshape(1)]
    if f is not None:
        parts.append(f.reshape(3 * n))
    if s is not None:
        parts.append(s.reshape(9))
    return np.concatenate(parts)


def hash_arrays(numbers: Any, positions: Any, cell: Any, pbc: Any, energy: float,
                forces: Any = None, stress: Any = None) -> str:
    """Hex digest of one frame given as arrays (spec units).

    Every float goes into one buffer canonicalised in one pass (import and dedupe call this per
    frame; five small numpy passes per array cost more than the SHA-256 itself); the NaN checks
    run only for a frame that has a NaN somewhere."""
    z = np.asarray(numbers, dtype="u1").reshape(-1)
    n = z.shape[0]
    f = None if forces is None else np.asarray(forces, dtype="<f8")
    s = None if stress is None else np.asarray(stress, dtype="<f8")
    f = None if f is not None and f.size == 0 else f
    s = None if s is not None and s.size == 0 else s
    buf = _floats(positions, cell, energy, f, s, n)
    if np.isnan(buf.max()):  # max() is NaN only when some value is
        f, s = _label(f, (n, 3)), _label(s, (3, 3))  # an all-missing label is absent
        buf = _floats(positions, cell, energy, f, s, n)
        buf[np.isnan(buf)] = _QNAN  # any NaN payload -> one bit pattern (before the add: no signalling NaN there)
    buf += 0.0  # IEEE 754: -0.0 + 0.0 == +0.0, every other value unchanged
    # bool is one byte, 0 or 1
    return _digest(n, z.tobytes(), buf, np.asarray(pbc, dtype=bool).reshape(3).tobytes(), f is not None, s is not None)


def _digest(n: int, z: bytes, buf: np.ndarray, pbc: bytes, has_forces: bool, has_stress: bool) -> str:
    """SHA-256 of the canonical bytes from the canonical float buffer (positions, cell, energy,
    then forces and stress when present) and the numbers' and pbc's bytes."""
    raw = memoryview(buf).cast("B")
    k = 24 * n + 80  # positions, cell, energy
    pieces = [_PREFIX, n.to_bytes(8, "little", signed=True), z, raw[: k - 8], pbc, raw[k - 8: k]]
    if has_forces:
        pieces += [b"F", raw[k: k + 24 * n]]
        k += 24 * n
    else:
        pieces.append(b"-")
    pieces += [b"S", raw[k:]] if has_stress else [b"-"]
    return hashlib.sha256(b"".join(pieces)).hexdigest()


def frame_hash(frame: Any) -> str:
    """Hex digest of an :class:`~mlds.format.frame.Frame`."""
    fast = _hash_plain(frame.numbers, frame.positions, frame.cell, frame.pbc, frame.energy, frame.forces,
                       frame.stress)
    if fast is not None:
        return fast
    return hash_arrays(frame.numbers, frame.positions, frame.cell, frame.pbc, frame.energy,
                       frame.forces, frame.stress)


_F8, _U1 = np.dtype("<f8"), np.dtype("u1")
_BOOL = np.dtype(bool)


def _plain(z: Any, positions: Any, cell: Any, pbc: Any, energy: Any, f: Any, s: Any, n: int) -> bool:
    """The arrays of a frame of ``n`` > 0 atoms already of the hash's dtypes and sizes (``z`` an
    ndarray), with a float energy: what _hash_plain and frame_digests take without conversions."""
    nd = np.ndarray
    n3 = 3 * n
    return bool(n and z.dtype == _U1 and type(energy) is float
                and type(positions) is nd and positions.dtype == _F8 and positions.size == n3
                and type(cell) is nd and cell.dtype == _F8 and cell.size == 9
                and type(pbc) is nd and pbc.dtype == _BOOL and pbc.size == 3
                and (f is None or (type(f) is nd and f.dtype == _F8 and f.size == n3))
                and (s is None or (type(s) is nd and s.dtype == _F8 and s.size == 9)))


def _hash_plain(z: Any, positions: Any, cell: Any, pbc: Any, energy: Any, f: Any, s: Any) -> str | None:
    """:func:`hash_arrays` for the usual frame of a reader (convert hashes every frame, issue 12):
    arrays already of the hash's dtypes and sizes, a float energy, no NaN; the same bytes in one
    concatenation with no conversions.  None for anything else (hash_arrays then decides).
    It runs once per frame: one max() as the NaN test."""
    if type(z) is not np.ndarray or z.ndim != 1 or not _plain(z, positions, cell, pbc, energy, f, s, z.shape[0]):
        return None
    n = z.shape[0]
    n3 = 3 * n
    parts = [positions.reshape(n3), cell.reshape(9), np.array((energy,))]  # (an array: a tuple costs more)
    if f is not None:
        parts.append(f.reshape(n3))
    if s is not None:
        parts.append(s.reshape(9))
    buf = np.concatenate(parts)
    m = buf.max()  # NaN only when some value is (as in hash_arrays)
    if m != m:  # a NaN somewhere: hash_arrays' careful path
        return None
    buf += 0.0  # -0.0 -> +0.0, as hash_arrays
    return _digest(n, z.tobytes(), buf, pbc.tobytes(), f is not None, s is not None)


def frame_digests(frames: list[Any]) -> list[bytes | None]:
    """``bytes.fromhex(frame_hash(f))`` for each frame of a list, computed together (convert dedupes
    every frame, issue 12; with small cells the per-frame numpy calls of frame_hash are most of it).
    Frames of one atom count with the usual dtypes (what _hash_plain takes) get their canonical
    bytes assembled in a few whole-array steps, then one SHA-256 each.  None for a frame with a NaN,
    and for every frame when the list is not uniform: the caller hashes those with frame_hash."""
    k = len(frames)
    out: list[bytes | None] = [None] * k
    if k < 2:
        return out
    f0 = frames[0]
    z0 = f0.numbers
    if type(z0) is not np.ndarray or z0.ndim != 1 or not z0.shape[0]:
        return out
    n = z0.shape[0]
    n3 = 3 * n
    has_f, has_s = f0.forces is not None, f0.stress is not None
    for f in frames:  # every frame as _hash_plain wants it, and like the first one
        z, fo, st = f.numbers, f.forces, f.stress
        if not (type(z) is np.ndarray and z.shape == (n,) and (fo is None) is not has_f and (st is None) is not has_s
                and _plain(z, f.positions, f.cell, f.pbc, f.energy, fo, st, n)):
            return out
    return array_digests(
        np.concatenate([f.numbers for f in frames]).reshape(k, n),
        np.concatenate([f.positions for f in frames], axis=None).reshape(k, n3),
        np.concatenate([f.cell for f in frames], axis=None).reshape(k, 9),
        [f.energy for f in frames],
        np.concatenate([f.pbc for f in frames]).reshape(k, 3),
        np.concatenate([f.forces for f in frames], axis=None).reshape(k, n3) if has_f else None,
        np.concatenate([f.stress for f in frames], axis=None).reshape(k, 9) if has_s else None)


def array_digests(numbers: Any, positions: Any, cells: Any, energies: Any, pbc: Any, forces: Any,
                  stresses: Any) -> list[bytes | None]:
    """frame_digests of k frames of n atoms given as rows: numbers (k, n) uint8, positions (k, 3n),
    cells (k, 9), forces (k, 3n) or None and stresses (k, 9) or None as float64, pbc (k, 3) bool,
    energies k floats (FrameBatch.digests passes a reader's arrays directly).  None for a frame
    with a NaN, and for all when the dtypes are not those."""
    k, n = numbers.shape
    n3 = 3 * n
    out: list[bytes | None] = [None] * k
    if not (k and n and numbers.dtype == _U1 and positions.dtype == _F8 and cells.dtype == _F8
            and pbc.dtype == _BOOL and (forces is None or forces.dtype == _F8)
            and (stresses is None or stresses.dtype == _F8)):
        return out
    has_f, has_s = forces is not None, stresses is not None
    # the floats of each frame in hash order, one row per frame (as _hash_plain's buffer)
    nf = n3 + 10 + (n3 if has_f else 0) + (9 if has_s else 0)
    fl = np.empty((k, nf), dtype="<f8")
    fl[:, :n3] = positions
    fl[:, n3:n3 + 9] = cells
    fl[:, n3 + 9] = energies
    if has_f:
        fl[:, n3 + 10:2 * n3 + 10] = forces
    if has_s:
        fl[:, nf - 9:] = stresses
    nan = np.isnan(fl).any(axis=1)
    fl += 0.0  # -0.0 -> +0.0, as hash_arrays
    raw = fl.view(np.uint8)
    # the canonical bytes of _digest, one row per frame
    head = _PREFIX + n.to_bytes(8, "little", signed=True)
    kf = 8 * (n3 + 9)  # positions and cell
    parts = [np.broadcast_to(np.frombuffer(head, np.uint8), (k, len(head))),
             numbers, raw[:, :kf], pbc.view(np.uint8), raw[:, kf:kf + 8]]
    kf += 8
    if has_f:
        parts += [np.full((k, 1), ord("F"), np.uint8), raw[:, kf:kf + 8 * n3]]
        kf += 8 * n3
    else:
        parts.append(np.full((k, 1), ord("-"), np.uint8))
    parts += [np.full((k, 1), ord("S"), np.uint8), raw[:, kf:]] if has_s else [np.full((k, 1), ord("-"), np.uint8)]
    rows = np.concatenate(parts, axis=1)
    sha = hashlib.sha256
    for i, (row, bad) in enumerate(zip(rows, nan.tolist())):
        if not bad:
            out[i] = sha(row).digest()
    return out


def iter_dataset_hashes(ds: Any, start: int = 0, stop: int | None = None, block: int = 4096) -> Iterator[str]:
    """Hashes of frames ``start:stop`` of a dataset, read in bulk blocks (no per-frame objects)."""
    stop = len(ds) if stop is None else stop
    has_forces, has_stress = ds.has("forces"), ds.has("stress")
    for b0 in range(start, stop, block):
        b1 = min(stop, b0 + block)
        n_atoms = ds.array("n_atoms", b0, b1)
        offsets = np.concatenate([[0], np.cumsum(n_atoms)])
        numbers = ds.array("numbers", b0, b1)
        positions = ds.array("positions", b0, b1)
        forces = ds.array("forces", b0, b1) if has_forces else None
        cell, pbc, energy = ds.array("cell", b0, b1), ds.array("pbc", b0, b1), ds.array("energy", b0, b1)
        stress = ds.array("stress", b0, b1) if has_stress else None
        for j in range(b1 - b0):
            a, b = offsets[j], offsets[j + 1]
            yield hash_arrays(numbers[a:b], positions[a:b], cell[j], pbc[j], energy[j],
                              None if forces is None else forces[a:b], None if stress is None else stress[j])


def dataset_hashes(ds: Any, start: int = 0, stop: int | None = None) -> list[str]:
    """All frame hashes of a dataset (or a range of it), in frame order."""
    return list(iter_dataset_hashes(ds, start, stop))


def duplicate_groups(hashes: list[str]) -> list[list[int]]:
    """Indices of frames sharing a hash, one list per repeated hash (first occurrence first)."""
    seen: dict[str, list[int]] = {}
    for i, h in enumerate(hashes):
        seen.setdefault(h, []).append(i)
    return [idx for idx in seen.values() if len(idx) > 1]
