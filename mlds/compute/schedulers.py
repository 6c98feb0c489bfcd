"""Batch schedulers, behind one small interface over dpdispatcher.

Which library, and why (tried on this project's real single-node Slurm 22.05,
over a real OpenSSH login node, in November 2026):

* **dpdispatcher 1.1.0** (DeepModeling; the engine of DP-GEN, used in
  production on Chinese and Japanese supercomputers).  Schedulers: Slurm
  (and job arrays), PBS Pro/OpenPBS, Torque, SGE, LSF, Fujitsu PJM
  (``Fugaku``), JH UniScheduler, local/remote shell, Bohrium cloud.  Contexts:
  local, SSH (paramiko, with upload/download of task folders), HDFS, cloud.
  Failures: a job that leaves the queue without its finish tag is
  ``terminated`` and resubmitted up to ``retry_count`` times, then raised
  with the last 1000 bytes of the task's stderr.  Actively released.
* **psij-python 0.9.11** (ExaWorks): the cleanest status model
  (QUEUED/ACTIVE/COMPLETED/FAILED/CANCELED with exit code; a failed and a
  cancelled Slurm job were told apart correctly) but Slurm, PBS, LSF, Cobalt
  and Flux only - no Fujitsu PJM - and no remote execution at all: it must run
  on the login node, which mlds cannot assume (no mlds on the cluster).
* **pysqa 1.1.1** (pyiron): Slurm, Torque, LSF, SGE, Moab, Flux; SSH via a
  remote queue adapter; no PJM, no PBS Pro.  A failed ``sbatch`` (invalid
  partition) returned ``None`` and wrote ``pysqa.err`` instead of raising, and
  a failed job and a successful one both became ``None`` once they left the
  queue - the difference mlds must report is invisible.  Pulls in pandas.

dpdispatcher is the only one covering PJM (Fugaku is a named target) and SSH,
so mlds uses it for what is scheduler-specific: the body of the job script
(modules, sources, exports, the task wrapper with its finish and failure
tags, the tail of stderr on failure), submission and job-id parsing
(``sbatch --parsable``, ``qsub``, ``pjsub``, ``bsub``), status parsing
(``squeue``, ``qstat -x``, ``pjstat``/``pjstat -H``, ``bjobs``, ``ps``) and
cancellation.  mlds keeps for itself:

* the **header** (the ``#SBATCH``/``#PBS``/``#PJM``/``#BSUB`` lines): the
  library's built-in headers set no walltime, account or output file for any
  scheduler, put PBS's ``#!`` on line 2 and give PJM none; mlds ships one
  template per scheduler (``mlds/compute/templates/*.sh``, each directive as
  the scheduler's manual documents it) and hands it to dpdispatcher through
  its documented ``customized_script_header_template_file``; a machine can
  point ``header`` at its own template;
* the **transport** (:mod:`mlds.compute.transport`): host keys checked, ssh
  agent and ``~/.ssh/config`` honoured, reconnect after a drop;
* **uploads** deduplicated by content hash (:mod:`mlds.compute.transfer`);
* **job records** and **resubmission**: a failed training run is not retried
  blindly three times; a walltime kill or node failure is resubmitted on
  request with ``MLDS_RESUME=1`` (:mod:`mlds.compute.jobs`).

Adding a scheduler dpdispatcher supports is configuration: one
:class:`Scheduler` entry and one header template.

Known library behaviour kept as is: when ``sbatch``/``squeue`` say the Slurm
controller cannot be contacted, dpdispatcher retries three times, 60 s apart,
before mlds reports the one-line error.  Its ``Shell.kill`` only kills the
script's shell, so the shell scheduler cancels the whole process tree itself.
"""

from __future__ import annotations

import functools
import importlib.resources
import logging
import math
import posixpath
import re
import shlex
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlds.compute.errors import MachineError
from mlds.compute.machines import Machine, format_walltime, parse_walltime
from mlds.compute.transport import Connection, Result

LOG = "mlds-job.log"                 # the job script's stdout+stderr, in the job folder
SCHEDULER_LOG = "mlds-scheduler.log"  # what the scheduler itself writes (kill notices)
STATE_FILE = "mlds-job.json"         # written by job.sh (see mlds.train.run)


