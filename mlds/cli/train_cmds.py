"""``mlds train``: dataset version -> n2p2 potential, thin over :mod:`mlds.train`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from mlds.cli.app import app, console, err_console

train_app = typer.Typer(help="Train machine-learning potentials on a dataset version (n2p2).", no_args_is_help=False)
app.add_typer(train_app, name="train")


def _settings(preset: Optional[str], cutoff: Optional[float], units: Optional[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if preset:
        out["preset"] = preset
    if cutoff is not None:
        out["cutoff"] = cutoff
    if units:
        out["units"] = units
    return out


class CurveView:
    """Streams the job's output: epoch rows as a table with a Rich progress bar, other lines dimmed."""

    def __init__(self, quiet: bool = False) -> None:
        from mlds.train.jobscript import parse_progress

        self.parse = parse_progress
        self.quiet = quiet
        self.best: float | None = None
        self.first: tuple[float, float] | None = None
        self.progress = None
        self.task = None
        self.header_done = False

    def __enter__(self) -> "CurveView":
        if sys.stdout.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.progress = Progress(TextColumn("[bold]training"), BarColumn(), MofNCompleteColumn(),
                                     TimeElapsedColumn(), console=console, transient=True)
            self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.progress is not None:
            self.progress.stop()

    def _print(self, text: str) -> None:
        (self.progress.console if self.progress is not None else console).print(text, highlight=False)

    def __call__(self, line: str) -> None:
        ev = self.parse(line)
        if ev is None:
            if not self.quiet and line.strip():
                style = "red" if line.startswith("error") else "dim"
                self._print(f"[{style}]{line}[/]")
            return
        if self.progress is not None and self.task is None:
            self.task = self.progress.add_task("train", total=ev["epochs"])
        if not self.header_done:
            self._print(f"[bold]{'epoch':>7}  {'E RMSE/atom (meV) train':>24} {'test':>8}  "
                        f"{'F RMSE (meV/Å) train':>21} {'test':>8}[/]")
            self.header_done = True
        if ev["epoch"] == 0 or self.first is None:
            self.first = (ev["e_test"] or 1.0, ev["f_test"] or 1.0)
        score = ev["e_test"] / self.first[0] + ev["f_test"] / self.first[1]  # best_epoch's "combined"
        mark = ""
        if ev["epoch"] > 0 and score == score and (self.best is None or score < self.best):
            self.best = score
            mark = " [green]*[/]"
        self._print(f"{ev['epoch']:>4}/{ev['epochs']:<3} {ev['e_train'] * 1e3:>24.3f} {ev['e_test'] * 1e3:>8.3f}  "
                    f"{ev['f_train'] * 1e3:>21.2f} {ev['f_test'] * 1e3:>8.2f}{mark}")
        if self.progress is not None and self.task is not None:
            self.progress.update(self.task, completed=ev["epoch"])


