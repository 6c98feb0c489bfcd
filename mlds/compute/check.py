"""``mlds machine check``: can jobs run there?

Reachable (SSH: host key, key/agent), work directory writable, scheduler
answering (and the configured queue known to it), ``python3`` and the n2p2
binaries on the path the job will see, free space in the work directory (what
``df`` can tell; per-user quotas are site tools we do not guess at).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from mlds.compute.machines import Machine, resolve
from mlds.compute.schedulers import get_scheduler
from mlds.compute.transport import Connection, connect


@dataclass
class CheckItem:
    name: str
    ok: bool
    detail: str


def _env_prefix(machine: Machine) -> str:
    """The job's environment setup, so checks see what the job will see."""
    parts = [f"module load {shlex.quote(m)} >/dev/null 2>&1" for m in machine.modules]
    parts += [f"source {shlex.quote(s)} >/dev/null 2>&1" for s in machine.source]
    if machine.n2p2_bin:
        parts.append(f"export PATH={shlex.quote(machine.n2p2_bin)}:$PATH")
    return "; ".join(parts) + ("; " if parts else "")


def check_machine(machine: Machine | str, *, conn: Connection | None = None) -> list[CheckItem]:
    """Run every check; connection failures raise one MachineError line."""
    m = resolve(machine)
    spec = get_scheduler(m.scheduler)
    own = conn is None
    if conn is None:
        conn = connect(m)
    items: list[CheckItem] = []
    try:
        items.append(CheckItem("reachable", True, "this computer" if m.is_local else f"{m.display} (ssh)"))
        workdir = conn.expand(m.workdir)
        r = conn.run(f"mkdir -p {shlex.quote(workdir)} && test -w {shlex.quote(workdir)} && echo ok")
        items.append(CheckItem("workdir", r.ok and "ok" in r.out, workdir if r.ok else f"{workdir}: {r.first_error_line()}"))

        if spec.queues_command:
            r = conn.run(_env_prefix(m) + spec.queues_command)
            cmd = spec.queues_command.split()[0]
            if r.rc == 127:
                items.append(CheckItem("scheduler", False, f"{cmd} not found (is this a {spec.name} machine? does it need a module?)"))
            elif not r.ok:
                items.append(CheckItem("scheduler", False, f"{cmd} failed: {r.first_error_line()}"))
            else:
                items.append(CheckItem("scheduler", True, f"{spec.name} answers ({cmd})"))
                if m.queue:
                    words = set(re.findall(r"[A-Za-z0-9_.\-]+", r.out))
                    known = sorted(w for w in re.findall(r"^\s*\S+", r.out, re.M))
                    items.append(CheckItem(
                        "queue", m.queue in words,
                        m.queue if m.queue in words else f"{m.queue!r} not offered (scheduler lists: {', '.join(k.strip() for k in known[:12])})",
                    ))
        else:
            items.append(CheckItem("scheduler", True, "none (jobs run in the background on the host)"))

        r = conn.run(_env_prefix(m) + "command -v python3 && python3 -c 'import sys; print(sys.version.split()[0])'")
        lines = r.out.split()
        items.append(CheckItem("python3", r.ok, f"{lines[0]} ({lines[-1]})" if r.ok and len(lines) >= 2 else "not found (job scripts need python3)"))

        r = conn.run(_env_prefix(m) + "command -v nnp-train")
        where = f" in {m.n2p2_bin}" if m.n2p2_bin else " on PATH"
        items.append(CheckItem("n2p2", r.ok and bool(r.out.strip()),
                               r.out.strip() if r.ok and r.out.strip() else f"nnp-train not found{where} (set --n2p2-bin or a module)"))

        r = conn.run(f"df -Pk {shlex.quote(workdir)} | tail -n 1")
        fields = r.out.split()
        if r.ok and len(fields) >= 4 and fields[3].isdigit():
            items.append(CheckItem("free space", True, f"{human_size(int(fields[3]) * 1024)} free on {fields[-1]}"))
        else:
            items.append(CheckItem("free space", True, "unknown (df gave no answer)"))
    finally:
        if own:
            conn.close()
    return items


def human_size(n: float) -> str:
    """``1.5 GiB``: bytes for people."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} PiB"
