"""A selection of a dataset's frames that reads lazily and writes out as a valid dataset.

Frames keep their ``source``/``calculation`` indices, so the view carries the
whole ``calculations`` and ``sources`` tables of its base: a file written from
it validates and tells where every frame came from.  Each source's counts are
restated for the selection (``frames_kept``, ``steps_kept``), and frames left
out are counted under ``frames_dropped["not-selected"]``, so kept + dropped
still adds up to what the reader saw.
"""

from __future__ import annotations

import copy
from typing import Any, Sequence

import numpy as np

from mlds.format import spec
from mlds.format.frame import Frame
from mlds.format.frames_api import FramesAPI

NOT_SELECTED = "not-selected"


class DatasetView(FramesAPI):
    """Frames ``index`` of ``base`` (a Dataset, store version or another view), in that order."""

    def __init__(self, base: FramesAPI, index: np.ndarray) -> None:
        if isinstance(base, DatasetView):  # a view of a view reads straight from the underlying dataset
            index = base.index[index]
            base = base.base
        self.base = base
        self.index = np.asarray(index, dtype=np.int64)
        self.index.setflags(write=False)
        self._present = set(base._present)
        self._metadata: dict[str, Any] | None = None

    def __len__(self) -> int:
        return int(self.index.size)

    @property
    def metadata(self) -> dict[str, Any]:
        """The base's metadata with each source's counts restated for the selection (module docstring)."""
        if self._metadata is None:
            self._metadata = _restate_provenance(self.base, self.index)
        return self._metadata

    @property
    def n_atoms_total(self) -> int:
        """Number of atoms over the selected frames."""
        return int(self.array("n_atoms").sum()) if len(self) else 0

    def frame(self, i: int) -> Frame:
        """Frame ``i`` of the view (frame ``index[i]`` of the base)."""
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"frame {i} out of range for a view of {n} frames")
        return self.base.frame(int(self.index[i]))

    def array(self, name: str, start: int | None = None, stop: int | None = None) -> np.ndarray:
        """Array ``name`` for view frames ``start:stop`` (``atom_offset`` counted within the view)."""
        if name not in spec.BY_NAME:
            raise KeyError(f"unknown array {name!r}; spec arrays: {', '.join(spec.BY_NAME)}")
        if name not in self._present:
            raise KeyError(f"array {name!r} is not present")
        start, stop, _ = slice(start, stop).indices(len(self))
        base_idx = self.index[start:max(start, stop)]
        if name == "atom_offset":  # offsets within the view, not the base
            counts = self.base._gather(["n_atoms"], base_idx)[0]["n_atoms"]
            first = int(self.array("n_atoms", 0, start).sum()) if start else 0
            return first + np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64) if counts.size else counts
        return self.base._gather([name], base_idx)[0][name]

    def _gather(self, names: Sequence[str], idx: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        return self.base._gather(names, self.index[idx] if idx.size else idx)

    def __repr__(self) -> str:
        return f"<mlds.DatasetView {len(self)} of {len(self.base)} frames of {self.base!r}>"


def _restate_provenance(base: FramesAPI, index: np.ndarray) -> dict[str, Any]:
    meta = copy.deepcopy(base.metadata)
    sources = meta.get("sources")
    if not isinstance(sources, list) or not sources:
        return meta
    n_src = len(sources)
    if base.has("source") and index.size:
        got, _ = base._gather(["source"] + (["source_step"] if base.has("source_step") else []), np.sort(index))
        src = got["source"]
        steps = got.get("source_step")
    else:
        src, steps = np.empty(0, dtype=np.int32), None
    valid = (src >= 0) & (src < n_src)
    kept = np.bincount(src[valid], minlength=n_src)
    for s, entry in enumerate(sources):
        if not isinstance(entry, dict):
            continue
        before = entry.get("frames_kept")
        now = int(kept[s])
        if isinstance(before, int) and before > now:
            dropped = dict(entry.get("frames_dropped") or {})
            dropped[NOT_SELECTED] = dropped.get(NOT_SELECTED, 0) + before - now
            entry["frames_dropped"] = dropped
        entry["frames_kept"] = now
        if "steps_kept" in entry:
            if steps is not None:
                mine = np.unique(steps[valid][src[valid] == s])
                entry["steps_kept"] = _ranges(mine[mine >= 0].tolist())
            else:
                del entry["steps_kept"]
    return meta


def _ranges(steps: list[int]) -> str:
    """Ascending steps as the spec's compact ``"0-9,12"`` form."""
    runs: list[list[int]] = []
    for s in steps:
        if runs and s == runs[-1][1] + 1:
            runs[-1][1] = s
        else:
            runs.append([s, s])
    return ",".join(f"{a}" if a == b else f"{a}-{b}" for a, b in runs)