def _extra_metadata(license_: Optional[str], authors: Optional[list[str]], description: Optional[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if license_:
        out["license"] = license_
    if authors:
        out["authors"] = [{"name": a} for a in authors]
    if description:
        out["description"] = description
    return out


_LICENSE = typer.Option(None, "--license", help="SPDX licence of the potential (default: the dataset's).")
_AUTHOR = typer.Option(None, "--author", help="Author (repeatable; default: the dataset's authors).")
_DESCRIPTION = typer.Option(None, "--description", help="Description (default: code, elements, cutoff, data).")


def _print_potential(pot: Any) -> None:
    md = pot.metadata
    m = md["metrics"]
    where = f"{pot.name}@v{pot.version}" if pot.version else str(pot.path)
    console.print(f"[bold green]potential {where}[/]: best epoch {md['best_epoch']} of {md['epochs']}, test "
                  f"energy RMSE {m['energy_rmse_per_atom_eV']['test'] * 1e3:.3f} meV/atom, force RMSE "
                  f"{m['force_rmse_eV_per_angstrom']['test'] * 1e3:.2f} meV/Å"
                  + (" (reproduced by nnp-dataset)" if m.get("verified") else ""), highlight=False)
    console.print(f"files in {pot.path}", highlight=False)


@train_app.command("n2p2")
def train_n2p2(
    ref: str = typer.Argument(..., help="Dataset version NAME[@TAG] in the store, or an mlds dataset file."),
    name: Optional[str] = typer.Option(None, "--name", "-n", help="Potential name in the store (default: <dataset>-n2p2)."),
    settings_file: Optional[Path] = typer.Option(None, "--settings", "-s", help="TOML file overriding any setting (see README)."),
    preset: Optional[str] = typer.Option(None, "--preset", help="standard (default) or quick."),
    cutoff: Optional[float] = typer.Option(None, "--cutoff", help="Symmetry-function cutoff in Å (default 6)."),
    units: Optional[str] = typer.Option(None, "--units", help="Training units: angstrom-ev (default) or bohr-hartree."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Training epochs."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of the train/test split and of n2p2."),
    test_fraction: Optional[float] = typer.Option(None, "--test-fraction", help="Fraction of frames in the test split (default 0.1)."),
    workdir: Optional[Path] = typer.Option(None, "--workdir", "-w", help="Run folder (default ./mlds-train/<dataset>-<tag>-<time>)."),
    ranks: Optional[int] = typer.Option(None, "--ranks", help="MPI ranks for this machine (mpirun -np N)."),
    on: Optional[str] = typer.Option(None, "--on", help="Run on a configured machine (mlds machine add) instead of here."),
    detach: bool = typer.Option(False, "--detach", help="With --on: submit and return; finish later with mlds jobs."),
    nodes: Optional[int] = typer.Option(None, "--nodes", help="With --on: nodes to ask the scheduler for."),
    walltime: Optional[str] = typer.Option(None, "--walltime", help="With --on: walltime HH:MM:SS (default: the machine's)."),
    resume: bool = typer.Option(False, "--resume", help="With --on: continue the last interrupted training of REF there."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Write the run folder and print the commands; run nothing."),
    register: bool = typer.Option(True, "--register/--no-register", help="Register the potential in the store."),
    force: bool = typer.Option(False, "--force", help="Replace an existing non-empty --workdir."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only the learning curve and the result."),
    plot: bool = typer.Option(False, "--plot", help="Also draw <run folder>/parity.png (predicted vs DFT, test split)."),
    license_: Optional[str] = _LICENSE,
    author: Optional[list[str]] = _AUTHOR,
    description: Optional[str] = _DESCRIPTION,
) -> None:
    """Export REF with a seeded train/test split, write input.nn, run scaling, prune, train, pick the best epoch,
    and register the potential."""
    from mlds import train

    overrides = _settings(preset, cutoff, units)
    if on:
        from mlds.cli.jobs_cmds import train_on  # prepare -> mlds.compute job -> fetch -> finish

        pot = train_on(ref, on, ranks=ranks, nodes=nodes, walltime=walltime, detach=detach, resume=resume,
                       dry_run=dry_run, name=name, register=register, on_line=CurveView(quiet=quiet),
                       metadata=_extra_metadata(license_, author, description), print_run=_print_run,
                       settings=overrides, settings_file=settings_file, workdir=workdir, seed=seed,
                       test_fraction=test_fraction, epochs=epochs, force=force)
        if pot is not None:
            _print_potential(pot)
            lines = pot.lammps()
            console.print(f"LAMMPS:\n  {lines['units']}\n  {lines['pair_style']}\n  {lines['pair_coeff']}", highlight=False)
        return
    if detach or resume or nodes or walltime:
        from mlds.errors import MldsError

        raise MldsError("--nodes, --walltime, --detach and --resume need --on MACHINE (a local run: 'mlds train resume RUN_DIR')")
    if dry_run:
        run = train.train(ref, settings=overrides, settings_file=settings_file, workdir=workdir, seed=seed,
                          test_fraction=test_fraction, epochs=epochs, dry_run=True, force=force)
        _print_run(run)
        return
    with CurveView(quiet=quiet) as view:
        pot = train.train(ref, name=name, settings=overrides, settings_file=settings_file, workdir=workdir, seed=seed,
                          test_fraction=test_fraction, epochs=epochs, ranks=ranks, register=register, force=force,
                          on_line=view, parity_plot=plot, metadata=_extra_metadata(license_, author, description))
    _print_potential(pot)
    if plot:
        console.print(f"parity plot {pot.path.parent / 'parity.png'}", highlight=False)
    lines = pot.lammps()
    console.print(f"LAMMPS:\n  {lines['units']}\n  {lines['pair_style']}\n  {lines['pair_coeff']}", highlight=False)


def _print_run(run: Any) -> None:
    from mlds.train.estimate import available_memory, human

    est = run.estimate
    s = run.settings
    console.print(f"run folder {run.path}", highlight=False)
    console.print(f"  data      {run.dataset['name']}@{run.dataset.get('tag') or 'file'}: {est['frames']} frames, "
                  f"{est['atoms']} atoms, split seed {run.split['seed']}: {run.split['n_train']} train / "
                  f"{run.split['n_test']} test", highlight=False)
    console.print(f"  settings  preset {s['preset']}, elements {' '.join(s['elements'])}, cutoff {s['cutoff']} Å, "
                  f"units {s['units']}, {s['epochs']} epochs, network {s['network']['hidden_nodes']}", highlight=False)
    sf = ", ".join(f"{k} {v}" for k, v in est["symmetry_functions"].items())
    avail = available_memory()
    warn = " [red](more than this machine has available)[/]" if avail and est["memory_bytes"] > avail else ""
    console.print(f"  estimate  {human(est['memory_bytes'])} for symmetry functions in memory ({sf} functions, "
                  f"~{est['mean_neighbours']:.0f} neighbours per atom), {est['ranks']} rank(s){warn}", highlight=False)
    console.print("commands (job.sh runs them in order; nothing was run):", highlight=False)
    for c in run.commands:
        console.print(f"  {c}", highlight=False)
    console.print(f"  then: mlds train finish {run.path}", highlight=False)


@train_app.command("resume")
def train_resume(
    run_dir: Path = typer.Argument(..., help="Run folder of an interrupted training."),
    name: Optional[str] = typer.Option(None, "--name", "-n", help="Potential name in the store."),
    ranks: Optional[int] = typer.Option(None, "--ranks", help="MPI ranks (mpirun -np N)."),
    register: bool = typer.Option(True, "--register/--no-register"),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Continue an interrupted run from its last saved epoch (MLDS_RESUME=1), then finish it."""
    from mlds import train

    run = train.load_run(run_dir)
    with CurveView(quiet=quiet) as view:
        train.run_local(run, on_line=view, ranks=ranks, resume=True)
    pot = train.finish(run.path, name=name, register=register)
    _print_potential(pot)


@train_app.command("finish")
def train_finish(
    run_dir: Path = typer.Argument(..., help="Run folder whose job is done (e.g. fetched from a cluster)."),
    name: Optional[str] = typer.Option(None, "--name", "-n", help="Potential name in the store."),
    register: bool = typer.Option(True, "--register/--no-register"),
    as_json: bool = typer.Option(False, "--json", help="Print the potential's metadata as JSON."),
    plot: bool = typer.Option(False, "--plot", help="Also draw <run folder>/parity.png."),
    license_: Optional[str] = _LICENSE,
    author: Optional[list[str]] = _AUTHOR,
    description: Optional[str] = _DESCRIPTION,
) -> None:
    """Check a finished run, pick the best epoch, assemble the potential and register it."""
    from mlds import train

    pot = train.finish(run_dir, name=name, register=register, parity_plot=plot,
                       metadata=_extra_metadata(license_, author, description))
    if as_json:
        console.print_json(json.dumps(pot.metadata))
        return
    _print_potential(pot)


@train_app.command("status")
def train_status(run_dir: Path = typer.Argument(..., help="Run folder.")) -> None:
    """Show a run's job state and learning curve so far."""
    from mlds import train
    from mlds.train import jobscript as js

    run = train.load_run(run_dir)
    st = run.state
    console.print(f"{run.path}: {st.get('state', 'not started')} (step {st.get('step', '-')}) {st.get('message', '')}",
                  highlight=False)
    job = json.loads((run.path / js.RUN_FILE).read_text())["job"]
    for row in js.stitched_curve(run.path / "steps" / "train"):
        console.print(js.format_epoch(int(row["epoch"]), job["epochs"], row, job["energy_per_eV"],
                                      job["length_per_angstrom"]), highlight=False)


__all__ = ["err_console", "train_app"]