@dataclass(frozen=True)
class Scheduler:
    """What mlds needs to know about one batch system besides dpdispatcher."""

    name: str
    batch_type: str                    # dpdispatcher Machine class
    submit_command: str                # for messages ("sbatch not found")
    launcher: str                      # MLDS_MPIRUN for ranks > 1; {ranks}, {nodes}
    queues_command: str | None = None  # answers if the scheduler is up; lists queue names
    cancel_command: str | None = None  # where dpdispatcher has no (good) kill(); {job_id}
    reason_command: str | None = None  # why a job that left the queue ended; {job_id}
    reason_pattern: str | None = None
    prepend: tuple[str, ...] = ()     # script lines before the job (after the machine's)
    doc: str = ""


SCHEDULERS: dict[str, Scheduler] = {
    "slurm": Scheduler(
        "slurm", "Slurm", "sbatch", "srun -n {ranks}",
        queues_command="sinfo -h -o %R",
        reason_command="scontrol show job -o {job_id} 2>/dev/null || sacct -n -X -P -o State -j {job_id}",
        reason_pattern=r"(?:JobState=|^)([A-Z_]+)\b",
        # Slurm requeues a batch job after a node failure (or scontrol requeue) and
        # runs the script again: let it continue from its checkpoint
        prepend=('if [ "${SLURM_RESTART_COUNT:-0}" -gt 0 ]; then export MLDS_RESUME=1; fi',),
        doc="https://slurm.schedmd.com/sbatch.html",
    ),
    "pbs": Scheduler(
        "pbs", "PBS", "qsub", "mpiexec -n {ranks}",
        queues_command="qstat -Q",
        doc="Altair PBS Professional User's Guide, 'Submitting a PBS Job' and qsub(1B)",
    ),
    "pjm": Scheduler(
        "pjm", "Fugaku", "pjsub", "mpiexec -n {ranks}",
        queues_command="pjstat --rsc",
        cancel_command="pjdel {job_id}",
        doc="Fugaku Users Guide - Use and job execution, 'Job execution' (pjsub options)",
    ),
    "lsf": Scheduler(
        "lsf", "LSF", "bsub", "mpirun -np {ranks}",
        queues_command="bqueues -w",
        doc="IBM Spectrum LSF command reference, bsub",
    ),
    "shell": Scheduler(
        "shell", "Shell", "nohup", "mpirun -np {ranks}",
        # dpdispatcher's Shell.kill sends SIGKILL to the script's shell only and
        # leaves the program running; end the whole process tree with SIGTERM
        cancel_command='_tree() { echo "$1"; for c in $(pgrep -P "$1"); do _tree "$c"; done; }; '
                       "kill -TERM $(_tree {job_id}) 2>/dev/null; true",
        doc="background process on the login host (no batch system)",
    ),
}

# Slurm job states that mean "stopped from outside": resubmit with --resume.
KILL_REASONS: dict[str, str] = {
    "TIMEOUT": "the walltime limit was reached",
    "NODE_FAIL": "a node failed",
    "BOOT_FAIL": "a node failed to boot",
    "PREEMPTED": "the job was preempted",
    "CANCELLED": "the job was cancelled outside mlds (scancel or an administrator)",
    "OUT_OF_MEMORY": "the job ran out of memory",
    "DEADLINE": "the job's deadline was reached",
}


def get_scheduler(name: str) -> Scheduler:
    try:
        return SCHEDULERS[name]
    except KeyError:
        raise MachineError("?", f"unknown scheduler {name!r} (use one of {', '.join(SCHEDULERS)})") from None


# -- resources and the job script -----------------------------------------------

@dataclass
class Resources:
    """What a job asks for.  ``ranks`` is the total number of MPI ranks."""

    nodes: int = 1
    ranks: int = 1
    threads: int = 1
    walltime: str | None = None      # default: the machine's
    queue: str | None = None         # default: the machine's
    account: str | None = None       # default: the machine's
    memory_bytes: int | None = None  # an estimate: {memory_mb} per node for site templates
    env: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v not in (None, {}, [])}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "Resources":
        return cls(**(data or {}))


def header_template(machine: Machine) -> tuple[str, str]:
    """``(text, where)`` of the machine's header template (its own or the built-in)."""
    if machine.header:
        path = Path(machine.header).expanduser()
        try:
            return path.read_text(encoding="utf-8"), str(path)
        except OSError as err:
            raise MachineError(machine.name, f"cannot read header template {path}: {err.strerror or err}") from None
    res = importlib.resources.files("mlds.compute") / "templates" / f"{machine.scheduler}.sh"
    return res.read_text(encoding="utf-8"), f"built-in {machine.scheduler} template"


