"""Evaluate an n2p2 potential folder with n2p2's own programs, and draw parity plots.

``nnp-dataset`` predicts every structure of an ``input.data`` and writes per-structure
energies and per-component forces next to the reference values; ``nnp-predict`` does one
structure.  We run them in a scratch folder holding copies of the potential's files, so
the potential folder itself is never written to.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from mlds.errors import MldsError
from mlds.train.jobscript import last_line

POTENTIAL_FILES = ("input.nn", "scaling.data")


class EvaluateError(MldsError):
    pass


@dataclass
class Evaluation:
    """Reference vs predicted values, in eV and eV/Å."""

    n_atoms: np.ndarray          # per structure
    energy_ref: np.ndarray       # per structure, eV
    energy_pred: np.ndarray
    force_ref: np.ndarray        # per force component, eV/Å
    force_pred: np.ndarray
    internal: dict[str, np.ndarray] | None = None   # the same in n2p2's normalised units (nnp-dataset only)

    def internal_rmse(self) -> tuple[float, float]:
        """(energy RMSE/atom, force RMSE) in n2p2's internal units.

        nnp-dataset prints 9 significant digits; physical total energies (hundreds of eV) then
        resolve only ~1e-6 eV, internal ones (mean-subtracted, normalised) far better — so
        these are what to compare with the learning curve's ``_iu`` columns.
        """
        if self.internal is None:
            raise ValueError("no internal-unit values (nnp-predict results)")
        i = self.internal
        e = float(np.sqrt(np.mean(((i["e_pred"] - i["e_ref"]) / self.n_atoms) ** 2)))
        f = float(np.sqrt(np.mean((i["f_pred"] - i["f_ref"]) ** 2))) if i["f_ref"].size else math.nan
        return e, f

    @property
    def energy_rmse_per_atom(self) -> float:
        return float(np.sqrt(np.mean(((self.energy_pred - self.energy_ref) / self.n_atoms) ** 2)))

    @property
    def force_rmse(self) -> float:
        return float(np.sqrt(np.mean((self.force_pred - self.force_ref) ** 2))) if self.force_ref.size else math.nan

    def metrics(self) -> dict[str, Any]:
        return {"structures": int(self.n_atoms.size), "atoms": int(self.n_atoms.sum()),
                "energy_rmse_per_atom_eV": self.energy_rmse_per_atom,
                "energy_mae_per_atom_eV": float(np.mean(np.abs((self.energy_pred - self.energy_ref) / self.n_atoms))),
                "force_rmse_eV_per_angstrom": self.force_rmse,
                "force_mae_eV_per_angstrom": float(np.mean(np.abs(self.force_pred - self.force_ref)))
                if self.force_ref.size else math.nan}


def _env() -> dict[str, str]:
    env = dict(os.environ)
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        env.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
        env.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    return env


@contextlib.contextmanager
def _scratch(potential_dir: Path) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="mlds-nnp-") as tmp:
        work = Path(tmp)
        for name in POTENTIAL_FILES:
            shutil.copy(potential_dir / name, work / name)
        for w in potential_dir.glob("weights.*.data"):
            shutil.copy(w, work / w.name)
        yield work


def _program(name: str) -> str:
    from mlds.codes import locate

    return str(locate("n2p2", (name,)).programs[name])


def _run(cmd: list[str], cwd: Path) -> None:
    with open(cwd / "stdout.log", "w") as out:
        rc = subprocess.run(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=_env()).returncode
    if rc != 0:
        raise EvaluateError(f"{Path(cmd[0]).name} exited with {rc}: {last_line(cwd / 'stdout.log')}")


def _columns(path: Path) -> np.ndarray:
    rows = [ln.split() for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    return np.array(rows, dtype=float) if rows else np.zeros((0, 6))


def evaluate_file(potential_dir: str | os.PathLike, input_data: str | os.PathLike, *, energy_per_eV: float = 1.0,
                  length_per_angstrom: float = 1.0) -> Evaluation:
    """Run ``nnp-dataset`` with the potential on an ``input.data`` in the potential's units."""
    pot = Path(potential_dir)
    with _scratch(pot) as work:
        shutil.copy(input_data, work / "input.data")
        _run([_program("nnp-dataset"), "0"], work)
        e = _columns(work / "energy.comp")
        f = _columns(work / "forces.comp") if (work / "forces.comp").is_file() else np.zeros((0, 6))
    if e.shape[0] == 0:
        raise EvaluateError(f"nnp-dataset predicted no structure from {input_data}")
    f_unit = energy_per_eV / length_per_angstrom
    return Evaluation(n_atoms=e[:, 1], energy_ref=e[:, 2] / energy_per_eV, energy_pred=e[:, 3] / energy_per_eV,
                      force_ref=f[:, 2] / f_unit, force_pred=f[:, 3] / f_unit,
                      internal={"e_ref": e[:, 4], "e_pred": e[:, 5], "f_ref": f[:, 4], "f_pred": f[:, 5]})


