"""Per-frame training labels of spec 1.1 (§4.1): ``config_type``, ``set``, ``config_weight``.

MACE and GAP select and weight configurations by ``config_type`` and
``config_weight``; n2p2 splits by ``set=train|test``.  They travel in
``Frame.info`` under those keys and are stored as optional per-frame arrays:
the two text labels as fixed-width, NUL-padded UTF-8 byte rows (uint8), so a
shard or a subset is self-contained (no lookup table to keep in step) and C or
Fortran reads them as a ``char`` array; the weight as float64 (NaN = unknown).
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import numpy as np

from mlds.errors import FormatError

# info key -> row width in bytes (spec §4.1)
TEXT_LABELS: dict[str, int] = {"config_type": 64, "set": 16}
NUMBER_LABELS: tuple[str, ...] = ("config_weight",)
NAMES: tuple[str, ...] = (*TEXT_LABELS, *NUMBER_LABELS)


def encode(values: Iterable[Any], width: int, key: str) -> np.ndarray:
    """Rows of NUL-padded UTF-8 (an all-zero row for ``None``)."""
    values = list(values)
    out = np.zeros((len(values), width), dtype=np.uint8)
    for i, v in enumerate(values):
        if v is None:
            continue
        raw = str(v).encode("utf-8")
        if not raw or b"\0" in raw or len(raw) > width:
            raise FormatError(None, f"frame label {key}={v!r} must be 1 to {width} bytes of UTF-8 text without NUL")
        out[i, : len(raw)] = np.frombuffer(raw, dtype=np.uint8)
    return out


def decode(row: np.ndarray) -> str | None:
    """The text of one row (``None`` for an all-zero row)."""
    # tobytes: a frame read decodes a row per text label, and this is 10x cheaper than bytes(array)
    raw = (row.tobytes() if isinstance(row, np.ndarray) and row.dtype == np.uint8
           else bytes(np.asarray(row, dtype=np.uint8))).rstrip(b"\0")
    return raw.decode("utf-8", "replace") if raw else None


def row_problem(row: np.ndarray) -> str | None:
    """Why a stored row breaks §4.1 (text, then only NUL padding), or None."""
    raw = bytes(np.asarray(row, dtype=np.uint8))
    text = raw.rstrip(b"\0")
    if b"\0" in text:
        return "NUL inside the text"
    try:
        text.decode("utf-8")
    except UnicodeDecodeError:
        return "not UTF-8"
    return None


def columns(frames: list[Any]) -> dict[str, np.ndarray]:
    """Label columns for a batch of frames: only the labels some frame carries."""
    cols: dict[str, np.ndarray] = {}
    for key, width in TEXT_LABELS.items():
        values = [f.info.get(key) for f in frames]
        if any(v is not None for v in values):
            cols[key] = encode(values, width, key)
    for key in NUMBER_LABELS:
        values = [f.info.get(key) for f in frames]
        if any(v is not None for v in values):
            cols[key] = np.array([math.nan if v is None else float(v) for v in values], dtype=np.float64)
    return cols


def info_value(key: str, value: Any) -> Any:
    """A stored value as it goes into ``Frame.info`` (``None``: not set for this frame)."""
    if key in TEXT_LABELS:
        return decode(value)
    v = float(value)
    return None if math.isnan(v) else v
