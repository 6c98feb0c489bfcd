"""``mlds jobs submit|ls|status|log|fetch|cancel|resubmit``: jobs on machines.

:func:`follow` is the waiting UI (state changes, the job's log as it grows,
Ctrl-C leaves the job running); ``mlds train ... --on`` uses it too.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Callable, List, Optional

import typer

from mlds.cli.app import app, console, err_console

jobs_app = typer.Typer(help="Jobs on machines: submit run folders, follow, fetch, cancel, resubmit.", no_args_is_help=False)
app.add_typer(jobs_app, name="jobs")


def _stamp() -> str:
    return _dt.datetime.now().strftime("%H:%M:%S")


def _state_line(record) -> None:
    style = {"done": "green", "failed": "red", "killed": "red", "lost": "red", "cancelled": "yellow"}.get(record.state, "cyan")
    extra = f" ({record.scheduler} job {record.scheduler_id})" if record.state == "queued" and record.scheduler_id else ""
    msg = f": {record.message}" if record.message and record.state not in ("preparing",) else ""
    console.print(f"[dim]{_stamp()}[/] job {record.id}: [{style}]{record.state}[/]{extra}{msg}", highlight=False, soft_wrap=True)


def _log_line(line: str) -> None:
    console.print("  | " + line, highlight=False, markup=False, style="dim")


def follow(start: Callable[..., object], *, quiet_log: bool = False, on_line: Callable[[str], None] | None = None):
    """Run ``start(on_state=..., on_line=..., on_upload=...)`` showing state
    changes, an upload progress bar and the job's log as it grows.

    Ctrl-C stops following, never the job (exit 130 with how to pick it up)."""
    from rich.progress import DownloadColumn, Progress, SpinnerColumn, TextColumn, TransferSpeedColumn

    from mlds.compute.check import human_size

    seen: dict = {}
    bar = Progress(SpinnerColumn(), TextColumn("uploading"), DownloadColumn(), TransferSpeedColumn(),
                   console=console, transient=True)

    def on_upload(nbytes: int) -> None:
        if "task" not in seen:
            bar.start()
            seen["task"] = bar.add_task("upload", total=None)
        bar.advance(seen["task"], nbytes)

    def on_state(record) -> None:
        if "task" in seen and record.state != "uploading":
            bar.stop()
        seen["id"] = record.id
        _state_line(record)
        if record.state == "queued" and record.upload and not seen.get("upload_shown"):
            seen["upload_shown"] = True
            up, reused = record.upload.get("uploaded", []), record.upload.get("reused", [])
            console.print(
                f"  uploaded {len(up)} file(s) ({human_size(record.upload.get('bytes_uploaded', 0))}), "
                f"{len(reused)} already on the machine", highlight=False, style="dim",
            )

    try:
        record = start(on_state=on_state, on_line=None if quiet_log else (on_line or _log_line), on_upload=on_upload)
    except KeyboardInterrupt:
        if seen.get("id"):
            err_console.print(
                f"stopped following job {seen['id']}; it keeps running: 'mlds jobs status {seen['id']} --wait'",
                highlight=False, soft_wrap=True,
            )
        raise typer.Exit(130)
    finally:
        bar.stop()
    return record


def finish_or_raise(record) -> None:
    """Print the log tail of a job that ended badly, then raise its one line."""
    if record.state not in ("done", "queued", "running", "submitting") and record.log_tail:
        err_console.print(f"last lines of the job's log ({record.remote_dir}):", highlight=False, soft_wrap=True)
        for line in record.log_tail:
            err_console.print(f"  | {line}", highlight=False, markup=False)
    record.raise_for_state()


def _resources(nodes, ranks, threads, walltime, queue, account):
    from mlds.compute.schedulers import Resources

    return Resources(nodes=nodes, ranks=ranks, threads=threads, walltime=walltime, queue=queue, account=account)


@jobs_app.command("submit")
def jobs_submit(
    run_dir: Path = typer.Argument(..., help="Run folder holding the job script and its inputs."),
    on: str = typer.Option(..., "--on", help="Machine to run on (see 'mlds machine list')."),
    script: str = typer.Option("job.sh", "--script", help="Job script inside the run folder."),
    input: List[str] = typer.Option([], "--input", "-i", help="Input to upload (repeatable; default: every file of the folder)."),
    output: List[str] = typer.Option([], "--output", "-o", help="Result glob to fetch back (repeatable; default: every file)."),
    nodes: int = typer.Option(1, "--nodes"),
    ranks: int = typer.Option(1, "--ranks", help="MPI ranks in total."),
    threads: int = typer.Option(1, "--threads", help="OpenMP threads per rank."),
    walltime: Optional[str] = typer.Option(None, "--walltime", help="HH:MM:SS (default: the machine's)."),
    queue: Optional[str] = typer.Option(None, "--queue", "-q"),
    account: Optional[str] = typer.Option(None, "--account", "-A"),
    detach: bool = typer.Option(False, "--detach", help="Return after submitting; follow later with 'mlds jobs status ID --wait'."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the batch script and submit nothing."),
    fetch: bool = typer.Option(True, "--fetch/--no-fetch", help="Fetch the results into the run folder when the job is done."),
) -> None:
    """Submit a run folder to a machine, wait for it and fetch its results."""
    from mlds import compute

    res = _resources(nodes, ranks, threads, walltime, queue, account)
    if dry_run:
        console.print(compute.render_script(run_dir, on, script=script, resources=res), highlight=False, markup=False)
        return
    record = follow(lambda **cb: compute.submit(
        run_dir, on, script=script, inputs=input or None, outputs=output or None, resources=res, detach=detach, **cb))
    _ended(record, "submitted", detach=detach, fetch=fetch)


def _ended(record, verb: str, *, detach: bool, fetch: bool) -> None:
    """After submitting: how to follow a detached job, or the outcome (and the results)."""
    from mlds import compute

    if detach:
        console.print(f"{verb} job {record.id}; follow it with 'mlds jobs status {record.id} --wait'", highlight=False, soft_wrap=True)
        return
    finish_or_raise(record)
    if fetch:
        files = compute.fetch(record)
        console.print(f"fetched {len(files)} file(s) into {record.run_dir}", highlight=False, soft_wrap=True)


@jobs_app.command("ls")
def jobs_ls(
    machine: Optional[str] = typer.Option(None, "--machine", "-m", help="Only jobs of this machine."),
    limit: int = typer.Option(20, "--limit", "-n", help="Show at most this many (newest first); 0 for all."),
) -> None:
    """The job history (as last seen; 'mlds jobs status ID' asks the machine)."""
    from rich.table import Table
    from mlds.compute import list_jobs

    records = list_jobs(machine)
    if not records:
        console.print("no jobs yet; submit one with 'mlds jobs submit RUN_DIR --on MACHINE' or 'mlds train ... --on MACHINE'")
        return
    table = Table(show_edge=False, header_style="bold")
    for col in ("id", "machine", "state", "sched. id", "created"):
        table.add_column(col, no_wrap=True)
    table.add_column("message", overflow="fold")
    for r in records[: limit or None]:
        created = r.created[:16].replace("T", " ")
        table.add_row(r.id, r.machine, r.state, r.scheduler_id, created, r.message)
    console.print(table)


@jobs_app.command("status")
def jobs_status(
    job_id: str = typer.Argument(..., help="Job id (or a unique prefix)."),
    wait: bool = typer.Option(False, "--wait", help="Follow the job until it ends."),
    refresh: bool = typer.Option(True, "--refresh/--no-refresh", help="Ask the machine (default) or show the record as last seen."),
) -> None:
    """Where a job is now (reconnects to its machine; picks up a job whose client was killed)."""
    from mlds import compute

    if wait:
        record = follow(lambda **cb: compute.wait(job_id, on_state=cb["on_state"], on_line=cb["on_line"]))
    else:
        record = compute.status(job_id, refresh=refresh)
    _show(record)
    if record.state not in ("done", "queued", "running", "submitting", "preparing", "uploading"):
        raise typer.Exit(1)


def _show(record) -> None:
    console.print(f"job [bold]{record.id}[/] on {record.machine} ({record.host})", highlight=False, soft_wrap=True)
    rows = [
        ("state", record.state + (f" (at {record.stage})" if record.stage and record.state == "failed" else "")),
        ("message", record.message),
        ("scheduler id", record.scheduler_id),
        ("attempts", str(len(record.attempts)) if len(record.attempts) > 1 else ""),
        ("resumable", "yes: mlds jobs resubmit " + record.id + " --resume" if record.resumable and record.state in ("killed", "cancelled") else ""),
        ("run folder", record.run_dir),
        ("job folder", record.remote_dir),
        ("fetched", f"{len(record.fetched.get('files', {}))} file(s) at {record.fetched.get('time')}" if record.fetched.get("files") else record.fetched.get("error", "")),
        ("result", ", ".join(f"{k}={v}" for k, v in record.result.items())),
    ]
    for key, value in rows:
        if value:
            console.print(f"  {key}: {value}", highlight=False, markup=False)
    if record.log_tail and record.state != "done":
        console.print("  log tail:", highlight=False)
        for line in record.log_tail:
            console.print(f"    | {line}", highlight=False, markup=False)


@jobs_app.command("log")
def jobs_log(
    job_id: str = typer.Argument(...),
    lines: int = typer.Option(50, "--lines", "-n"),
) -> None:
    """The last lines of a job's log, read from its machine."""
    from mlds.compute import log_tail

    for line in log_tail(job_id, lines):
        console.print(line, highlight=False, markup=False)


