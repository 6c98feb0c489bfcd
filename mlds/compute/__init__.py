"""Run where the compute is: machines, batch schedulers, jobs.

* :mod:`~mlds.compute.machines` - machines as ``[machines.NAME]`` config;
* :mod:`~mlds.compute.schedulers` - Slurm, PBS, PJM, LSF, shell through
  dpdispatcher (why that library: see its docstring);
* :mod:`~mlds.compute.transport` - SSH (or this computer), reconnecting;
* :mod:`~mlds.compute.transfer` - content-addressed uploads, result fetch;
* :mod:`~mlds.compute.jobs` - job records, submit/wait/status/fetch/cancel/resubmit;
* :mod:`~mlds.compute.check` - ``mlds machine check``.

A run folder (:mod:`mlds.train.run`) goes to a machine with::

    job = mlds.compute.submit("run/", "mycluster", inputs=[...], outputs=[...],
                              resources=Resources(nodes=1, ranks=4, walltime="2:00:00"))
    mlds.compute.fetch(job)
"""

from __future__ import annotations

from mlds.compute.check import CheckItem, check_machine
from mlds.compute.errors import ConnectionLost, JobError, JobNotFound, MachineError
from mlds.compute.jobs import (
    JobRecord,
    annotate,
    cancel,
    fetch,
    list_jobs,
    load,
    log_tail,
    render_script,
    resubmit,
    status,
    submit,
    wait,
)
from mlds.compute.machines import Machine, add_machine, get_machine, list_machines, remove_machine
from mlds.compute.schedulers import SCHEDULERS, Resources, header_template


def sftp_url(machine: Machine | str, path: str = "") -> str:
    """``sftp://user@host[:port]/abs/path`` of a folder on a machine, for
    ``mlds ingest`` (relative paths are inside the machine's workdir)."""
    from mlds.compute import machines
    from mlds.compute.transport import connect

    m = machines.resolve(machine)
    target = machines.remote_path(m, path)
    home = None
    if target.startswith("~"):
        with connect(m) as conn:
            home = conn.home()
    return machines.sftp_url(m, path, home=home)


__all__ = [
    "CheckItem", "ConnectionLost", "JobError", "JobNotFound", "JobRecord", "Machine", "MachineError",
    "Resources", "SCHEDULERS", "add_machine", "annotate", "cancel", "check_machine", "fetch",
    "get_machine", "header_template", "list_jobs", "list_machines", "load", "log_tail", "remove_machine",
    "render_script", "resubmit", "sftp_url", "status", "submit", "wait",
]