def predict_structure(potential_dir: str | os.PathLike, block: str) -> tuple[float, np.ndarray]:
    """``nnp-predict`` on one ``input.data`` structure block: (energy, forces) in the potential's units."""
    pot = Path(potential_dir)
    with _scratch(pot) as work:
        (work / "input.data").write_text(block)
        _run([_program("nnp-predict"), "0"], work)
        energy = _energy_out(work / "energy.out")
        forces = np.array([ln.split()[0:3] for ln in (work / "nnforces.out").read_text().splitlines()
                           if ln.strip() and not ln.startswith("#")], dtype=float)
    return energy, forces


def _energy_out(path: Path) -> float:
    rows = [ln.split() for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    return float(rows[-1][0])  # columns: Ennp Eref Ediff E_offset


def structure_blocks(input_data: str | os.PathLike, which: str | None = None) -> Iterator[str]:
    """The ``begin ... end`` blocks of an input.data, optionally only ``set=which`` ones (streamed)."""
    block: list[str] = []
    keep = True
    with open(input_data, encoding="utf-8") as fh:
        for line in fh:
            s = line.split()
            if s and s[0] == "begin":
                block = [line]
                keep = which is None or f"set={which}" in s[1:]
            elif block:
                block.append(line)
                if s and s[0] == "end":
                    if keep:
                        yield "".join(block)
                    block = []


def write_subset(input_data: str | os.PathLike, out: str | os.PathLike, which: str) -> int:
    n = 0
    with open(out, "w", encoding="utf-8") as fh:
        for blk in structure_blocks(input_data, which):
            fh.write(blk)
            n += 1
    return n


def parity_plot(ev: Evaluation, path: str | os.PathLike, title: str = "") -> Path:
    """PNG with predicted vs reference energy per atom and force components."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 4.2))
    epa_ref = ev.energy_ref / ev.n_atoms
    epa_pred = ev.energy_pred / ev.n_atoms
    for ax, ref, pred, label, rmse in (
        (axes[0], epa_ref, epa_pred, "energy per atom (eV)", ev.energy_rmse_per_atom),
        (axes[1], ev.force_ref, ev.force_pred, "force component (eV/Å)", ev.force_rmse),
    ):
        if ref.size:
            lo = float(min(ref.min(), pred.min()))
            hi = float(max(ref.max(), pred.max()))
            pad = 0.05 * (hi - lo or 1.0)
            ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="0.6", lw=1)
            ax.scatter(ref, pred, s=6, alpha=0.6)
            ax.set_xlim(lo - pad, hi + pad)
            ax.set_ylim(lo - pad, hi + pad)
        ax.set_xlabel(f"DFT {label}")
        ax.set_ylabel(f"predicted {label}")
        unit = "meV/atom" if "energy" in label else "meV/Å"
        ax.set_title(f"RMSE {rmse * 1000:.3g} {unit}")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def learning_curve_plot(curve: Iterable[Iterable[float]], path: str | os.PathLike, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = np.array([list(r) for r in curve], dtype=float)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
    for ax, (i, j), label in ((axes[0], (1, 2), "energy RMSE/atom (meV)"), (axes[1], (3, 4), "force RMSE (meV/Å)")):
        ax.semilogy(rows[:, 0], rows[:, i] * 1000, label="train")
        ax.semilogy(rows[:, 0], rows[:, j] * 1000, label="test")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
