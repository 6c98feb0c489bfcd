"""Pictures that say more than a table: energy and force distributions."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

BLOCK = 65536


def plot_distributions(ds: Any, out: str | os.PathLike, *, bins: int = 60) -> Path:
    """Histograms of energy per atom and per-atom force magnitude, saved to ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epa, fmag = [], []
    for b0 in range(0, len(ds), BLOCK):
        b1 = min(len(ds), b0 + BLOCK)
        e = ds.array("energy", b0, b1)
        n = ds.array("n_atoms", b0, b1)
        ok = np.isfinite(e) & (n > 0)
        epa.append(e[ok] / n[ok])
        if ds.has("forces"):
            f = np.linalg.norm(ds.array("forces", b0, b1), axis=1)
            fmag.append(f[np.isfinite(f)])
    epa_all = np.concatenate(epa) if epa else np.empty(0)
    f_all = np.concatenate(fmag) if fmag else np.empty(0)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    title = ds.metadata.get("name") or Path(getattr(ds, "path", "dataset")).name
    fig.suptitle(f"{title}: {len(ds)} frames")
    ax = axes[0]
    if epa_all.size:
        ax.hist(epa_all, bins=bins, color="tab:blue")
    else:
        ax.text(0.5, 0.5, "no energies", ha="center", transform=ax.transAxes)
    ax.set_xlabel("energy per atom (eV/atom)")
    ax.set_ylabel("frames")
    ax = axes[1]
    if f_all.size:
        ax.hist(f_all, bins=bins, color="tab:orange", log=True)
    else:
        ax.text(0.5, 0.5, "no forces", ha="center", transform=ax.transAxes)
    ax.set_xlabel("|F| per atom (eV/Å)")
    ax.set_ylabel("atoms")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