@jobs_app.command("fetch")
def jobs_fetch(
    job_id: str = typer.Argument(...),
    force: bool = typer.Option(False, "--force", help="Overwrite local files this job did not write."),
    partial: bool = typer.Option(False, "--partial", help="Fetch what there is from a job that did not finish (logs, checkpoints)."),
) -> None:
    """Download a finished job's results into its run folder."""
    from mlds import compute

    files = compute.fetch(job_id, force=force, partial=partial)
    record = compute.load(job_id)
    console.print(f"fetched {len(files)} file(s) into {record.run_dir}", highlight=False, soft_wrap=True)


@jobs_app.command("cancel")
def jobs_cancel(job_id: str = typer.Argument(...)) -> None:
    """Cancel a queued or running job."""
    from mlds import compute

    record = compute.cancel(job_id)
    console.print(record.summary(), highlight=False)


@jobs_app.command("resubmit")
def jobs_resubmit(
    job_id: str = typer.Argument(...),
    resume: bool = typer.Option(True, "--resume/--restart", help="Continue from the last checkpoint (MLDS_RESUME=1), or start over."),
    walltime: Optional[str] = typer.Option(None, "--walltime", help="A new walltime (HH:MM:SS)."),
    nodes: Optional[int] = typer.Option(None, "--nodes"),
    ranks: Optional[int] = typer.Option(None, "--ranks"),
    queue: Optional[str] = typer.Option(None, "--queue", "-q"),
    detach: bool = typer.Option(False, "--detach"),
    fetch: bool = typer.Option(True, "--fetch/--no-fetch"),
) -> None:
    """Submit a killed (walltime, node failure), failed or cancelled job again in its job folder."""
    from mlds import compute

    override = {k: v for k, v in dict(walltime=walltime, nodes=nodes, ranks=ranks, queue=queue).items() if v is not None}
    record = follow(lambda **cb: compute.resubmit(job_id, resume=resume, resources=override or None, detach=detach,
                                                  on_state=cb["on_state"], on_line=cb["on_line"]))
    _ended(record, "resubmitted", detach=detach, fetch=fetch)


