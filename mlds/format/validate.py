"""Check a dataset against the spec: schema plus the array invariants.

Returns every problem found (as one-line strings) instead of stopping at the
first, so `mlds validate` can tell a curator everything to fix in one run.
Arrays are scanned in blocks, so validating a large file needs little memory.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from mlds.errors import FormatError, MldsError
from mlds.format import spec

BLOCK = 65536
MIN_CELL_VOLUME = 1e-6  # Å³; left-handed cells (negative determinant) are allowed


def validate_dataset(path: str | os.PathLike, *, level: str = "base") -> list[str]:
    """All problems found in the file at ``path`` (empty list: valid)."""
    from mlds.format.dataset import Dataset

    problems: list[str] = []
    try:
        ds = Dataset(path)
    except FormatError as err:
        return [err.message]
    with ds:
        c = ds._c
        problems += _check_metadata(ds.metadata, level)
        for a in spec.ARRAYS:
            if not c.has(a.key):
                continue
            shape, dtype = c.shape(a.key), c.dtype(a.key)
            want_len = len(ds) if a.group == spec.FRAMES else ds.n_atoms_total
            if shape != (want_len, *a.tail):
                problems.append(f"{a.key}: shape {shape}, expected {(want_len, *a.tail)}")
            if dtype != a.dtype:
                problems.append(f"{a.key}: dtype {dtype}, expected {a.dtype}")
            unit = c.array_attrs(a.key).get("unit")
            if unit != a.unit:
                problems.append(f"{a.key}: unit attribute {unit!r}, expected {a.unit!r}")
        attrs = ds._attrs
        if attrs.get("n_frames") not in (None, len(ds)):
            problems.append(f"root attribute n_frames={attrs.get('n_frames')} but frames/n_atoms has {len(ds)} rows")
        if attrs.get("n_atoms") not in (None, ds.n_atoms_total):
            problems.append(f"root attribute n_atoms={attrs.get('n_atoms')} but atoms/numbers has {ds.n_atoms_total} rows")
        if problems:  # shapes are wrong: the block scan below would only repeat them
            return problems
        problems += _check_arrays(ds)
    return problems


def _check_metadata(meta: Any, level: str) -> list[str]:
    from mlds.format.schema import validate_metadata  # the schema also fixes the declared units

    if not isinstance(meta, dict):
        return ["metadata: missing or not a JSON object"]
    try:
        validate_metadata(meta, level=level)
    except MldsError as err:
        return [getattr(err, "message", str(err))]
    return []


def _check_arrays(ds: Any) -> list[str]:
    out: list[str] = []
    n = len(ds)
    expected_offset = 0
    n_sources = len(ds.metadata.get("sources", []))
    n_calcs = len(ds.metadata.get("calculations", []))
    for b0 in range(0, n, BLOCK):
        b1 = min(n, b0 + BLOCK)
        counts = ds.array("n_atoms", b0, b1)
        offsets = ds.array("atom_offset", b0, b1)
        if (counts < 1).any():
            out.append(f"frames/n_atoms: frame {b0 + int(np.argmax(counts < 1))} has no atoms (n_atoms must be >= 1)")
        expect = expected_offset + np.concatenate([[0], np.cumsum(counts)[:-1]])
        bad = np.nonzero(offsets != expect)[0]
        if bad.size:
            out.append(f"frames/atom_offset: frame {b0 + int(bad[0])} has offset {int(offsets[bad[0]])}, expected {int(expect[bad[0]])}")
        expected_offset += int(counts.sum())
        cell = ds.array("cell", b0, b1)
        pbc = ds.array("pbc", b0, b1)
        if not np.isin(pbc, (0, 1)).all():
            out.append(f"frames/pbc: values other than 0/1 in frames {b0}..{b1 - 1}")
        periodic = pbc.any(axis=1)
        finite = np.isfinite(cell).all(axis=(1, 2))
        vol = np.abs(np.linalg.det(np.where(finite[:, None, None], cell, 0.0)))
        bad = np.nonzero(periodic & (~finite | (vol < MIN_CELL_VOLUME)))[0]
        if bad.size:
            out.append(f"frames/cell: periodic frame {b0 + int(bad[0])} has a degenerate or non-finite cell ({bad.size} such frames in this block)")
        numbers = ds.array("numbers", b0, b1)
        if numbers.size and ((numbers < 1) | (numbers > 118)).any():
            out.append(f"atoms/numbers: atomic number outside 1..118 in frames {b0}..{b1 - 1}")
        pos = ds.array("positions", b0, b1)
        if not np.isfinite(pos).all():
            out.append(f"atoms/positions: non-finite position in frames {b0}..{b1 - 1}")
        for name, limit in (("source", n_sources), ("calculation", n_calcs)):
            if ds.has(name):
                idx = ds.array(name, b0, b1)
                if ((idx < -1) | (idx >= limit)).any():
                    out.append(f"frames/{name}: index outside the metadata table of {limit} entries in frames {b0}..{b1 - 1}")
        if ds.has("converged") and not np.isin(ds.array("converged", b0, b1), (0, 1)).all():
            out.append(f"frames/converged: values other than 0/1 in frames {b0}..{b1 - 1}")
        if ds.has("source_step") and (ds.array("source_step", b0, b1) < -1).any():
            out.append(f"frames/source_step: values below -1 in frames {b0}..{b1 - 1}")
        out += _check_labels(ds, b0, b1)
        if ds.has("stress"):
            s = ds.array("stress", b0, b1)
            nan = np.isnan(s).reshape(len(s), -1)
            mixed = nan.any(axis=1) & ~nan.all(axis=1)
            if mixed.any():
                out.append(f"frames/stress: frame {b0 + int(np.argmax(mixed))} is partly NaN (a stress is known entirely or not at all)")
        if ds.has("forces"):
            f = ds.array("forces", b0, b1)
            nan = np.isnan(f)
            if (nan.any(axis=1) & ~nan.all(axis=1)).any():
                out.append(f"atoms/forces: a partly NaN force vector in frames {b0}..{b1 - 1}")
            if np.isinf(f).any():
                out.append(f"atoms/forces: infinite value in frames {b0}..{b1 - 1}")
    if expected_offset != ds.n_atoms_total:
        out.append(f"frames/n_atoms sums to {expected_offset} but atoms/numbers has {ds.n_atoms_total} rows")
    return out


def _check_labels(ds: Any, b0: int, b1: int) -> list[str]:
    """Spec 1.1 §4.1: text labels are UTF-8 then NUL padding; weights are >= 0 or NaN."""
    from mlds.format import labels

    out = []
    for name in labels.TEXT_LABELS:
        if ds.has(name):
            rows = ds.array(name, b0, b1)
            for j, row in enumerate(rows):
                why = labels.row_problem(row)
                if why:
                    out.append(f"frames/{name}: frame {b0 + j}: {why}")
                    break
    if ds.has("config_weight"):
        w = ds.array("config_weight", b0, b1)
        if (np.isinf(w) | (w < 0)).any():
            out.append(f"frames/config_weight: negative or infinite weight in frames {b0}..{b1 - 1}")
    return out
