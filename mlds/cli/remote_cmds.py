"""``mlds remote add|list|remove|check``: remotes configured like git remotes."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any, List, Optional

import typer

from mlds.cli.app import app, console
from mlds.errors import MldsError


class _Config:
    """mlds.remotes.config (with tomllib) loaded on a remote command's first use, not at every mlds start
    (issue 12)."""

    def __getattr__(self, name: str) -> Any:
        from mlds.remotes import config

        return getattr(config, name)


cfg = _Config()

remote_app = typer.Typer(
    help="Manage remotes (where datasets are pushed to and pulled from).",
    no_args_is_help=False,
)
app.add_typer(remote_app, name="remote")


def _scope(project: Optional[bool]) -> Optional[str]:
    if project is None:
        return None
    return "project" if project else "user"


@remote_app.command("add")
def remote_add(
    name: str = typer.Argument(..., help="Short name for the remote, e.g. 'lab'."),
    url: str = typer.Argument(..., help="Path, file://, s3://bucket/prefix, sftp://user@host:port/path, https://mirror, rdm://project/provider/path"),
    tier: str = typer.Option("personal", "--tier", "-t", help="personal, group or public."),
    project: Optional[bool] = typer.Option(None, "--project/--user", help="Store in the project config (.mlds/config.toml; the default inside a project) or the user config (the default elsewhere)."),
    default: bool = typer.Option(False, "--default", "-d", help="Make it the default remote (what push/pull use without -r)."),
    option: List[str] = typer.Option([], "--option", "-o", help="Backend option key=value (repeatable), e.g. endpoint_url=..., profile=..., anon=true, key_file=~/.ssh/id_ed25519. Never credentials."),
    force: bool = typer.Option(False, "--force", help="Replace an existing remote of the same name in that config."),
) -> None:
    """Add a remote (to the project config inside a project, like git).  Credentials are never stored:
    they come from the environment, AWS profiles, the ssh agent or key files, or a token file."""
    options = cfg.parse_option_values(option, name)
    scope = _scope(project) or _default_scope()
    remote = cfg.add_remote(name, url, tier=tier, scope=scope, options=options, replace=force)
    console.print(f"added remote [bold]{remote.name}[/] -> {remote.display_url} (tier {remote.tier}, {scope} config)", highlight=False)
    if default:
        cfg.set_default_remote(name, scope)
        console.print(f"default remote: [bold]{name}[/]", highlight=False)


def _default_scope() -> str:
    """Like git: inside a project (a .mlds/ folder here or above) the project config, else the user's."""
    return "project" if cfg.find_project_root() is not None else "user"


@remote_app.command("default")
def remote_default(
    name: Optional[str] = typer.Argument(None, help="Remote to make the default; omit to show the current one."),
    project: Optional[bool] = typer.Option(None, "--project/--user", help="Which config to write (default: the project's inside a project)."),
) -> None:
    """Show or set the default remote (used by push, pull and clone without -r)."""
    if name is None:
        current = cfg.default_remote()
        console.print(current or "no default remote; set one with 'mlds remote default NAME'", highlight=False)
        return
    scope = _scope(project) or _default_scope()
    path = cfg.set_default_remote(name, scope)
    console.print(f"default remote: [bold]{name}[/] ({scope} config {path})", highlight=False)


@remote_app.command("list")
def remote_list() -> None:
    """List remotes (a project remote hides a user remote of the same name)."""
    remotes = cfg.list_remotes()
    if not remotes:
        console.print("no remotes configured; add one with 'mlds remote add NAME URL'")
        return
    from rich.table import Table

    table = Table(show_edge=False, header_style="bold")
    for col in ("name", "url", "tier", "scope", "options"):
        table.add_column(col, overflow="fold")
    default = cfg.default_remote()
    for r in remotes:
        opts = ", ".join(f"{k}={v}" for k, v in sorted(r.display_options.items()))
        table.add_row(r.name + (" (default)" if r.name == default else ""), r.display_url, r.tier, r.scope, opts)
    console.print(table)


@remote_app.command("remove")
def remote_remove(
    name: str = typer.Argument(...),
    project: Optional[bool] = typer.Option(None, "--project/--user", help="Only from the project or the user config (default: wherever it is defined)."),
) -> None:
    """Remove a remote from the config (nothing on the remote is deleted)."""
    removed = cfg.remove_remote(name, scope=_scope(project))
    console.print(f"removed remote [bold]{name}[/] from the {' and '.join(removed)} config", highlight=False)


def _rdm_check(remote: cfg.Remote) -> None:
    """Who am I / project / permission / quota, from the GakuNin RDM helper."""
    try:
        from mlds.remotes.rdm import auth as rdm_auth
    except ImportError:
        return
    check = getattr(rdm_auth, "check", None)
    if check is None:
        return
    kwargs: dict[str, Any] = {}
    if remote.options.get("api_url"):
        kwargs["api_url"] = remote.options["api_url"]
    with _translate(remote):
        info = check(remote.url, **kwargs)
    lines = info.lines() if hasattr(info, "lines") else [f"{k}: {v}" for k, v in dataclasses.asdict(info).items()]
    for line in lines:
        console.print(f"  {line}", highlight=False)


def _translate(remote: cfg.Remote):
    from mlds.remotes.filesystems import translate_errors

    return translate_errors(remote)


@remote_app.command("check")
def remote_check(name: str = typer.Argument(...)) -> None:
    """Connect to a remote: is it reachable, is it an mlds store, can we write?"""
    from mlds.remotes.filesystems import open_remote_fs

    remote = cfg.get_remote(name)
    console.print(f"remote [bold]{remote.name}[/]: {remote.display_url} (tier {remote.tier}, {remote.scope} config)", highlight=False)
    fs, root = open_remote_fs(remote)
    read_only = remote.scheme in ("http", "https")
    with _translate(remote):
        is_store = fs.exists(f"{root}/mlds-store.json")
        if read_only:
            entries = None
        else:
            try:
                entries = len(fs.ls(root, detail=False))
            except FileNotFoundError:
                entries = -1
    console.print("  reachable: yes", highlight=False)
    if entries == -1:
        console.print("  root: does not exist yet (created by the first push)", highlight=False)
    elif entries is not None:
        console.print(f"  root: {entries} entr{'y' if entries == 1 else 'ies'}", highlight=False)
    console.print(f"  mlds store: {'yes' if is_store else 'no (not initialised yet)'}", highlight=False)
    if read_only:
        console.print("  writable: no (read-only mirror)", highlight=False)
    else:
        probe = f"{root}/.mlds-check-{uuid.uuid4().hex}"
        try:
            with _translate(remote):
                fs.pipe_file(probe, b"mlds remote check\n")
                fs.rm(probe)
            console.print("  writable: yes", highlight=False)
        except MldsError as err:
            console.print(f"  writable: no ({err})", highlight=False)
    if remote.scheme == "rdm":
        _rdm_check(remote)
