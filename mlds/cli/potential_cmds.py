"""``mlds potential``: list, show, search, get and evaluate trained potentials (thin over mlds.train)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from mlds.cli.app import app, console

potential_app = typer.Typer(help="Trained potentials in the store: ls, show, search, get, evaluate.",
                            no_args_is_help=False)
app.add_typer(potential_app, name="potential")


def _ms(x: object, scale: float = 1e3, spec: str = ".3g") -> str:
    return "-" if x is None else format(float(x) * scale, spec)


@potential_app.command("ls")
def ls_cmd(
    remote: Optional[str] = typer.Argument(None, help="Remote name or URL (default: the local store)."),
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d", help="Only potentials trained on this dataset version NAME[@TAG]."),
) -> None:
    """Potentials with their tags, elements and test errors."""
    from rich.table import Table
    from mlds import train

    rows = train.trained_on(dataset, store=remote) if dataset else train.ls(remote)
    t = Table("potential", "tags", "elements", "dataset", "E RMSE meV/atom", "F RMSE meV/Å")
    for r in rows:
        t.add_row(str(r.get("name") or r.get("dataset")), " ".join(sorted(r.get("refs", {}))),
                  " ".join(r.get("elements", [])), str(r.get("dataset_name") or r.get("summary", {}).get("dataset", "")),
                  _ms(r.get("energy_rmse_per_atom_eV")), _ms(r.get("force_rmse_eV_per_angstrom")))
    console.print(t if rows else "no potentials")


@potential_app.command("show")
def show_cmd(
    ref: str = typer.Argument(..., help="NAME[@TAG]"),
    remote: Optional[str] = typer.Option(None, "--remote", "-r", help="Remote name or URL (default: the local store)."),
    as_json: bool = typer.Option(False, "--json", help="Print the metadata as JSON."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Draw the learning curve to this PNG."),
) -> None:
    """Code, elements, cutoff, units, training data, metrics and LAMMPS lines of a potential."""
    from rich.table import Table
    from mlds import train
    from mlds.train.predict import learning_curve_plot

    pot = train.show(ref, store=remote)
    md = pot.metadata
    if plot is not None:
        if not md.get("learning_curve"):
            from mlds.train.potential import PotentialError

            raise PotentialError(f"{ref} has no learning curve in its metadata")
        learning_curve_plot(md["learning_curve"], plot, title=ref)
    if as_json:
        console.print_json(json.dumps({"name": pot.name, "version": pot.version, "files": pot.files, "metadata": md}))
        return
    m = md["metrics"]
    d = md["dataset"]
    split = md.get("split") or {}
    g = Table.grid(padding=(0, 2))
    g.add_row("potential", f"{pot.name} v{pot.version}")
    g.add_row("code", f"{md['code']} {md['code_version']}")
    g.add_row("elements", " ".join(md["elements"]))
    g.add_row("cutoff", f"{md['cutoff_angstrom']} Å ({md['units']['system']})")
    trained_on = f"{d['name']}@{d.get('tag') or d.get('version')} ({(d.get('manifest') or d.get('file_sha256') or '')[:12]})"
    if split:
        trained_on += f", {split['n_train']} train / {split['n_test']} test frames, seed {split['seed']}"
    g.add_row("trained on", trained_on)
    if "best_epoch" in md:
        g.add_row("best epoch", f"{md['best_epoch']} of {md.get('epochs', '?')} ({md.get('best_epoch_metric', 'combined')})")
    g.add_row("energy RMSE", f"{_ms(m['energy_rmse_per_atom_eV']['train'])} train / "
              f"{_ms(m['energy_rmse_per_atom_eV']['test'])} test meV/atom")
    g.add_row("force RMSE", f"{_ms(m['force_rmse_eV_per_angstrom']['train'])} train / "
              f"{_ms(m['force_rmse_eV_per_angstrom']['test'])} test meV/Å")
    if "trained" in md:
        g.add_row("trained", f"{md['trained']} on {md.get('host', '?')} in {md.get('run_seconds', 0):.0f} s")
    g.add_row("files", " ".join(pot.files))
    lines = pot.lammps(directory="<dir>")
    g.add_row("LAMMPS", f"{lines['units']}\n{lines['pair_style']}\n{lines['pair_coeff']}")
    console.print(g, highlight=False)
    if plot is not None:
        console.print(f"learning curve written to {plot}")


@potential_app.command("search")
def search_cmd(
    query: str = typer.Argument(..., help='Filter, e.g. \'elements HAS ALL "Cu","S"\'.'),
    remote: Optional[list[str]] = typer.Option(None, "--remote", "-r", help="Search this remote (repeatable)."),
) -> None:
    """Potentials matching a filter (the same filter language as mlds search)."""
    from rich.table import Table
    from mlds import train

    hits = train.search(query, remote or None)
    t = Table("remote", "potential", "version", "elements", "dataset", "F RMSE meV/Å")
    for h in hits:
        t.add_row(str(h.get("remote")), str(h.get("name") or h.get("dataset")), f"v{h.get('version')}",
                  " ".join(h.get("elements", [])), str(h.get("dataset_name") or ""),
                  _ms(h.get("force_rmse_eV_per_angstrom")))
    console.print(t if hits else "no matching potentials")


@potential_app.command("get")
def get_cmd(
    ref: str = typer.Argument(..., help="NAME[@TAG]"),
    output: Path = typer.Option(..., "--output", "-o", help="Folder to write (LAMMPS pair_style hdnnp dir)."),
    remote: Optional[str] = typer.Option(None, "--remote", "-r", help="Remote name or URL (default: the local store)."),
    force: bool = typer.Option(False, "--force", help="Overwrite files in an existing folder."),
) -> None:
    """Write a potential's files to a folder and print the LAMMPS lines that use it."""
    from mlds import train

    pot = train.get(ref, output, store=remote, force=force)
    lines = pot.lammps(directory=output)
    console.print(f"wrote {len(pot.files)} files of {ref} to {output}", highlight=False)
    console.print(f"{lines['units']}\n{lines['pair_style']}\n{lines['pair_coeff']}", highlight=False)


@potential_app.command("evaluate")
def evaluate_cmd(
    ref: str = typer.Argument(..., help="Potential NAME[@TAG] (or a potential folder)."),
    dataset: Optional[str] = typer.Argument(None, help="Dataset NAME[@TAG] or file (default: the potential's own test split)."),
    remote: Optional[str] = typer.Option(None, "--remote", "-r", help="Where the potential is (default: the local store)."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Parity plot (predicted vs DFT) PNG."),
    as_json: bool = typer.Option(False, "--json", help="Print the errors as JSON."),
) -> None:
    """Energy and force errors of a potential on a dataset, computed by n2p2's nnp-dataset."""
    from mlds import train

    r = train.evaluate(ref, dataset, store=remote, plot=plot)
    if as_json:
        console.print_json(json.dumps(r))
        return
    console.print(f"{ref} on {r['dataset']}: {r['structures']} structures, {r['atoms']} atoms", highlight=False)
    console.print(f"  energy RMSE {_ms(r['energy_rmse_per_atom_eV'])} meV/atom (MAE {_ms(r['energy_mae_per_atom_eV'])})",
                  highlight=False)
    console.print(f"  force  RMSE {_ms(r['force_rmse_eV_per_angstrom'])} meV/Å (MAE {_ms(r['force_mae_eV_per_angstrom'])})",
                  highlight=False)
    if plot is not None:
        console.print(f"parity plot written to {plot}")
