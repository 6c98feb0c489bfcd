"""The training data of a run: which dataset version, the seeded split, ``input.data``.

The export streams frames in blocks (through :class:`mlds.io.n2p2.N2p2Writer`) and keeps
the split as one byte per frame, so its memory does not grow with the number of frames'
atoms and barely with the number of frames.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from mlds.errors import MldsError


class TrainDataError(MldsError):
    """The dataset cannot be trained on as asked."""


@dataclass
class DataSource:
    """An opened dataset and what identifies it exactly."""

    ds: Any
    record: dict[str, Any]         # name, tag, manifest (sha256), ref / path, n_frames
    elements: list[str]
    atoms_per_element: dict[str, int] = field(default_factory=dict)

    def close(self) -> None:
        self.ds.close()


def _looks_like_path(ref: str) -> bool:
    return os.path.exists(ref) or ref.endswith((".h5", ".hdf5", ".zarr", ".zip")) or os.sep in ref


def open_source(ref: str, store: Any = None) -> DataSource:
    """A store ref ``NAME[@TAG]`` (local store or ``store``) or an mlds dataset file."""
    from mlds.store import versions as _v

    if _looks_like_path(ref):
        import mlds
        from mlds.util import sha256_file

        path = Path(ref)
        if not path.exists():
            raise TrainDataError(f"{ref}: no such dataset file")
        ds = mlds.open(path)
        digest = sha256_file(path) if path.is_file() else None
        record = {"name": (ds.metadata or {}).get("name") or path.name.split(".")[0], "tag": None,
                  "manifest": None, "file": str(path.resolve()), "file_sha256": digest, "n_frames": len(ds)}
    else:
        from mlds.store import manifest as mf
        from mlds.store.local import local_store

        st = store if store is not None else local_store(create=False)
        name, tag = _v.parse_ref(ref)
        h = _v.resolve(st, name, tag)
        m = mf.load(st, h)
        if (m.get("kind") or "dataset") != "dataset":
            raise TrainDataError(f"{ref} is a {m.get('kind')}, not a dataset")
        ds = _v.open_ref(f"{name}@{h}", store=st)
        record = {"name": name, "tag": tag, "version": m.get("version"), "manifest": h, "store": st.name,
                  "n_frames": len(ds)}
    meta = ds.metadata or {}
    # a potential is derived from its data: it starts with the data's licence and authors
    record.update({k: meta[k] for k in ("license", "authors") if meta.get(k)})
    elements, counts = _element_counts(ds)
    return DataSource(ds, record, elements, counts)


def _element_counts(ds: Any, block: int = 65536) -> tuple[list[str], dict[str, int]]:
    from mlds.elements import chemical_symbols

    counts = np.zeros(119, dtype=np.int64)
    n = len(ds)
    for b0 in range(0, n, block):
        counts += np.bincount(ds.array("numbers", b0, min(n, b0 + block)), minlength=119)
    zs = [int(z) for z in np.nonzero(counts)[0]]
    return [chemical_symbols[z] for z in zs], {chemical_symbols[z]: int(counts[z]) for z in zs}


# ----------------------------------------------------------------- split
def split(n_frames: int, test_fraction: float, seed: int, min_test: int = 1) -> np.ndarray:
    """Boolean test mask: ``round(n * test_fraction)`` frames drawn by a seeded permutation."""
    n_test = int(np.floor(n_frames * float(test_fraction) + 0.5))
    if n_test < max(1, int(min_test)):
        raise TrainDataError(f"empty test split: {n_frames} frame(s) x test_fraction {test_fraction:g} gives "
                             f"{n_test} test frame(s); raise --test-fraction or train on more frames")
    if n_frames - n_test < 1:
        raise TrainDataError(f"no training frames left: {n_frames} frame(s) with test_fraction {test_fraction:g}")
    rng = np.random.default_rng(int(seed))
    mask = np.zeros(n_frames, dtype=bool)
    mask[rng.permutation(n_frames)[:n_test]] = True
    return mask


# ----------------------------------------------------------------- export
ATOMS_PER_BATCH = 1 << 16   # frames are read in blocks of about this many atoms: memory flat in frames


def _batch(source: DataSource) -> int:
    n = max(1, len(source.ds))
    atoms = max(1, sum(source.atoms_per_element.values()))
    return max(16, int(ATOMS_PER_BATCH * n / atoms))


def _tagged(ds: Any, mask: np.ndarray, batch: int) -> Iterator[Any]:
    for i, frame in enumerate(ds.iter_frames(batch=batch)):
        frame.info["set"] = "test" if mask[i] else "train"
        yield frame


def export(source: DataSource, path: Path, units: str, mask: np.ndarray | None) -> int:
    """Write ``input.data`` (+ units sidecar); with a test ``mask``, ``set=train|test`` on every structure."""
    from mlds.errors import FormatError
    from mlds.io.n2p2 import N2p2Writer

    check_trainable(source)
    try:
        batch = _batch(source)
        frames = source.ds.iter_frames(batch=batch) if mask is None else _tagged(source.ds, mask, batch)
        return N2p2Writer(path, units=units).write(frames)
    except FormatError as err:
        raise TrainDataError(f"{_label(source)}: {err.message}") from None


def check_trainable(source: DataSource) -> None:
    if not source.ds.has("forces"):
        raise TrainDataError(f"{_label(source)} has no forces; n2p2 training here fits energies and forces")


def _label(source: DataSource) -> str:
    r = source.record
    return r.get("file") or f"{r['name']}@{r.get('tag') or 'latest'}"


# ----------------------------------------------------------------- neighbours (for the memory estimate)
def neighbour_stats(ds: Any, cutoff: float, elements: list[str], *, block: int = 65536,
                    molecule_samples: int = 8) -> dict[str, Any]:
    """Mean neighbours within ``cutoff`` (Å) per centre and neighbour element.

    Periodic frames: number density x sphere volume, from cell, n_atoms and numbers only
    (every frame, no positions read; within 2% of the exact count on Cu2S).  Non-periodic
    frames: counted exactly on a few of them.
    """
    from mlds.elements import atomic_numbers

    zs = np.array([atomic_numbers[e] for e in elements])
    col = np.full(119, -1)
    col[zs] = np.arange(len(zs))
    ne = len(zs)
    pair = np.zeros((ne, ne))
    centres = np.zeros(ne)
    sphere = 4.0 / 3.0 * np.pi * float(cutoff) ** 3
    molecules: list[int] = []
    n = len(ds)
    for b0 in range(0, n, block):
        b1 = min(n, b0 + block)
        counts = ds.array("n_atoms", b0, b1).astype(np.int64)
        numbers = ds.array("numbers", b0, b1)
        per = np.zeros((b1 - b0, ne))
        np.add.at(per, (np.repeat(np.arange(b1 - b0), counts), col[numbers]), 1.0)
        cell = ds.array("cell", b0, b1)
        vol = np.abs(np.linalg.det(cell))
        periodic = ds.array("pbc", b0, b1).astype(bool).all(axis=1) & (vol > 0)
        p = per[periodic]
        if p.size:
            # atoms of element b in the sphere around each a-centre (periodic images included), minus the centre
            pair += np.einsum("fa,fb->ab", p, p / vol[periodic][:, None]) * sphere - np.diag(p.sum(axis=0))
            centres += p.sum(axis=0)
        molecules += [b0 + int(i) for i in np.nonzero(~periodic)[0]]
    if molecules:
        pick = [molecules[int(i)] for i in np.linspace(0, len(molecules) - 1, min(molecule_samples, len(molecules)))]
        for i in sorted(set(pick)):
            f = ds.frame(i)
            d = np.linalg.norm(f.positions[:, None, :] - f.positions[None, :, :], axis=-1)
            close = (d < cutoff) & ~np.eye(len(d), dtype=bool)
            c = col[f.numbers]
            onehot = np.eye(ne)[c]
            pair += (onehot.T @ close.astype(float) @ onehot) * (len(molecules) / len(set(pick)))
            centres += onehot.sum(axis=0) * (len(molecules) / len(set(pick)))
    per_pair = {(elements[a], elements[b]): float(pair[a, b] / centres[a])
                for a in range(ne) for b in range(ne) if centres[a] > 0}
    total = float(pair.sum() / centres.sum()) if centres.sum() else 0.0
    return {"mean_neighbours": total, "per_pair": per_pair}