def job_name(job_id: str) -> str:
    """The scheduler's job name: at most 15 characters starting with a letter
    (the strictest limit, PBS/Torque ``qsub -N``), unique enough to spot."""
    digits = "".join(c for c in job_id if c.isalnum())
    return "mlds_" + digits[-10:]


def header_values(machine: Machine, resources: Resources, job_name: str) -> dict[str, Any]:
    nodes = max(1, int(resources.nodes))
    ranks = max(1, int(resources.ranks))
    threads = max(1, int(resources.threads))
    per_node = math.ceil(ranks / nodes)
    seconds = parse_walltime(resources.walltime or machine.walltime, machine.name)
    hours, rest = divmod(math.ceil(seconds / 60), 60)
    return {
        "job_name": job_name,
        "nodes": nodes,
        "ranks": ranks,
        "ranks_per_node": per_node,
        "threads": threads,
        "cpus_per_node": per_node * threads,
        "walltime": format_walltime(seconds),
        "walltime_hm": f"{hours:02d}:{rest:02d}",
        "queue": resources.queue or machine.queue or "",
        "account": resources.account or machine.account or "",
        "log": SCHEDULER_LOG,
        # not in the built-in templates: sites differ on memory requests, and
        # an estimate that is too low gets a job killed; a site header can use it
        "memory_mb": math.ceil(resources.memory_bytes / nodes / 2**20) if resources.memory_bytes else "",
    }


def render_header(template: str, values: dict[str, Any], *, machine: str = "?", where: str = "") -> str:
    """Fill the template; a line whose placeholders are all empty is left out
    (no ``#SBATCH --account=`` when there is no account)."""
    out: list[str] = []
    for line in template.splitlines():
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(line) if f is not None]
        except ValueError as err:
            raise MachineError(machine, f"header template {where}: {err} in line {line!r}") from None
        if fields and all(values.get(f) in (None, "") for f in fields if f in values) and all(f in values for f in fields):
            continue
        try:
            out.append(line.format(**values))
        except (KeyError, IndexError) as err:
            known = ", ".join("{" + k + "}" for k in values)
            raise MachineError(machine, f"header template {where}: unknown placeholder {{{err.args[0]}}} (known: {known})") from None
    return "\n".join(out) + "\n"


def job_environment(machine: Machine, resources: Resources, *, job_id: str, resume: bool) -> dict[str, str]:
    """The variables job.sh reads (see mlds.train.run), plus the machine's own."""
    spec = get_scheduler(machine.scheduler)
    ranks = max(1, int(resources.ranks))
    launcher = machine.mpirun if machine.mpirun is not None else spec.launcher
    mpirun = launcher.format(ranks=ranks, nodes=resources.nodes) if ranks > 1 or machine.mpirun else ""
    env: dict[str, str] = {str(k): str(v) for k, v in machine.env.items()}
    env.update({
        "MLDS_JOB_ID": job_id,
        "MLDS_N2P2_BIN": machine.n2p2_bin or "",
        "MLDS_MPIRUN": mpirun,
        "MLDS_THREADS": str(max(1, int(resources.threads))),
        "OMP_NUM_THREADS": str(max(1, int(resources.threads))),
    })
    env.update({str(k): str(v) for k, v in resources.env.items()})
    if resume:
        env["MLDS_RESUME"] = "1"
    return env


# -- dpdispatcher ------------------------------------------------------------------

