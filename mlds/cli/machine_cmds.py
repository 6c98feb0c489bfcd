"""``mlds machine add|list|remove|check|template|url``: where jobs run."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from mlds.cli.app import app, console

machine_app = typer.Typer(
    help="Manage machines (clusters and hosts that run training jobs), kept in the mlds config.",
    no_args_is_help=False,
)
app.add_typer(machine_app, name="machine")


def _pairs(values: List[str], what: str, machine: str) -> dict:
    from mlds.compute.errors import MachineError  # here: importing mlds.compute costs every command ~40 ms

    out = {}
    for pair in values:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise MachineError(machine, f"{what} must be given as KEY=VALUE, not {pair!r}")
        out[key.strip()] = value
    return out


@machine_app.command("add")
def machine_add(
    name: str = typer.Argument(..., help="Short name, e.g. 'fugaku' or 'lab-cluster'."),
    scheduler: str = typer.Option("slurm", "--scheduler", "-s", help="slurm, pbs, pjm, lsf or shell (no batch system)."),
    host: Optional[str] = typer.Option(None, "--host", help="Login node, user@login.example.org or an ~/.ssh/config alias; omit for this computer."),
    port: Optional[int] = typer.Option(None, "--port", help="SSH port (default: ~/.ssh/config, else 22)."),
    workdir: str = typer.Option(..., "--workdir", "-w", help="Folder on the machine where job folders go (absolute, or ~/...)."),
    queue: Optional[str] = typer.Option(None, "--queue", "-q", help="Partition / queue / resource group."),
    account: Optional[str] = typer.Option(None, "--account", "-A", help="Account / project / group to charge."),
    module: List[str] = typer.Option([], "--module", help="Environment module to load in jobs (repeatable)."),
    source: List[str] = typer.Option([], "--source", help="Script to source in jobs (repeatable)."),
    prepend: List[str] = typer.Option([], "--prepend", help="Shell line to run before the job (repeatable)."),
    env: List[str] = typer.Option([], "--env", help="NAME=VALUE exported in jobs (repeatable; never secrets)."),
    n2p2_bin: Optional[str] = typer.Option(None, "--n2p2-bin", help="Folder holding nnp-* on the machine (default: PATH)."),
    mpirun: Optional[str] = typer.Option(None, "--mpirun", help="MPI launcher, e.g. 'srun' or 'mpiexec -n {ranks}' (default: the scheduler's)."),
    walltime: str = typer.Option("01:00:00", "--walltime", help="Default walltime (HH:MM:SS)."),
    header: Optional[Path] = typer.Option(None, "--header", help="Your own job-script header template (see 'mlds machine template')."),
    ssh_option: List[str] = typer.Option([], "--ssh-option", help="key=value: key_file, known_hosts_file, host_key_policy (known_hosts|strict|auto_add), allow_agent, look_for_keys, timeout, proxy_command."),
    poll_interval: float = typer.Option(15.0, "--poll-interval", help="Seconds between status checks while waiting."),
    project: bool = typer.Option(False, "--project/--user", help="Store in the project config (.mlds/config.toml) or the user config (default)."),
    force: bool = typer.Option(False, "--force", help="Replace a machine of the same name in that config."),
) -> None:
    """Add a machine.  SSH uses your ssh agent or key files; no password or
    other secret is ever stored."""
    from mlds.compute.machines import Machine, add_machine
    from mlds.remotes.config import parse_option_values

    ssh = parse_option_values(ssh_option, name) if ssh_option else {}
    machine = Machine(
        name=name, scheduler=scheduler.lower(), host=host or None, port=port, workdir=workdir, queue=queue,
        account=account, modules=list(module), source=list(source), prepend=list(prepend),
        env=_pairs(env, "--env", name), n2p2_bin=n2p2_bin, mpirun=mpirun, walltime=walltime,
        header=str(header) if header else None, poll_interval=poll_interval, ssh=ssh,
    )
    scope = "project" if project else "user"
    path = add_machine(machine, scope=scope, replace=force)
    console.print(f"added machine [bold]{name}[/] ({machine.scheduler} on {machine.display}, workdir {workdir}) to {path}", highlight=False, soft_wrap=True)
    console.print(f"check it with: mlds machine check {name}", highlight=False, soft_wrap=True)


@machine_app.command("list")
def machine_list() -> None:
    """List machines (a project machine hides a user machine of the same name)."""
    from rich.table import Table
    from mlds.compute.machines import list_machines

    machines = list_machines()
    if not machines:
        console.print("no machines configured; add one with 'mlds machine add NAME --host user@login --workdir PATH'")
        return
    table = Table(show_edge=False, header_style="bold")
    for col in ("name", "scheduler", "host", "workdir", "queue", "account", "scope"):
        table.add_column(col, overflow="fold")
    for m in machines:
        table.add_row(m.name, m.scheduler, m.display, m.workdir, m.queue or "", m.account or "", m.scope)
    console.print(table)


@machine_app.command("remove")
def machine_remove(
    name: str = typer.Argument(...),
    project: Optional[bool] = typer.Option(None, "--project/--user", help="Only from the project or the user config (default: wherever it is)."),
) -> None:
    """Remove a machine from the config (nothing on the machine is touched)."""
    from mlds.compute.machines import remove_machine

    scope = None if project is None else ("project" if project else "user")
    removed = remove_machine(name, scope=scope)
    console.print(f"removed machine [bold]{name}[/] from the {' and '.join(removed)} config", highlight=False, soft_wrap=True)


@machine_app.command("check")
def machine_check(name: str = typer.Argument(...)) -> None:
    """Can jobs run there?  Reachable, workdir writable, scheduler (and queue),
    python3, n2p2, free space.  Exit status 1 when a check fails."""
    from mlds.compute.check import check_machine
    from mlds.compute.machines import get_machine

    machine = get_machine(name)
    console.print(f"machine [bold]{name}[/]: {machine.scheduler} on {machine.display}", highlight=False, soft_wrap=True)
    items = check_machine(machine)
    for item in items:
        mark = "[green]ok[/]  " if item.ok else "[red]FAIL[/]"
        console.print(f"  {mark} {item.name}: {item.detail}", highlight=False, soft_wrap=True)
    failed = [i.name for i in items if not i.ok]
    if failed:
        console.print(f"[red]{len(failed)} check(s) failed:[/] {', '.join(failed)}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)


@machine_app.command("template")
def machine_template(
    name: str = typer.Argument(...),
    nodes: int = typer.Option(1, "--nodes"),
    ranks: int = typer.Option(1, "--ranks"),
    threads: int = typer.Option(1, "--threads"),
    walltime: Optional[str] = typer.Option(None, "--walltime"),
) -> None:
    """Show the machine's job-script header template and what it renders to.
    Copy it, edit it, and point the machine at it with 'mlds machine add ... --header FILE --force'."""
    from mlds.compute.machines import get_machine
    from mlds.compute.schedulers import Resources, header_template, header_values, render_header

    machine = get_machine(name)
    text, where = header_template(machine)
    values = header_values(machine, Resources(nodes=nodes, ranks=ranks, threads=threads, walltime=walltime), job_name="mlds-JOBID")
    console.print(f"# template ({where}); placeholders: {', '.join('{' + k + '}' for k in values)}", highlight=False, markup=False)
    console.print(text.rstrip("\n"), highlight=False, markup=False)
    console.print("# rendered (a directive whose placeholders are all empty is left out):", highlight=False, markup=False)
    console.print(render_header(text, values, machine=name, where=where).rstrip("\n"), highlight=False, markup=False)


@machine_app.command("url")
def machine_url(
    name: str = typer.Argument(...),
    path: str = typer.Argument("", help="Path on the machine (relative paths are inside its workdir)."),
) -> None:
    """Print the sftp:// URL of a folder on the machine (for 'mlds ingest')."""
    from mlds.compute import sftp_url

    console.print(sftp_url(name, path), highlight=False, markup=False, soft_wrap=True)
