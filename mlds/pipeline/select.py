"""Which frames a pipeline keeps (a range, an element set) and how it tags a train/test split."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

from mlds.errors import FormatError


@dataclass
class Selection:
    """Which frames of the input stream to keep (indices count every input frame, from 0)."""

    frames: str | None = None          # "0:100,150,200:400:2"
    elements: Iterable[str] | None = None  # keep frames made only of these elements

    def __post_init__(self) -> None:
        self._ranges = _parse_ranges(self.frames) if self.frames else None
        self._allowed = _element_numbers(self.elements) if self.elements else None
        self.last = None if self._ranges is None or any(r.stop is None for r in self._ranges) else \
            max(r.stop for r in self._ranges) - 1

    @property
    def active(self) -> bool:
        return self._ranges is not None or self._allowed is not None

    def keeps(self, index: int, frame: Any) -> bool:
        if self._ranges is not None and not any(_in_range(index, r) for r in self._ranges):
            return False
        if self._allowed is not None and not set(frame.numbers.tolist()) <= self._allowed:
            return False
        return True


def _parse_ranges(text: str) -> list[slice]:
    out = []
    for part in text.split(","):
        part = part.strip()
        try:
            if ":" in part:
                bits = [int(b) if b.strip() else None for b in part.split(":")]
                if len(bits) > 3:
                    raise ValueError
                s = slice(*bits)
            else:
                i = int(part)
                s = slice(i, i + 1)
        except ValueError:
            raise FormatError(None, f"--frames: {part!r} is not an index or a range like 0:100 or 0:100:5") from None
        if (s.start or 0) < 0 or (s.stop is not None and s.stop < 0) or (s.step is not None and s.step <= 0):
            raise FormatError(None, f"--frames: {part!r}: indices count from 0 and steps are positive")
        out.append(s)
    return out


def _in_range(i: int, s: slice) -> bool:
    start, step = s.start or 0, s.step or 1
    return i >= start and (s.stop is None or i < s.stop) and (i - start) % step == 0


def _element_numbers(elements: Iterable[str]) -> set[int]:
    from ase.data import atomic_numbers

    out = set()
    for item in elements:
        for sym in str(item).replace(",", " ").split():
            if sym not in atomic_numbers:
                raise FormatError(None, f"--elements: {sym!r} is not an element symbol")
            out.add(atomic_numbers[sym])
    return out


def split_tagger(test_fraction: float | None, seed: int) -> Callable[[Any], bool] | None:
    if test_fraction is None:
        return None
    if not 0.0 <= test_fraction <= 1.0:
        raise FormatError(None, f"--test-fraction must be between 0 and 1, not {test_fraction}")
    import numpy as np

    rng = np.random.default_rng(seed)

    def tag(frame: Any) -> bool:
        test = bool(rng.random() < test_fraction)
        frame.info["set"] = "test" if test else "train"
        return test

    return tag