def train_on(ref: str, machine: str, *, ranks: int | None, nodes: int | None, walltime: str | None, detach: bool,
             resume: bool, dry_run: bool, name: str | None, register: bool, metadata: dict | None,
             on_line: Callable[[str], None] | None, print_run: Callable[[object], None], **prepare_kwargs):
    """``mlds train ... --on MACHINE``: the potential, or None when detached or dry."""
    from mlds import compute, train
    from mlds.compute import training

    resources = {k: v for k, v in dict(ranks=ranks, nodes=nodes, walltime=walltime).items() if v is not None}
    if resume:
        result = follow(lambda **cb: training.resume_on_machine(
            ref, machine, resources=resources or None, detach=detach, name=name, register=register,
            metadata=metadata, on_state=cb["on_state"], on_line=cb["on_line"]), on_line=on_line)
    elif dry_run:
        run = train.prepare(ref, **prepare_kwargs)
        print_run(run)
        console.print(f"batch script for {machine}:", highlight=False, soft_wrap=True)
        console.print(compute.render_script(run.path, machine, script=run.script,
                                            resources=training.job_resources(run, resources)),
                      highlight=False, markup=False)
        return None
    else:
        result = follow(lambda **cb: training.train_on_machine(
            ref, machine, name=name, register=register, metadata=metadata, resources=resources, detach=detach,
            **cb, **prepare_kwargs),
            on_line=on_line)
    job = result.job
    if detach:
        console.print(f"submitted job {job.id} to {machine}; follow it with 'mlds jobs status {job.id} --wait', "
                      f"then 'mlds jobs fetch {job.id}' and 'mlds train finish {job.run_dir}'", highlight=False, soft_wrap=True)
        return None
    finish_or_raise(job)
    return result.potential
