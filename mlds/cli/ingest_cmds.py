"""`mlds ingest`: finished calculations in run trees -> new dataset versions (thin over mlds.ingest)."""

from __future__ import annotations

import json
import os
from typing import Optional

import typer

from mlds.cli.app import app, console, err_console


@app.command()
def ingest(
    paths: list[str] = typer.Argument(..., help="Run trees to walk: folders, single files, or sftp://user@host/path URLs."),
    dataset: Optional[str] = typer.Option(
        None, "-d", "--dataset",
        help="Target dataset; may be a template ({formula}, {system}, {folder}, {parent}). "
             "Default: the \\[ingest] rules of the mlds config."),
    push: Optional[str] = typer.Option(None, "--push", metavar="REMOTE",
                                       help="Remote (name or URL, as for 'mlds push'; an empty value: the default remote) that receives every new version, e.g. your group remote."),
    watch: bool = typer.Option(False, "--watch", help="Keep going: ingest again every --interval seconds (polling, so it works on Lustre/GPFS)."),
    interval: float = typer.Option(60.0, "--interval", help="Seconds between passes with --watch."),
    max_rounds: Optional[int] = typer.Option(None, "--max-rounds", help="With --watch: stop after this many passes."),
    workers: Optional[int] = typer.Option(None, "-j", "--workers", help="Conversion processes (default: one per core; 1 = in this process)."),
    dask: Optional[str] = typer.Option(None, "--dask", help="Convert on Dask instead: local, a scheduler address (tcp://host:8786), or slurm/pbs/sge/lsf via dask-jobqueue."),
    settle: float = typer.Option(2.0, "--settle", help="An unfinished output that changes within this many seconds is still being written."),
    stale_after: float = typer.Option(3600.0, "--stale-after", help="An output without its closing mark, untouched this long, is read as an interrupted run (its complete steps)."),
    option: list[str] = typer.Option([], "--option", help="Remote option for sftp:// trees, key=value (e.g. key_file=~/.ssh/id_ed25519); repeatable."),
    message: Optional[str] = typer.Option(None, "-m", "--message", help="Version message (default: what was ingested from where)."),
    keep_unconverged: bool = typer.Option(False, "--keep-unconverged", help="Keep SCF-unconverged steps, flagged, instead of dropping them."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="No progress bar; only new versions and problems."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Collect finished VASP / Quantum ESPRESSO runs into new dataset versions (one per dataset per pass).

    Only runs not seen before are read; a second pass over an unchanged tree adds nothing.
    At the end of a job script:  mlds ingest "$PWD" -d NAME --push group
    """
    import mlds.ingest as I
    from mlds.remotes.config import parse_option_values

    options = parse_option_values(option, "ingest") if option else None
    push = _push_remote(push)
    kwargs = dict(store=None, options=options, workers=workers, dask=dask, settle=settle, stale_after=stale_after,
                  push=push, message=message, reader_options={"keep_unconverged": True} if keep_unconverged else None)
    if watch:
        def on_round(n: int, res: "I.IngestResult | BaseException") -> None:
            if isinstance(res, BaseException):
                err_console.print(f"[bold red]pass {n}:[/] {res}", highlight=False, soft_wrap=True)
            else:
                _report(res, quiet=True, as_json=as_json, header=f"pass {n}")

        try:
            I.watch(paths, dataset, interval=interval, rounds=max_rounds, on_round=on_round, **kwargs)
        except KeyboardInterrupt:
            err_console.print("stopped watching")
        return
    with _progress(quiet or as_json) as note:
        result = I.ingest(paths, dataset, progress=note, **kwargs)
    _report(result, quiet=quiet, as_json=as_json)
    if result.n_candidates == 0 and not result.outcomes:
        err_console.print(f"no calculation outputs (VASP OUTCAR/vasprun.xml, pw.x output/XML) found under {', '.join(paths)}",
                          highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    if not result.ok:
        raise typer.Exit(1)


def _push_remote(push: str | None) -> str | None:
    """The remote as 'mlds push' resolves it, checked before any run is read: a typo fails now, not after the commit."""
    if push is None:
        return None
    from mlds.remotes import config as cfg
    from mlds.store.api import _looks_like_location

    remote = cfg.resolve_remote_name(push)
    if not _looks_like_location(remote):
        cfg.get_remote(remote)  # one line naming the known remotes when there is no such remote
    return remote


class _progress:
    """A Rich progress bar fed by the library's ``progress(phase, done, total)`` callback."""

    def __init__(self, disabled: bool) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        # refreshed on each update, not by Rich's timer thread: with no other thread running, the
        # conversion pool can fork (see mlds.ingest.executors)
        self.bar = Progress(TextColumn("{task.description:<11}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), console=err_console, disable=disabled or not err_console.is_terminal, transient=True,
                            auto_refresh=False)
        self.tasks: dict[str, int] = {}

    def __enter__(self):
        self.bar.__enter__()

        def note(phase: str, done: int, total: int | None) -> None:
            if phase not in self.tasks:
                self.tasks[phase] = self.bar.add_task(phase, total=total)
            self.bar.update(self.tasks[phase], completed=done, total=total)
            self.bar.refresh()

        return note

    def __exit__(self, *exc) -> None:
        self.bar.__exit__(*exc)


def _report(result, *, quiet: bool, as_json: bool, header: str | None = None) -> None:
    from rich.table import Table
    import mlds.ingest.core as C

    if as_json:
        from dataclasses import asdict

        console.print_json(json.dumps({
            "outcomes": [asdict(o) for o in result.outcomes], "versions": result.versions, "pushed": result.pushed,
            "push_errors": result.push_errors, "problems": [asdict(p) for p in result.problems],
            "elapsed_s": round(result.elapsed, 3)}, default=str))
        return
    if header:
        import time

        console.print(f"[dim]{time.strftime('%H:%M:%S')}[/] {header}: {len(result.versions)} new version(s), "
                      f"{result.count(C.RUNNING)} running, {len(result.failed)} failed", highlight=False)
    listed = [o for o in result.outcomes if o.status not in C.QUIET]
    if quiet:
        listed = [o for o in listed if o.status in (C.FAILED, C.VANISHED)]
    if listed:
        base = _common_folder([o.path for o in listed])
        table = Table(title="ingest", show_edge=False, title_justify="left")
        table.add_column("source", overflow="fold", min_width=16)
        table.add_column("format", no_wrap=True)
        table.add_column("dataset", no_wrap=True)
        table.add_column("frames", justify="right")
        table.add_column("dropped")
        table.add_column("status", min_width=24)
        for o in listed:
            dropped = ", ".join(f"{k}: {v}" for k, v in o.dropped.items()) or "-"
            status = o.status + (f": {o.reason}" if o.reason else "")
            style = "red" if o.status == C.FAILED else None
            table.add_row(_rel(o.path, base), o.format or "-", o.dataset or "-", str(o.frames) if o.frames else "-",
                          dropped, status, style=style)
        console.print(table)
    quiet_counts = [(s, result.count(s)) for s in C.QUIET if result.count(s)]
    if quiet_counts:
        console.print(", ".join(f"{n} source(s) {s}" for s, n in quiet_counts), highlight=False)
    for p in result.problems:
        err_console.print(f"[yellow]skipped[/] {p.loc}: {p.reason}", highlight=False, soft_wrap=True)
    for name, rep in sorted(result.versions.items()):
        dup = rep.get("duplicates_skipped") or 0
        console.print(f"{name}: new version v{rep.get('version')} (+{rep.get('n_frames_added', '?')} frames"
                      + (f", {dup} duplicate frame(s) not stored" if dup else "") + ")", highlight=False)
    if not result.versions and not quiet:
        console.print("nothing new: no version made", highlight=False)
    for name in sorted(result.pushed):
        console.print(f"pushed {name}", highlight=False)
    for name, why in sorted(result.push_errors.items()):
        err_console.print(f"[bold red]push of {name} failed[/] (kept locally, tried again next time): {why}",
                          highlight=False, soft_wrap=True)


def _common_folder(paths: list[str]) -> str:
    if len(paths) < 2:
        return paths[0].rsplit("/", 1)[0] if paths and "/" in paths[0] else ""
    try:
        return os.path.commonpath(paths)
    except ValueError:
        return ""


def _rel(path: str, base: str) -> str:
    if base and path.startswith(base.rstrip("/") + "/"):
        return path[len(base.rstrip("/")) + 1:]
    return path
