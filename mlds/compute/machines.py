"""Machines: where jobs run, kept as ``[machines.NAME]`` in the mlds config.

A machine lives in the same TOML files as remotes (user config, project
config; see :mod:`mlds.remotes.config`)::

    [machines.fugaku]
    scheduler = "pjm"                      # slurm | pbs | pjm | lsf | shell
    host = "u12345@login.fugaku.r-ccs.riken.jp"
    workdir = "/vol0004/hp000000/u12345/mlds"
    queue = "small"                        # partition / queue / resource group
    account = "hp000000"                   # account / project / group
    modules = ["lang/tcsds-1.2.38"]
    n2p2_bin = "/home/u12345/n2p2/bin"

    [machines.fugaku.ssh]                  # optional; ~/.ssh/config is honoured
    key_file = "~/.ssh/id_ed25519"

No secrets are ever stored: SSH authenticates with the agent or key files,
never a password, and options or environment variables that look like
credentials are refused (the same rule as for remotes).  A machine without
``host`` runs on this computer.
"""

from __future__ import annotations

import dataclasses
import posixpath
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlds.compute.errors import MachineError
from mlds.remotes import config as cfg

SECTION = "machines"
SSH_OPTIONS = (
    "key_file", "known_hosts_file", "host_key_policy", "allow_agent", "look_for_keys",
    "timeout", "proxy_command", "config_file",
)
HOST_KEY_POLICIES = ("known_hosts", "strict", "auto_add")
_WALLTIME_RE = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d{1,2}))?(?::(\d{1,2}))?$")
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass
class Machine:
    """One place jobs run: a scheduler, a login host (or this computer) and a
    work directory.  Everything else has a sensible default."""

    name: str
    scheduler: str = "slurm"
    workdir: str = ""
    host: str | None = None
    port: int | None = None
    queue: str | None = None
    account: str | None = None
    modules: list[str] = field(default_factory=list)
    source: list[str] = field(default_factory=list)
    prepend: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    n2p2_bin: str | None = None
    mpirun: str | None = None
    ranks_per_node: int | None = None
    walltime: str = "01:00:00"
    header: str | None = None
    poll_interval: float = 15.0
    ssh: dict[str, Any] = field(default_factory=dict)
    scope: str = "user"

    @property
    def is_local(self) -> bool:
        return not self.host

    @property
    def user(self) -> str | None:
        if self.host and "@" in self.host:
            return self.host.rsplit("@", 1)[0]
        return None

    @property
    def hostname(self) -> str | None:
        if not self.host:
            return None
        return self.host.rsplit("@", 1)[-1]

    @property
    def display(self) -> str:
        if self.is_local:
            return "this computer"
        return self.host + (f":{self.port}" if self.port else "")

    def to_table(self) -> dict[str, Any]:
        """The TOML table: defaults and empty values left out."""
        out: dict[str, Any] = {}
        defaults = Machine(name=self.name)
        for f in dataclasses.fields(self):
            if f.name in ("name", "scope"):
                continue
            value = getattr(self, f.name)
            if f.name in ("scheduler", "workdir") or (value not in (None, [], {}, "") and value != getattr(defaults, f.name)):
                out[f.name] = value
        return out

    @classmethod
    def from_table(cls, name: str, table: dict[str, Any], scope: str = "user") -> "Machine":
        known = {f.name for f in dataclasses.fields(cls)} - {"name", "scope"}
        unknown = sorted(set(table) - known)
        if unknown:
            raise MachineError(name, f"unknown setting(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        machine = cls(name=name, scope=scope, **table)
        validate(machine)
        return machine


def parse_walltime(value: str | int, machine: str = "") -> int:
    """Seconds from ``HH:MM:SS``, ``MM:SS``... as Slurm reads it: ``M``,
    ``M:S``, ``H:M:S``, ``D-H``, ``D-H:M``, ``D-H:M:S``; an int is minutes."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value * 60
    m = _WALLTIME_RE.match(str(value).strip())
    if not m or str(value).strip() == "":
        raise MachineError(machine or "?", f"invalid walltime {value!r}: use HH:MM:SS (or D-HH:MM:SS)")
    days, a, b, c = m.groups()
    nums = [int(x) for x in (a, b, c) if x is not None]
    if days is not None:
        h, mnt, s = (nums + [0, 0, 0])[:3]
        total = int(days) * 86400 + h * 3600 + mnt * 60 + s
    elif len(nums) == 1:
        total = nums[0] * 60
    elif len(nums) == 2:
        total = nums[0] * 60 + nums[1]
    else:
        total = nums[0] * 3600 + nums[1] * 60 + nums[2]
    if total <= 0:
        raise MachineError(machine or "?", f"invalid walltime {value!r}: must be positive")
    return total


def format_walltime(seconds: int) -> str:
    """``HH:MM:SS`` (hours may exceed 24), the form every scheduler accepts."""
    h, rest = divmod(int(seconds), 3600)
    m, s = divmod(rest, 60)
    return f"{h:02d}:{m:02d}:{s:02d}"


def validate(machine: Machine) -> None:
    from mlds.compute.schedulers import SCHEDULERS

    name = machine.name
    if machine.scheduler not in SCHEDULERS:
        raise MachineError(name, f"unknown scheduler {machine.scheduler!r} (use one of {', '.join(SCHEDULERS)})")
    if not machine.workdir:
        raise MachineError(name, "no workdir set (the folder on the machine where jobs run, e.g. /scratch/$USER/mlds)")
    if not (machine.workdir.startswith("/") or machine.workdir.startswith("~")):
        raise MachineError(name, f"workdir {machine.workdir!r} must be an absolute path (or start with ~)")
    if machine.host is not None:
        if not isinstance(machine.host, str) or any(c.isspace() for c in machine.host) or machine.host.count("@") > 1:
            raise MachineError(name, f"invalid host {machine.host!r}: use user@login.example.org or an ~/.ssh/config alias")
        if ":" in machine.host.rsplit("@", 1)[-1] and not machine.host.rsplit("@", 1)[-1].startswith("["):
            raise MachineError(name, f"invalid host {machine.host!r}: give the port with --port, not host:port")
    if machine.port is not None and not (isinstance(machine.port, int) and 0 < machine.port < 65536):
        raise MachineError(name, f"invalid port {machine.port!r}")
    parse_walltime(machine.walltime, name)
    if machine.ranks_per_node is not None and (not isinstance(machine.ranks_per_node, int) or machine.ranks_per_node < 1):
        raise MachineError(name, "ranks_per_node must be a positive integer")
    for key in ("modules", "source", "prepend"):
        value = getattr(machine, key)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise MachineError(name, f"{key} must be a list of strings")
    if not isinstance(machine.env, dict):
        raise MachineError(name, "env must be a table of NAME = value")
    for key, value in machine.env.items():
        if not _ENV_NAME_RE.match(key):
            raise MachineError(name, f"invalid environment variable name {key!r}")
        if cfg.is_secret_option(key):
            raise MachineError(name, f"refusing to store environment variable {key!r}: it looks like a credential; mlds config never holds secrets")
        if not isinstance(value, (str, int, float, bool)):
            raise MachineError(name, f"environment variable {key} must be a string")
    if not isinstance(machine.ssh, dict):
        raise MachineError(name, "ssh must be a table of options")
    for key in machine.ssh:
        if cfg.is_secret_option(key) or key not in SSH_OPTIONS:
            if cfg.is_secret_option(key):
                raise MachineError(
                    name,
                    f"refusing to store ssh option {key!r}: it looks like a credential; "
                    "SSH uses the ssh agent or a key file (ssh.key_file), never a password",
                )
            raise MachineError(name, f"unknown ssh option {key!r} (known: {', '.join(SSH_OPTIONS)})")
    policy = machine.ssh.get("host_key_policy", "known_hosts")
    if policy not in HOST_KEY_POLICIES:
        raise MachineError(name, f"ssh.host_key_policy must be one of {', '.join(HOST_KEY_POLICIES)}")
    if machine.header is not None and not Path(machine.header).expanduser().is_file():
        raise MachineError(name, f"header template {machine.header} does not exist")
    try:
        float(machine.poll_interval)
    except (TypeError, ValueError):
        raise MachineError(name, "poll_interval must be a number of seconds") from None


# -- config -------------------------------------------------------------------

def list_machines(cwd: Path | str | None = None) -> list[Machine]:
    """Every configured machine, sorted by name (a project one hides a user one)."""
    entries = cfg.section_entries(SECTION, cwd)
    return [Machine.from_table(name, table, scope) for name, (scope, table) in sorted(entries.items())]


def get_machine(name: str, cwd: Path | str | None = None) -> Machine:
    entries = cfg.section_entries(SECTION, cwd)
    if name in entries:
        scope, table = entries[name]
        return Machine.from_table(name, table, scope)
    known = ", ".join(sorted(entries)) or "none configured"
    raise MachineError(name, f"no such machine (known machines: {known}); add one with 'mlds machine add NAME --host ... --workdir ...'")


def add_machine(machine: Machine, *, scope: str = "user", replace: bool = False, cwd: Path | str | None = None) -> Path:
    """Validate and write ``[machines.NAME]``; returns the config file."""
    if machine.header:
        machine.header = str(Path(machine.header).expanduser().resolve())
    validate(machine)
    machine.scope = scope
    try:
        return cfg.set_section_entry(SECTION, machine.name, machine.to_table(), scope=scope, replace=replace, cwd=cwd)
    except cfg.ConfigError as err:
        raise MachineError(machine.name, str(err)) from None


def remove_machine(name: str, *, scope: str | None = None, cwd: Path | str | None = None) -> list[str]:
    removed = cfg.remove_section_entry(SECTION, name, scope=scope, cwd=cwd)
    if not removed:
        known = ", ".join(sorted(cfg.section_entries(SECTION, cwd))) or "none configured"
        raise MachineError(name, f"no such machine in {'the ' + scope if scope else 'any'} config (known machines: {known})")
    return removed


def resolve(machine: Machine | str) -> Machine:
    return machine if isinstance(machine, Machine) else get_machine(machine)


def remote_path(machine: Machine, path: str = "") -> str:
    """``path`` on the machine: relative paths are taken inside its workdir."""
    if path.startswith("/") or path.startswith("~"):
        return posixpath.normpath(path)
    return posixpath.normpath(posixpath.join(machine.workdir, path)) if path else machine.workdir


def sftp_url(machine: Machine | str, path: str = "", *, home: str | None = None) -> str:
    """An ``sftp://`` URL for a folder on the machine, for ``mlds ingest``.

    Relative paths are inside the machine's workdir.  A path under ``~`` needs
    ``home`` (the login's home directory, :func:`mlds.compute.sftp_url` asks
    the machine for it): SFTP URLs hold absolute paths.
    """
    m = resolve(machine)
    p = remote_path(m, path)
    if p.startswith("~"):
        if home is None:
            raise MachineError(m.name, f"{p} is relative to the home directory; give an absolute path")
        p = posixpath.normpath(posixpath.join(home, p[1:].lstrip("/")))
    if m.is_local:
        return p
    netloc = m.host + (f":{m.port}" if m.port else "")
    return f"sftp://{netloc}{p}"
