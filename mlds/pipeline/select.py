"""Which frames a pipeline keeps (a range, an element set) and how it tags a train/test split."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

from mlds.errors import OptionError


@dataclass
class Selection:
    """Which frames of the input stream to keep (indices count every input frame, from 0)."""

    frames: str | None = None          # "0:100,150,200:400:2"
    elements: Iterable[str] | None = None  # keep frames made only of these elements
    labels: Iterable[str] | None = None    # "set=test", "config_type=bulk": frame labels that must match

    def __post_init__(self) -> None:
        self._ranges = _parse_ranges(self.frames) if self.frames else None
        self._allowed = _element_numbers(self.elements) if self.elements else None
        self._labels = _parse_labels(self.labels) if self.labels else None
        self.last = None if self._ranges is None or any(r.stop is None for r in self._ranges) else \
            max(r.stop for r in self._ranges) - 1

    @property
    def active(self) -> bool:
        return self._ranges is not None or self._allowed is not None or self._labels is not None

    def labels_match(self, frame: Any) -> bool:
        """Checked after ``--test-fraction`` tagging, so ``--label set=test`` picks the test split."""
        return self._labels is None or all(str(frame.info.get(k)) == v for k, v in self._labels.items())

    def keeps(self, index: int, frame: Any) -> bool:
        if self._ranges is not None and not any(_in_range(index, r) for r in self._ranges):
            return False
        if self._allowed is not None and not set(frame.numbers.tolist()) <= self._allowed:
            return False
        return True


def _parse_labels(items: Iterable[str]) -> dict[str, str]:
    from mlds.format.labels import NAMES

    out = {}
    for item in items:
        key, sep, value = str(item).partition("=")
        if not sep or key not in NAMES:
            raise OptionError(f"--label {item!r}: write KEY=VALUE with KEY one of {', '.join(NAMES)}")
        out[key] = value
    return out


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
            raise OptionError(f"--frames: {part!r} is not an index or a range like 0:100 or 0:100:5") from None
        if (s.start or 0) < 0 or (s.stop is not None and s.stop < 0) or (s.step is not None and s.step <= 0):
            raise OptionError(f"--frames: {part!r}: indices count from 0 and steps are positive")
        out.append(s)
    return out


def _in_range(i: int, s: slice) -> bool:
    start, step = s.start or 0, s.step or 1
    return i >= start and (s.stop is None or i < s.stop) and (i - start) % step == 0


def _element_numbers(elements: Iterable[str]) -> set[int]:
    from mlds.elements import atomic_numbers

    out = set()
    for item in elements:
        for sym in str(item).replace(",", " ").split():
            if sym not in atomic_numbers:
                raise OptionError(f"--elements: {sym!r} is not an element symbol")
            out.add(atomic_numbers[sym])
    return out


def split_tagger(test_fraction: float | None, seed: int) -> Callable[[Any], bool] | None:
    if test_fraction is None:
        return None
    if not 0.0 <= test_fraction <= 1.0:
        raise OptionError(f"--test-fraction must be between 0 and 1, not {test_fraction}")
    import numpy as np

    rng = np.random.default_rng(seed)

    def tag(frame: Any) -> bool:
        test = bool(rng.random() < test_fraction)
        frame.info["set"] = "test" if test else "train"
        return test

    return tag
