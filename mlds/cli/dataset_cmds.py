"""`mlds info`, `mlds validate`: commands on one dataset (file or store version)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

import mlds
from mlds.cli.app import app, console, err_console
from mlds.errors import ValidationError


@app.command()
def info(
    target: str = typer.Argument(..., help="Dataset file (.h5, .zarr, .zarr.zip) or store version NAME[@TAG]."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Also draw energy-per-atom and force histograms to this PNG."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    duplicates: bool = typer.Option(True, "--duplicates/--no-duplicates",
                                    help="Look for repeated frames by content hash (spec §16); off saves a pass over the data."),
) -> None:
    """Show frames, atoms, elements, composition, energy/force ranges, labels, duplicates and metadata."""
    with mlds.open(target) as ds:
        s = ds.summary()
        if duplicates:
            s["duplicates"] = duplicate_summary(ds)
        s["labels"] = label_counts(ds)
        meta = ds.metadata
        if plot is not None:
            from mlds.plot import plot_distributions

            plot_distributions(ds, plot)
        from mlds.train.potential import potentials_of

        potentials = potentials_of(target)  # trained on this store version (issue 9); [] for files
        if as_json:
            console.print_json(json.dumps({"summary": s, "metadata": meta, "potentials": potentials}, default=str))
            return
        _print_summary(target, ds, s, meta)
        if potentials:
            console.print("potentials trained on it: " + ", ".join(potentials), highlight=False)
        if plot is not None:
            console.print(f"plot written to {plot}")


def duplicate_summary(ds) -> dict:
    """Frames whose content hash repeats an earlier frame's: how many, and the first groups."""
    from mlds.format.framehash import dataset_hashes, duplicate_groups

    groups = duplicate_groups(dataset_hashes(ds))
    return {"frames": sum(len(g) - 1 for g in groups), "groups": len(groups), "examples": groups[:5]}


def label_counts(ds) -> dict:
    """How many frames carry each set / config_type label (spec 1.1 §4.1)."""
    from collections import Counter

    from mlds.format import labels

    out = {}
    for name in labels.TEXT_LABELS:
        if ds.has(name):
            counts = Counter(labels.decode(row) for row in ds.array(name))
            out[name] = {("(none)" if k is None else k): v for k, v in counts.most_common()}
    return out


def _fmt(x: object, spec: str = ".4f") -> str:
    return "-" if x is None else format(x, spec)


def _print_summary(target: str, ds, s: dict, meta: dict) -> None:
    from rich.table import Table  # imported when a table is printed, not at every mlds start (issue 12)

    head = Table.grid(padding=(0, 2))
    head.add_row("dataset", str(target))
    head.add_row("name", str(meta.get("name", "-")))
    if hasattr(ds, "spec_version"):
        head.add_row("spec", ds.spec_version)
    head.add_row("frames", f"{s['n_frames']} ({s['n_periodic']} periodic)")
    head.add_row("atoms", f"{s['n_atoms']} total, {s['n_atoms_min']}–{s['n_atoms_max']} per frame")
    head.add_row("elements", " ".join(s["elements"]) or "-")
    head.add_row("energy/atom", f"{_fmt(s['energy_per_atom_min'])} … {_fmt(s['energy_per_atom_max'])} eV ({s['n_with_energy']} frames with energy)")
    head.add_row("|F|", f"max {_fmt(s['force_max'])} eV/Å, rms {_fmt(s['force_rms'])} eV/Å" if s["has_forces"] else "no forces")
    head.add_row("stress", "yes" if s["has_stress"] else "no")
    head.add_row("arrays", ", ".join(ds.arrays_present))
    dup = s.get("duplicates")
    if dup is not None:
        if dup["frames"]:
            ex = "; ".join(" = ".join(str(i) for i in g[:4]) + (" …" if len(g) > 4 else "") for g in dup["examples"][:3])
            head.add_row("duplicates", f"{dup['frames']} frame(s) repeat an earlier one ({dup['groups']} group(s), e.g. frames {ex})")
        else:
            head.add_row("duplicates", "none")
    for name, counts in s.get("labels", {}).items():
        head.add_row(name, ", ".join(f"{k} {v}" for k, v in list(counts.items())[:8]))
    head.add_row("license", str(meta.get("license", "-")))
    authors = ", ".join(a.get("name", "?") for a in meta.get("authors", []))
    head.add_row("authors", authors or "-")
    if meta.get("description"):
        head.add_row("description", meta["description"])
    console.print(head)

    comp = Table(title="composition", show_edge=False)
    comp.add_column("element")
    comp.add_column("atoms", justify="right")
    comp.add_column("fraction", justify="right")
    total = max(1, s["n_atoms"])
    for el, count in sorted(s["composition"].items(), key=lambda kv: -kv[1]):
        comp.add_row(el, str(count), f"{count / total:.3f}")
    console.print(comp)

    if s["formula_counts"]:
        ft = Table(title="formulas (most frequent)", show_edge=False)
        ft.add_column("formula")
        ft.add_column("frames", justify="right")
        for formula, count in list(s["formula_counts"].items())[:10]:
            ft.add_row(formula, str(count))
        console.print(ft)

    calcs = meta.get("calculations", [])
    if calcs:
        ct = Table(title="calculations", show_edge=False)
        from mlds.format.settings_key import settings_key

        for col in ("#", "code", "version", "functional", "cutoff (eV)", "k-points", "smearing", "spin", "settings key"):
            ct.add_column(col)
        for i, c in enumerate(calcs):
            k = c.get("kpoints", {})
            kp = "x".join(map(str, k["mesh"])) if "mesh" in k else str(k.get("n_kpoints", "-"))
            sm = c.get("smearing", {})
            ct.add_row(
                str(i), str(c.get("code", "-")), str(c.get("code_version", "-")), str(c.get("functional", "-")),
                _fmt(c.get("plane_wave_cutoff_eV"), ".1f"), kp,
                f"{sm.get('method', '-')} {sm.get('width_eV', '')}".strip(), str(c.get("spin_polarized", "-")),
                settings_key(c),  # frames of different keys were computed with incompatible settings
            )
        console.print(ct)
    sources = meta.get("sources", [])
    if sources:
        st = Table(title=f"sources ({len(sources)})", show_edge=False)
        for col in ("file", "format", "kept", "dropped"):
            st.add_column(col)
        for src in sources[:20]:
            dropped = ", ".join(f"{k}: {v}" for k, v in src.get("frames_dropped", {}).items()) or "-"
            st.add_row(Path(src.get("path", "?")).name, src.get("format", "?"), str(src.get("frames_kept", "?")), dropped)
        if len(sources) > 20:
            st.add_row(f"… {len(sources) - 20} more", "", "", "")
        console.print(st)


@app.command()
def validate(
    path: Path = typer.Argument(..., help="Dataset file to check."),
    level: str = typer.Option("base", "--level", help="Metadata level: base, group or public."),
) -> None:
    """Check the schema and the array invariants; exit 2 listing every problem."""
    from mlds.format.validate import validate_dataset

    problems = validate_dataset(path, level=level)
    if problems:
        for p in problems[1:]:
            err_console.print(f"{path}: {p}", highlight=False, soft_wrap=True)
        raise ValidationError(path, problems[0] + (f" (and {len(problems) - 1} more above)" if len(problems) > 1 else ""))
    console.print(f"{path}: valid (mlds spec {_spec_of(path)})")


def _spec_of(path: Path) -> str:
    with mlds.open(path) as ds:
        return ds.spec_version
