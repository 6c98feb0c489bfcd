"""``mlds codes``: where the training codes' programs are, and building them (thin over mlds.codes)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from mlds.cli.app import app, console

codes_app = typer.Typer(help="External training codes (n2p2): find and build them.", no_args_is_help=False)
app.add_typer(codes_app, name="codes")


@codes_app.command("list")
def list_cmd() -> None:
    """Each code, whether its programs were found, where, and how."""
    from rich.table import Table
    from mlds import codes

    t = Table("code", "status", "version", "found via", "programs")
    for spec in codes.codes():
        try:
            loc = codes.locate(spec.name)
        except codes.CodeError as err:
            t.add_row(spec.name, "[red]missing[/]", "-", "-", str(err))
            continue
        where = str(loc.bin_dir) if loc.bin_dir else ", ".join(str(p) for p in loc.programs.values())
        t.add_row(spec.name, "[green]found[/]", loc.version or "?", loc.origin, where)
    console.print(t)


@codes_app.command("build")
def build_cmd(
    code: str = typer.Argument(..., help="Code to build (n2p2)."),
    source: Optional[str] = typer.Option(None, "--source", help="Release tarball path or URL (default: the upstream release)."),
    prefix: Optional[Path] = typer.Option(None, "--prefix", help="Also install the programs to PREFIX/bin and record it in the config."),
    native: bool = typer.Option(False, "--native", help="Compile with -march=native (fast, but only for this CPU type)."),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", help="Parallel compile jobs (default: the cores here)."),
    force: bool = typer.Option(False, "--force", help="Rebuild even when the cache has this build."),
) -> None:
    """Build a code from its release tarball into the cache (keyed by the tarball's sha256)."""
    from mlds import codes

    def on_line(line: str) -> None:
        console.print(f"[dim]{line}[/]", highlight=False)

    with console.status(f"building {code} (minutes, once per release)"):
        r = codes.build(code, source, prefix=prefix, native=native, jobs=jobs, force=force, on_line=on_line)
    what = "reused the cached build" if r.cached else f"built in {r.info.get('seconds', '?')} s"
    console.print(f"{r.code} {r.info.get('version', '')}: {what}; programs in {r.bin_dir}", highlight=False)
