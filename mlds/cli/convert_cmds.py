"""`mlds convert`: any reader to any writer, with progress and a per-file summary."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from mlds.cli.app import app, console, err_console


@app.command()
def convert(
    inputs: list[str] = typer.Argument(..., help="Input files, folders or glob patterns."),
    output: Path = typer.Option(..., "-o", "--output", help="Output: .h5/.zarr/.zarr.zip dataset, or a file/folder for --to."),
    from_fmt: Optional[str] = typer.Option(None, "--from", help="Input format (detected from content when omitted)."),
    to_fmt: Optional[str] = typer.Option(None, "--to", help="Output format: mlds, extxyz, n2p2, aenet (mlds by suffix)."),
    units: Optional[str] = typer.Option(None, "--units", help="n2p2 unit system: angstrom-ev or bohr-hartree (needed to read n2p2)."),
    keep_unconverged: bool = typer.Option(False, "--keep-unconverged", help="Keep SCF-unconverged steps, flagged, instead of dropping them."),
    test_fraction: Optional[float] = typer.Option(None, "--test-fraction", help="n2p2: tag this fraction of frames set=test (rest set=train)."),
    seed: int = typer.Option(0, "--seed", help="Random seed for --test-fraction."),
    name: Optional[str] = typer.Option(None, "--name", help="Dataset name (mlds output)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or summary table."),
) -> None:
    """Convert DFT outputs and training files between formats."""
    from mlds.convert import convert as run_convert

    reader_options: dict = {}
    if keep_unconverged:
        reader_options["keep_unconverged"] = True
    if units:
        reader_options["units"] = units
    writer_options: dict = {}
    if units and to_fmt == "n2p2":
        writer_options["units"] = units
    metadata = {"name": name} if name else None

    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[frames]} frames"),
        TimeElapsedColumn(), console=err_console, disable=quiet, transient=True,
    )
    with progress:
        task = progress.add_task("converting", total=None, frames=0)
        state = {"frames": 0}

        def on_file(path: Path, i: int, n: int) -> None:
            progress.update(task, total=n, completed=i, description=f"{path.name}")

        def on_frame() -> None:
            state["frames"] += 1
            if state["frames"] % 50 == 0:
                progress.update(task, frames=state["frames"])

        result = run_convert(
            inputs, output, from_fmt=from_fmt, to_fmt=to_fmt, reader_options=reader_options,
            writer_options=writer_options, metadata=metadata, on_file=on_file, on_frame=on_frame,
            test_fraction=test_fraction, seed=seed,
        )
    if not quiet:
        table = Table(title="per file", show_edge=False)
        for col in ("file", "format", "kept", "dropped", "warnings"):
            table.add_column(col)
        import os

        paths = [r.path for r in result.reports]
        base = os.path.commonpath(paths) if len(paths) > 1 else os.path.dirname(paths[0]) if paths else ""
        for rep in result.reports:
            shown = os.path.relpath(rep.path, base) if base else rep.path
            warnings = "; ".join(w.replace(rep.path, shown) for w in rep.warnings) or "-"
            dropped = ", ".join(f"{k}: {v}" for k, v in rep.dropped.items()) or "-"
            table.add_row(shown, rep.format, str(rep.kept), dropped, warnings)
        for path, why in result.skipped_inputs:
            table.add_row(path, "-", "0", "-", why)
        console.print(table)
    total_dropped = sum(sum(r.dropped.values()) for r in result.reports)
    console.print(f"wrote {result.n_frames} frames to {output} ({total_dropped} dropped)", soft_wrap=True)
