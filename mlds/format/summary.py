"""Summary statistics of a dataset: what `mlds info` shows and store catalogs index."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

MAX_FORMULAS = 200


def hill_formula(numbers: np.ndarray) -> str:
    """Hill-order formula of a list of atomic numbers (C, H first when there is carbon)."""
    from mlds.elements import chemical_symbols

    counts = Counter(chemical_symbols[z] for z in numbers.tolist())
    if "C" in counts:
        order = ["C"] + (["H"] if "H" in counts else []) + sorted(k for k in counts if k not in ("C", "H"))
    else:
        order = sorted(counts)
    return "".join(f"{el}{counts[el] if counts[el] > 1 else ''}" for el in order)


def summarize(ds: Any, *, block: int = 65536) -> dict[str, Any]:
    """One pass over the arrays in blocks of frames; memory is bounded by ``block``."""
    from mlds.elements import chemical_symbols

    n = len(ds)
    element_counts = np.zeros(119, dtype=np.int64)
    formulas: Counter[str] = Counter()
    e_pa_min, e_pa_max = np.inf, -np.inf
    f_max = 0.0
    f_sum_sq, f_count = 0.0, 0
    n_atoms_min, n_atoms_max = None, None
    periodic = 0
    has_forces = ds.has("forces")
    has_stress = ds.has("stress")
    with_energy = 0
    for b0 in range(0, n, block):
        b1 = min(n, b0 + block)
        counts = ds.array("n_atoms", b0, b1)
        numbers = ds.array("numbers", b0, b1)
        energy = ds.array("energy", b0, b1)
        pbc = ds.array("pbc", b0, b1)
        periodic += int(pbc.all(axis=1).sum())
        element_counts += np.bincount(numbers, minlength=119)
        ok = np.isfinite(energy) & (counts > 0)
        with_energy += int(ok.sum())
        if ok.any():
            epa = energy[ok] / counts[ok]
            e_pa_min = min(e_pa_min, float(epa.min()))
            e_pa_max = max(e_pa_max, float(epa.max()))
        n_atoms_min = int(counts.min()) if n_atoms_min is None else min(n_atoms_min, int(counts.min()))
        n_atoms_max = int(counts.max()) if n_atoms_max is None else max(n_atoms_max, int(counts.max()))
        if len(formulas) < MAX_FORMULAS:
            ends = np.cumsum(counts)
            for j, (a1, c) in enumerate(zip(ends.tolist(), counts.tolist())):
                formulas[hill_formula(numbers[a1 - c : a1])] += 1
                if len(formulas) >= MAX_FORMULAS:
                    break
        if has_forces:
            forces = ds.array("forces", b0, b1)
            norms = np.linalg.norm(forces, axis=1)
            norms = norms[np.isfinite(norms)]
            if norms.size:
                f_max = max(f_max, float(norms.max()))
                f_sum_sq += float((norms**2).sum())
                f_count += norms.size
    elements = [chemical_symbols[z] for z in np.nonzero(element_counts)[0].tolist()]
    meta = ds.metadata
    calcs = meta.get("calculations", []) if isinstance(meta, dict) else []
    return {
        "name": meta.get("name") if isinstance(meta, dict) else None,
        "n_frames": n,
        "n_atoms": int(element_counts.sum()),
        "n_atoms_min": n_atoms_min or 0,
        "n_atoms_max": n_atoms_max or 0,
        "n_periodic": periodic,
        "elements": sorted(elements),
        "nelements": len(elements),
        "composition": {chemical_symbols[z]: int(element_counts[z]) for z in np.nonzero(element_counts)[0].tolist()},
        "formulas": sorted(formulas),
        "formula_counts": dict(formulas.most_common()),
        "codes": sorted({c["code"] for c in calcs if c.get("code")}),
        "functionals": sorted({c["functional"] for c in calcs if c.get("functional")}),
        "n_with_energy": with_energy,
        "energy_per_atom_min": None if not np.isfinite(e_pa_min) else e_pa_min,
        "energy_per_atom_max": None if not np.isfinite(e_pa_max) else e_pa_max,
        "has_forces": has_forces,
        "has_stress": has_stress,
        "force_max": f_max if has_forces else None,
        "force_rms": (f_sum_sq / f_count) ** 0.5 if f_count else None,
    }
