"""The end-to-end walk-through behind `mlds demo`, on bundled example data.

It needs no account and no network: everything happens in a work folder,
with local-folder remotes standing in for the personal and group tiers, so
the same loop a group runs over S3, SFTP or GakuNin RDM runs here offline.
The example data are labelled with ASE's EMT potential (declared as such in
the metadata, ``method: empirical-potential``), not DFT.
"""

from __future__ import annotations

import tempfile
from importlib import resources
from pathlib import Path
from typing import Callable

EXAMPLE_FILES = ("cu3au_emt.extxyz", "nial_emt.extxyz")


def example_path(name: str) -> Path:
    return Path(str(resources.files("mlds") / "examples" / name))


def example_metadata(name: str) -> dict:
    """The metadata shipped beside an example file (``<stem>.meta.json``): name, license, authors, settings."""
    from mlds.meta import load_meta_file

    return load_meta_file(example_path(name.rsplit(".", 1)[0] + ".meta.json"))


def run_demo(workdir: str | Path | None = None, say: Callable[[str], None] = print) -> Path:
    """Import, validate, summarise, read back through ASE; then version, push, promote, search, pull."""
    import ase.io

    import mlds
    import mlds.store as store
    from mlds.convert import convert
    from mlds.errors import PolicyError
    from mlds.format.validate import validate_dataset

    work = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="mlds-demo-"))
    marker = work / ".mlds-demo"  # the folder is the demo's own: a rerun may replace what it wrote
    if work.is_dir() and any(work.iterdir()) and not marker.exists():
        from mlds.errors import OutputExistsError

        raise OutputExistsError(f"{work} is not empty and not a demo folder; give a new or empty --workdir")
    work.mkdir(parents=True, exist_ok=True)
    marker.touch()
    say(f"work folder: {work}")
    built = []
    for name in EXAMPLE_FILES:
        meta = dict(example_metadata(name), name=name.split(".")[0].replace("_", "-"))  # cu3au_emt -> cu3au-emt
        out = work / f"{meta['name']}.mlds.h5"
        result = convert([example_path(name)], out, metadata=meta, force=True)
        say(f"import:   converted {name} -> {out.name}: {result.n_frames} frames")
        problems = validate_dataset(out)
        if problems:
            raise RuntimeError(f"demo dataset failed validation: {problems[0]}")
        say(f"validate: {out.name}: no problems")
        with mlds.open(out) as ds:
            s = ds.summary()
            say(
                f"info:     {s['n_frames']} frames, {s['n_atoms']} atoms, elements {' '.join(s['elements'])}, "
                f"E/atom {s['energy_per_atom_min']:.3f}..{s['energy_per_atom_max']:.3f} eV, max |F| {s['force_max']:.3f} eV/Å"
            )
        images = ase.io.read(out, ":")
        e0 = images[0].get_potential_energy()
        say(f"ase:      ase.io.read('{out.name}', ':') -> {len(images)} Atoms; first energy {e0:.6f} eV")
        built.append(out)

    # -- the sharing loop: local store -> personal remote -> group remote -> search -> fresh store
    local = store.init(work / "my-store")
    personal = store.init(work / "remotes" / "personal", tier="personal")
    group = store.init(work / "remotes" / "group", tier="group")
    for out in built:
        name = out.name.removesuffix(".mlds.h5")
        added = store.add(out, name, "import demo data", store=local)
        say(f"add:      stored {name} as v{added['version']} ({added['new_shards']} new shard(s))")
        pushed = store.push(name, personal, store=local)
        say(f"push:     pushed {name} to the personal remote ({_sent(pushed)})")

    draft = work / "draft.mlds.h5"
    with mlds.open(built[0]) as ds:
        meta = dict(ds.metadata, calculations=[{"code": "ASE-EMT"}], name="draft")
        ds_frames = list(ds.iter_frames(0, 4))
    for frame in ds_frames:
        frame.calculation = 0
    mlds.write(draft, ds_frames, meta)
    store.add(draft, "draft", "settings not recorded yet", store=local)
    try:
        store.promote("draft@latest", group, store=local)
    except PolicyError as err:
        missing = [line.strip() for line in str(err).splitlines()[1:] if line.strip()]
        say(f"promote:  the group tier refuses 'draft' (settings incomplete): {'; '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}")

    for out in built:
        name = out.name.removesuffix(".mlds.h5")
        store.promote(f"{name}@v1", group, store=local)
        say(f"promote:  promoted {name}@v1 to the group remote (policy checked first; v1 is now immutable there)")

    hits = store.search('elements HAS ALL "Cu","Au" AND nelements<=2', remotes=[group])
    say(f"search:   group remote, elements HAS ALL \"Cu\",\"Au\": {', '.join(h['dataset'] for h in hits) or 'nothing'}")

    fresh = store.init(work / "colleague-store")
    for hit in hits:
        store.pull(f"{hit['dataset']}@v1", group, store=fresh)
        with store.open_ref(f"{hit['dataset']}@v1", store=fresh) as ds, mlds.open(work / f"{hit['dataset']}.mlds.h5") as original:
            same = all(
                (a.positions == b.positions).all() and (a.forces == b.forces).all() and a.energy == b.energy
                for a, b in zip(ds.iter_frames(), original.iter_frames())
            ) and len(ds) == len(original)
            say(f"pull:     a colleague pulled {hit['dataset']}@v1 into a fresh store: {len(ds)} frames, identical to the original: {same}")
            if not same:
                raise RuntimeError("pulled data differ from the original")
    return work


def _sent(report: dict) -> str:
    n = report.get("objects_sent", report.get("sent_objects"))
    b = report.get("bytes_sent", report.get("sent_bytes"))
    if n is None or b is None:
        return "done"
    return f"{n} object(s), {b} bytes"
