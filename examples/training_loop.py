#!/usr/bin/env python
"""Feed a training loop from an mlds dataset: shuffled minibatches, worker processes, optional PyTorch.

The model is deliberately tiny (per-element reference energies plus a term in
the volume per atom, fitted by minibatch SGD in numpy) so the example runs
anywhere; what it shows is the data side a real MLIP trainer needs:

* ``ds.array(...)`` for dataset-wide statistics in one read;
* ``ds.select(...)`` for a training subset (a lazy view, no copy);
* ``ds.batch(indices)`` for a shuffled minibatch as concatenated arrays
  (``ptr``/``batch`` like PyTorch Geometric), reads sorted underneath;
* worker processes started with *spawn* that receive the dataset pickled
  (it re-opens itself lazily in each worker), prefetching batches;
* a PyTorch ``DataLoader`` doing the same, when torch is installed.

    python examples/training_loop.py                  # bundled EMT demo data
    python examples/training_loop.py data.h5 --epochs 20 --workers 2
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Iterator

import numpy as np

import mlds

BATCH_ARRAYS = ("numbers", "cell", "energy")


def demo_dataset(folder: Path) -> Path:
    """The EMT-labelled demo frames shipped with mlds, as one mlds file."""
    examples = Path(mlds.__file__).parent / "examples"
    frames = [f for src in sorted(examples.glob("*.extxyz")) for f in mlds.read_frames(src)]
    return mlds.write(folder / "demo.h5", frames, {"name": "emt-demo", "description": "EMT demo frames"})


def minibatches(n: int, batch_size: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    order = rng.permutation(n)
    for k in range(0, n, batch_size):
        yield order[k:k + batch_size]


def load_batch(ds: Any, idx: np.ndarray) -> dict[str, np.ndarray]:
    """What a worker does: one call, arrays back (a plain dict pickles cheaply)."""
    return dict(ds.batch(idx, arrays=BATCH_ARRAYS))


def features(b: dict[str, np.ndarray], elements: np.ndarray, v0: float) -> tuple[np.ndarray, np.ndarray]:
    """Per frame: element fractions and the relative volume per atom; target: energy per atom (eV)."""
    n = b["n_atoms"]
    counts = np.stack([np.bincount(b["batch"][b["numbers"] == z], minlength=len(n)) for z in elements], axis=1)
    vpa = np.abs(np.linalg.det(b["cell"])) / n
    return np.column_stack([counts / n[:, None], vpa / v0 - 1.0]), b["energy"] / n


def train(ds: Any, *, epochs: int, batch_size: int, workers: int, lr: float, seed: int) -> list[float]:
    elements = np.unique(ds.array("numbers"))          # dataset-wide statistics: one read per array
    v0 = float(np.mean(np.abs(np.linalg.det(ds.array("cell"))) / ds.array("n_atoms")))
    w = np.zeros(len(elements) + 1)
    rng = np.random.default_rng(seed)
    losses = []
    pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) if workers else None
    try:
        for epoch in range(epochs):
            batches = list(minibatches(len(ds), batch_size, rng))
            loaded = pool.map(load_batch, [ds] * len(batches), batches) if pool else (load_batch(ds, b) for b in batches)
            total, n = 0.0, 0
            for b in loaded:
                x, y = features(b, elements, v0)
                err = x @ w - y
                w -= lr * x.T @ err / len(err)
                total += float(err @ err)
                n += len(err)
            losses.append(total / n)
            print(f"epoch {epoch + 1:3d}  mean squared error {losses[-1]:.3g} (eV/atom)^2")
    finally:
        if pool:
            pool.shutdown()
    return losses


def torch_loader(ds: Any, batch_size: int, workers: int) -> None:
    """The same batches through ``torch.utils.data.DataLoader`` (spawn workers), if torch is installed."""
    try:
        import torch
        from torch.utils.data import BatchSampler, DataLoader, RandomSampler
    except ImportError:
        print("torch is not installed: skipping the DataLoader part")
        return

    class Batches(torch.utils.data.Dataset):
        def __init__(self, ds: Any) -> None:
            self.ds = ds  # pickled into each worker; re-opens lazily there

        def __len__(self) -> int:
            return len(self.ds)

        def __getitem__(self, idx: list[int]) -> dict[str, Any]:
            return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in load_batch(self.ds, np.asarray(idx)).items()}

    sampler = BatchSampler(RandomSampler(range(len(ds))), batch_size=batch_size, drop_last=False)
    loader = DataLoader(Batches(ds), sampler=sampler, batch_size=None, num_workers=workers,
                        multiprocessing_context="spawn" if workers else None)
    n = sum(int(b["n_atoms"].numel()) for b in loader)
    print(f"torch DataLoader: {n} frames in one epoch")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dataset", nargs="?", help="an mlds dataset or store ref (default: the bundled EMT demo)")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2, help="spawned worker processes loading batches (0: load in this process)")
    ap.add_argument("--lr", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        path = args.dataset or demo_dataset(Path(tmp))
        with mlds.open(path) as ds:
            train_set = ds.select(n_atoms=(1, None))  # a view; pass e.g. elements=[...] or energy_per_atom=(lo, hi)
            print(f"{ds!r}\ntraining on {len(train_set)} frames")
            losses = train(train_set, epochs=args.epochs, batch_size=args.batch_size, workers=args.workers,
                           lr=args.lr, seed=args.seed)
            torch_loader(train_set, args.batch_size, args.workers)
    print(f"loss {losses[0]:.4g} -> {losses[-1]:.4g}")
    return 0 if losses[-1] < losses[0] else 1


if __name__ == "__main__":
    sys.exit(main())
