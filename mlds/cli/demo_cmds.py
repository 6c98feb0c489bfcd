"""`mlds demo`: the main job end to end on bundled data, no accounts needed."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from mlds.cli.app import app, console


@app.command()
def demo(
    workdir: Optional[Path] = typer.Option(None, "--workdir", help="Folder to work in (default: a new temporary folder)."),
) -> None:
    """Run the whole loop on bundled data: import, validate, version, push, promote, search, pull."""
    from mlds.demo import run_demo

    work = run_demo(workdir, say=lambda msg: console.print(msg, highlight=False))
    console.print(f"[bold green]demo finished[/] in {work}")