@functools.cache
def _dp():
    """Import dpdispatcher without its side effects: on import it opens
    ``./dpdispatcher.log`` in the current directory and logs INFO to stdout."""
    log = logging.getLogger("dpdispatcher")
    log.disabled = True
    import dpdispatcher
    from dpdispatcher.base_context import BaseContext
    from dpdispatcher.utils.job_status import JobStatus

    for handler in list(log.handlers):
        log.removeHandler(handler)
        handler.close()
    log.addHandler(logging.NullHandler())

    class _Stream:
        def __init__(self, text: str):
            self._data = text.encode("utf-8")

        def read(self) -> bytes:
            return self._data

        def readlines(self) -> list[str]:
            return self._data.decode("utf-8", "replace").splitlines(keepends=True)

    class MldsContext(BaseContext):
        """dpdispatcher's view of a job folder, over an mlds Connection.

        Only what its Machine classes call is implemented; uploads and
        downloads are mlds's own (deduplicated by content hash)."""

        def __init__(self, conn: Connection, remote_root: str):
            self.conn = conn
            self.remote_root = remote_root
            self.init_remote_root = remote_root
            self.local_root = self.init_local_root = ""
            self.remote_profile = {}
            self.last: Result | None = None

        def _path(self, fname: str) -> str:
            return posixpath.join(self.remote_root, fname)

        def block_call(self, cmd: str):
            self.last = self.conn.run(cmd, retry=not _changes_state(cmd))
            return self.last.rc, None, _Stream(self.last.out), _Stream(self.last.err)

        def block_checkcall(self, cmd: str, asynchronously: bool = False):
            rc, stdin, stdout, stderr = self.block_call(cmd)
            if rc != 0:
                raise RuntimeError(f"command failed with exit status {rc}")
            return stdin, stdout, stderr

        def write_file(self, fname: str, write_str: str) -> str:
            self.conn.write_text(self._path(fname), write_str)
            return fname

        def read_file(self, fname: str) -> str:
            text = self.conn.read_text(self._path(fname))
            if text is None:
                raise FileNotFoundError(self._path(fname))
            return text

        def check_file_exists(self, fname: str) -> bool:
            return self.conn.exists(self._path(fname))

        def upload(self, submission) -> None:  # pragma: no cover - never called
            raise NotImplementedError("mlds uploads through mlds.compute.transfer")

        def download(self, submission, check_exists=False, mark_failure=True, back_error=False):  # pragma: no cover
            raise NotImplementedError("mlds downloads through mlds.compute.transfer")

        def clean(self) -> None:  # pragma: no cover
            raise NotImplementedError

    return dpdispatcher, MldsContext, JobStatus


def _changes_state(cmd: str) -> bool:
    words = set(re.findall(r"[A-Za-z_]+", cmd))
    return bool(words & {"sbatch", "qsub", "pjsub", "bsub", "nohup", "scancel", "qdel", "pjdel", "bkill", "kill"})


@dataclass
class ScriptJob:
    """A dpdispatcher Job bound to one job folder on one machine."""

    machine: Machine
    job: Any            # dpdispatcher.Job
    context: Any        # MldsContext

    @property
    def dp_machine(self):
        return self.job.machine

    def script(self) -> str:
        """The batch script exactly as submitted."""
        return self.dp_machine.gen_script(self.job)

    def run_part(self) -> str:
        """The task part dpdispatcher sources from the script (``.sub.run``)."""
        return self.dp_machine.gen_script_command(self.job)

    @property
    def script_name(self) -> str:
        return self.job.script_file_name

    def serialize(self) -> dict:
        return self.job.serialize()


def build_job(
    machine: Machine,
    conn: Connection | None,
    *,
    remote_dir: str,
    script: str,
    resources: Resources,
    job_id: str,
    header_file: Path,
    resume: bool = False,
) -> ScriptJob:
    """A dpdispatcher job for ``bash script`` in ``remote_dir``.

    ``header_file`` receives the rendered header (kept next to the job
    record, so the exact directives stay inspectable)."""
    dp, MldsContext, _ = _dp()
    spec = get_scheduler(machine.scheduler)
    template, where = header_template(machine)
    header = render_header(template, header_values(machine, resources, job_name=job_name(job_id)), machine=machine.name, where=where)
    header_file.parent.mkdir(parents=True, exist_ok=True)
    # dpdispatcher fills this file with str.format(**resources): escape braces
    header_file.write_text(header.replace("{", "{{").replace("}", "}}"), encoding="utf-8")
    env = job_environment(machine, resources, job_id=job_id, resume=resume)
    res = dp.Resources(
        number_node=max(1, int(resources.nodes)),
        cpu_per_node=max(1, math.ceil(int(resources.ranks) / max(1, int(resources.nodes)))) * max(1, int(resources.threads)),
        gpu_per_node=0,
        queue_name=resources.queue or machine.queue or "",
        group_size=1,
        strategy={"customized_script_header_template_file": str(header_file)},
        module_list=list(machine.modules),
        source_list=list(machine.source),
        envs=env,
        prepend_script=list(machine.prepend) + list(spec.prepend),
    )
    task = dp.Task(
        command=f"bash {shlex.quote(script)}",
        task_work_path="./",
        forward_files=[],
        backward_files=[],
        outlog=LOG,
        errlog=LOG,
        task_name=job_name(job_id),
    )
    context = MldsContext(conn, remote_dir)
    dp_machine = dp.Machine.subclasses_dict[spec.batch_type](context=context)
    job = dp.Job([task], resources=res, machine=dp_machine)
    return ScriptJob(machine, job, context)


