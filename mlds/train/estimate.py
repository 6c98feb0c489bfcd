"""Memory and rank estimates before anything runs.

n2p2 keeps every atom's symmetry functions and their derivatives in memory during
training (``memorize_symfunc_results``): per atom its functions G and dE/dG, and per
neighbour within the cutoff the derivatives dG/dr of the functions that neighbour's
element enters (3 doubles each).  We count neighbours on a few sampled frames and
multiply out; n2p2's own figure (printed by ``nnp-scaling``) is checked again by the job
on the machine that runs it.
"""

from __future__ import annotations

import math
from typing import Any

from mlds.train import symfuncs

BYTES_PER_NEIGHBOUR = 120      # n2p2 Neighbor record, cutoff cache, list entries (measured, order of magnitude)
BYTES_PER_ATOM = 400           # Atom record, neighbour bookkeeping
BYTES_PER_STRUCTURE = 2000
ATOMS_PER_RANK = 200_000       # a rank per this many atoms keeps epochs short without idle ranks


def memory(sf_lines: list[str], atoms_per_element: dict[str, int], neighbours: dict[str, Any],
           n_frames: int) -> dict[str, Any]:
    """Estimated bytes for n2p2 training with symmetry functions in memory."""
    per_el = symfuncs.count_per_element(sf_lines)
    rel = symfuncs.relevant_counts(sf_lines)
    total = BYTES_PER_STRUCTURE * n_frames
    for el, n_atoms in atoms_per_element.items():
        nsf = per_el.get(el, 0)
        per_atom = BYTES_PER_ATOM + 16 * nsf
        for (a, b), mean_nb in neighbours.get("per_pair", {}).items():
            if a == el:
                per_atom += mean_nb * (24 * rel.get((a, b), 0) + BYTES_PER_NEIGHBOUR)
        total += int(per_atom * n_atoms)
    atoms = sum(atoms_per_element.values())
    return {
        "memory_bytes": int(total),
        "atoms": int(atoms),
        "frames": int(n_frames),
        "symmetry_functions": per_el,
        "mean_neighbours": round(float(neighbours.get("mean_neighbours", 0.0)), 2),
        "ranks": max(1, math.ceil(atoms / ATOMS_PER_RANK)),
    }


def available_memory() -> int:
    """Bytes available on this machine (MemAvailable), 0 when unknown."""
    from mlds.train.jobscript import mem_available

    return mem_available()


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n:.2f} TiB"
