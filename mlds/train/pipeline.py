"""One-call workflows over prepare/run_local/finish: ``train`` here, ``evaluate`` a potential."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from mlds.train import estimate as _estimate
from mlds.train import export as _export
from mlds.train.potential import Potential, PotentialError, get, show
from mlds.train.run import TrainError, TrainRun, prepare, run_local


def train(ref: str, *, name: str | None = None, settings: Mapping[str, Any] | None = None,
          settings_file: str | os.PathLike | None = None, workdir: str | os.PathLike | None = None,
          seed: int | None = None, test_fraction: float | None = None, epochs: int | None = None,
          ranks: int | None = None, store: Any = None, register: bool = True, dry_run: bool = False,
          force: bool = False, on_line: Callable[[str], None] | None = None,
          memory_limit: int | None = None, parity_plot: bool = False,
          metadata: Mapping[str, Any] | None = None) -> Potential | TrainRun:
    """Export, train with n2p2 on this machine, check, assemble and register (``--dry-run``: the folder only)."""
    if not dry_run:
        from mlds.codes import locate

        locate("n2p2")  # a missing nnp-* program is reported before anything is written
    limit = None
    if not dry_run:
        limit = memory_limit or _estimate.available_memory() or None
    run = prepare(ref, settings=settings, settings_file=settings_file, workdir=workdir, seed=seed,
                  test_fraction=test_fraction, epochs=epochs, store=store, force=force, max_memory=limit)
    if dry_run:
        return run
    run_local(run, on_line=on_line, ranks=ranks)
    from mlds.train.finish import finish

    return finish(run.path, name=name, store=store, register=register, parity_plot=parity_plot,
                  metadata=dict(metadata or {}))


def _potential_dir(potential: str | os.PathLike | Potential, tmp: Path, store: Any) -> Potential:
    if isinstance(potential, Potential):
        if potential.path is None:
            raise PotentialError("this Potential has no local folder; use its store ref")
        return potential
    p = Path(potential)
    if p.is_dir():
        import json

        meta_file = p / "potential.json" if (p / "potential.json").is_file() else p.parent / "potential.json"
        if not meta_file.is_file():
            raise PotentialError(f"{p}: no potential.json next to the potential files")
        return Potential(json.loads(meta_file.read_text()), p)
    return get(str(potential), tmp / "potential", store=store)


def evaluate(potential: str | os.PathLike | Potential, dataset: str | None = None, *, store: Any = None,
             plot: str | os.PathLike | None = None) -> dict[str, Any]:
    """Errors of a potential (store ref, folder or :class:`Potential`) on a dataset via ``nnp-dataset``.

    Without ``dataset``: the test split of the exact dataset version it was trained on.
    """
    from mlds.io.n2p2 import n2p2_unit_factors
    from mlds.train import predict as ev

    with tempfile.TemporaryDirectory(prefix="mlds-eval-") as tmp_s:
        tmp = Path(tmp_s)
        pot = _potential_dir(potential, tmp, store)
        md = pot.metadata
        if dataset is None:
            d = md["dataset"]
            if not d.get("manifest") or not md.get("split"):
                raise PotentialError("this potential records no store version and split to evaluate on; name a dataset")
            dataset = f"{d['name']}@{d['manifest']}"
            subset = np.zeros(int(d.get("n_frames") or 0), dtype=bool)
            subset[md["split"]["test_indices"]] = True
            label = f"test split of {d['name']}@{d.get('tag') or d.get('version')}"
        else:
            subset = None
            label = dataset
        source = _export.open_source(dataset, store=store)
        try:
            extra = [e for e in source.elements if e not in md["elements"]]
            if extra:
                raise PotentialError(f"{dataset} has element(s) {', '.join(extra)} that the potential "
                                     f"({', '.join(md['elements'])}) does not cover")
            if subset is None:
                subset = np.ones(len(source.ds), dtype=bool)
            elif subset.size != len(source.ds):
                raise PotentialError(f"{dataset} has {len(source.ds)} frames, the potential's split {subset.size}")
            data = tmp / "input.data"
            _export.export(_Subset(source, subset), data, md["units"]["system"], None)
        finally:
            source.close()
        lf, ef = n2p2_unit_factors(md["units"]["system"])
        res = ev.evaluate_file(pot.path, data, energy_per_eV=ef, length_per_angstrom=lf)
        if plot is not None:
            ev.parity_plot(res, plot, title=f"{pot.ref or pot.path} on {label}")
    return {"dataset": label, **res.metrics()}


class _Subset(_export.DataSource):
    """Only the frames where ``keep`` is set (so evaluate exports one split)."""

    def __init__(self, source: _export.DataSource, keep: np.ndarray):
        super().__init__(_SubsetDataset(source.ds, keep), source.record, source.elements, source.atoms_per_element)


class _SubsetDataset:
    def __init__(self, ds: Any, keep: np.ndarray):
        self.ds, self.keep = ds, keep

    def has(self, name: str) -> bool:
        return self.ds.has(name)

    def __len__(self) -> int:
        return int(self.keep.sum())

    def iter_frames(self, **kw):
        for i, frame in enumerate(self.ds.iter_frames(**kw)):
            if self.keep[i]:
                yield frame

    def close(self) -> None:
        pass