def load_job(machine: Machine, conn: Connection, remote_dir: str, serialized: dict) -> ScriptJob:
    """The job of a record, re-bound to a live connection (same hash, same id)."""
    dp, MldsContext, _ = _dp()
    spec = get_scheduler(machine.scheduler)
    context = MldsContext(conn, remote_dir)
    dp_machine = dp.Machine.subclasses_dict[spec.batch_type](context=context)
    job = dp.Job.deserialize(serialized, machine=dp_machine)
    return ScriptJob(machine, job, context)


def submit(sj: ScriptJob) -> str:
    """Submit through the scheduler; returns its job id (one-line error on refusal)."""
    spec = get_scheduler(sj.machine.scheduler)
    try:
        sj.job.submit_job()
    except RuntimeError as err:
        raise _submit_error(sj, spec, err) from None
    except (IndexError, ValueError) as err:  # unparsable submit output
        last = sj.context.last
        raise MachineError(sj.machine.name, f"{spec.submit_command} gave no job id ({(last.out or last.err).strip()[:200] if last else err})") from None
    job_id = str(sj.job.job_id)
    if not job_id:
        last = sj.context.last
        detail = last.first_error_line() if last else "the scheduler refused the job"
        raise MachineError(sj.machine.name, f"{spec.submit_command} did not accept the job: {detail}")
    return job_id


def _submit_error(sj: ScriptJob, spec: Scheduler, err: Exception) -> MachineError:
    last = sj.context.last
    if last is not None and last.rc == 127:
        return MachineError(
            sj.machine.name,
            f"scheduler command {spec.submit_command!r} not found on {sj.machine.display} "
            f"(is this a {spec.name} machine? does it need a module, see --module?)",
        )
    detail = last.first_error_line() if last is not None else " ".join(str(err).split())[:300]
    return MachineError(sj.machine.name, f"{spec.submit_command} refused the job: {detail}")


def check_status(sj: ScriptJob) -> str:
    """dpdispatcher's view: unsubmitted, waiting, running, completing,
    finished, terminated or unknown."""
    try:
        status = sj.dp_machine.check_status(sj.job)
    except RuntimeError as err:
        last = sj.context.last
        if last is not None and last.rc == 127:
            spec = get_scheduler(sj.machine.scheduler)
            raise MachineError(sj.machine.name, f"scheduler status command not found on {sj.machine.display} ({spec.name})") from None
        detail = last.first_error_line() if last is not None else " ".join(str(err).split())[:300]
        raise MachineError(sj.machine.name, f"cannot get the job's state: {detail}") from None
    return status.name


def cancel(sj: ScriptJob) -> None:
    spec = get_scheduler(sj.machine.scheduler)
    if spec.cancel_command:
        result = sj.context.conn.run(spec.cancel_command.replace("{job_id}", shlex.quote(str(sj.job.job_id))), retry=False)
        if not result.ok:
            raise MachineError(sj.machine.name, f"cannot cancel job {sj.job.job_id}: {result.first_error_line()}")
        return
    sj.dp_machine.kill(sj.job)
    last = sj.context.last
    if last is not None and last.rc == 127:
        raise MachineError(sj.machine.name, f"cannot cancel job {sj.job.job_id}: {last.first_error_line()}")


def kill_reason(machine: Machine, conn: Connection, scheduler_id: str) -> str | None:
    """The scheduler's word for why a job ended (``TIMEOUT``...), if it can tell."""
    spec = get_scheduler(machine.scheduler)
    if not spec.reason_command or not spec.reason_pattern:
        return None
    result = conn.run(spec.reason_command.replace("{job_id}", shlex.quote(scheduler_id)))
    if not result.ok:
        return None
    for line in result.out.splitlines():
        m = re.search(spec.reason_pattern, line.strip())
        if m:
            word = next(g for g in m.groups() if g)
            return word.upper()
    return None


def task_failed_flag(sj: ScriptJob) -> bool | None:
    """True when the task exited non-zero (dpdispatcher's flag file), False
    when it did not (or never got to say), None when the flag is absent."""
    text = sj.context.conn.read_text(posixpath.join(sj.context.remote_root, f"{sj.job.job_hash}_flag_if_job_task_fail"))
    if text is None:
        return None
    return text.strip() == "1"
