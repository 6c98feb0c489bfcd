"""The end-to-end walk-through behind `mlds demo`, on bundled example data.

It needs no account and no network: everything happens in a work folder,
with local-folder remotes standing in for the personal and group tiers.
"""

from __future__ import annotations

import tempfile
from importlib import resources
from pathlib import Path
from typing import Callable

EXAMPLE_FILES = ("cu3au_emt.extxyz", "nial_emt.extxyz")
EXAMPLE_META = {
    "cu3au_emt.extxyz": {
        "name": "cu3au-emt",
        "description": "Rattled and strained Cu3Au supercells labelled with ASE's EMT potential (demo data, not DFT).",
        "license": "CC0-1.0",
        "authors": [{"name": "mlds developers"}],
    },
    "nial_emt.extxyz": {
        "name": "nial-emt",
        "description": "Rattled and strained B2 NiAl supercells labelled with ASE's EMT potential (demo data, not DFT).",
        "license": "CC0-1.0",
        "authors": [{"name": "mlds developers"}],
    },
}


def example_path(name: str) -> Path:
    return Path(str(resources.files("mlds") / "examples" / name))


def run_demo(workdir: str | Path | None = None, say: Callable[[str], None] = print) -> Path:
    """Build datasets from the examples, validate, summarise, read back through ASE."""
    import ase.io

    import mlds
    from mlds.convert import convert
    from mlds.format.validate import validate_dataset

    work = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="mlds-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    say(f"work folder: {work}")
    built = []
    for name in EXAMPLE_FILES:
        meta = dict(EXAMPLE_META[name])
        meta["calculations"] = [{"code": "ASE-EMT", "functional": "EMT"}]
        out = work / f"{meta['name']}.mlds.h5"
        result = convert([example_path(name)], out, metadata=meta)
        say(f"1. converted {name} -> {out.name}: {result.n_frames} frames")
        problems = validate_dataset(out)
        if problems:
            raise RuntimeError(f"demo dataset failed validation: {problems[0]}")
        say(f"2. validated {out.name}: no problems")
        with mlds.open(out) as ds:
            s = ds.summary()
            say(
                f"3. summary: {s['n_frames']} frames, {s['n_atoms']} atoms, elements {' '.join(s['elements'])}, "
                f"E/atom {s['energy_per_atom_min']:.3f}..{s['energy_per_atom_max']:.3f} eV, max |F| {s['force_max']:.3f} eV/Å"
            )
        images = ase.io.read(out, ":")
        e0 = images[0].get_potential_energy()
        say(f"4. ase.io.read('{out.name}', ':') -> {len(images)} Atoms; first energy {e0:.6f} eV")
        built.append(out)
    return work
