"""Jobs: submit a run folder to a machine, follow it, fetch its results.

Every job has a record, a JSON file under ``<user data dir>/mlds/jobs/``,
written atomically at each step *before* the step's effect can be lost: the
record exists before anything is uploaded, holds the scheduler's job hash
before ``sbatch`` runs and the scheduler's id right after.  Killing the client
at any moment loses nothing: ``mlds jobs status ID`` reconnects, asks the
scheduler and carries on (a job id that never came back from ``sbatch`` is
recovered from the ``<hash>_job_id`` file dpdispatcher leaves in the job
folder).

States: ``preparing``, ``uploading``, ``submitting``, ``queued``, ``running``
and the final ``done``, ``failed`` (the program said so or exited non-zero;
the record keeps the tail of its log), ``killed`` (walltime, node failure,
pre-emption, scancel: resubmit with ``--resume`` to continue from the last
checkpoint with ``MLDS_RESUME=1``), ``cancelled`` (by ``mlds jobs cancel``)
and ``lost`` (nothing is known to run).  ``stage`` tells where a failure
happened: ``connect``, ``upload``, ``submit``, ``run`` or ``fetch``.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import posixpath
import secrets
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from mlds.compute import schedulers as sch
from mlds.compute import transfer
from mlds.compute.errors import ConnectionLost, JobError, JobNotFound, MachineError
from mlds.compute.machines import Machine, get_machine, resolve
from mlds.compute.transport import Connection, connect
from mlds.util import atomic_path, sha256_file

ACTIVE = ("preparing", "uploading", "submitting", "queued", "running")
FINAL = ("done", "failed", "killed", "cancelled", "lost")
RESUBMITTABLE = ("killed", "failed", "cancelled")
RECORD_FORMAT = "mlds-job-record"
RECORD_VERSION = 1
LOG_TAIL_LINES = 20

StateCallback = Callable[["JobRecord"], None]
LineCallback = Callable[[str], None]


def jobs_dir() -> Path:
    """Where job records live (``$XDG_DATA_HOME/mlds/jobs`` on Linux)."""
    import platformdirs

    return Path(platformdirs.user_data_dir("mlds")) / "jobs"


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


@dataclass
class JobRecord:
    id: str
    machine: str
    scheduler: str
    host: str
    run_dir: str
    remote_dir: str = ""
    script: str = "job.sh"
    inputs: list[dict] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    required: list[str] | None = None    # outputs that must exist (None: all)
    resources: dict = field(default_factory=dict)
    state: str = "preparing"
    stage: str = ""
    message: str = ""
    resumable: bool = False
    scheduler_id: str = ""
    scheduler_job: dict = field(default_factory=dict)
    attempts: list[dict] = field(default_factory=list)
    history: list[dict] = field(default_factory=list)
    log_tail: list[str] = field(default_factory=list)
    log_offset: int = 0
    upload: dict = field(default_factory=dict)
    fetched: dict = field(default_factory=dict)
    result: dict = field(default_factory=dict)
    client: dict = field(default_factory=dict)   # who is submitting: host and pid
    created: str = ""
    updated: str = ""

    # -- persistence -------------------------------------------------------------
    @property
    def path(self) -> Path:
        return jobs_dir() / f"{self.id}.json"

    @property
    def header_path(self) -> Path:
        return jobs_dir() / f"{self.id}.header.sh"

    def to_dict(self) -> dict[str, Any]:
        return {"format": RECORD_FORMAT, "version": RECORD_VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "JobRecord":
        data = dict(data)
        if data.pop("format", RECORD_FORMAT) != RECORD_FORMAT:
            raise JobError("not an mlds job record")
        version = data.pop("version", 1)
        if version > RECORD_VERSION:
            raise JobError(f"job record version {version} is newer than this mlds understands; upgrade mlds")
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})

    def save(self) -> None:
        self.updated = _now()
        with atomic_path(self.path) as tmp:
            tmp.write_text(json.dumps(self.to_dict(), indent=1, sort_keys=False) + "\n", encoding="utf-8")

    # -- state -------------------------------------------------------------------
    @property
    def is_final(self) -> bool:
        return self.state in FINAL

    def set_state(self, state: str, message: str = "", *, stage: str | None = None, resumable: bool | None = None) -> bool:
        """Change state (recorded in the history); returns whether it changed."""
        changed = state != self.state or (message and message != self.message)
        self.state = state
        if stage is not None:
            self.stage = stage
        if resumable is not None:
            self.resumable = resumable
        if message or state in ACTIVE:
            self.message = message
        if changed:
            self.history.append({"time": _now(), "state": state, **({"message": message} if message else {})})
        return bool(changed)

    def summary(self) -> str:
        where = f" ({self.scheduler} job {self.scheduler_id})" if self.scheduler_id else ""
        text = f"job {self.id} on {self.machine}{where}: {self.state}"
        return text + (f": {self.message}" if self.message else "")

    def raise_for_state(self) -> "JobRecord":
        """Return self when the job is done (or still active); else one line."""
        if self.state in ("done",) or self.state in ACTIVE:
            return self
        hint = ""
        if self.state in RESUBMITTABLE and self.resumable:
            hint = f"; continue it with 'mlds jobs resubmit {self.id} --resume'"
        raise JobError(self.summary() + hint)


# -- records -------------------------------------------------------------------------

def new_job_id() -> str:
    return _dt.datetime.now().strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)


def load(job_id: "str | JobRecord") -> JobRecord:
    """The record of ``job_id`` (an id or a unique prefix of one)."""
    if isinstance(job_id, JobRecord):
        return job_id
    base = jobs_dir()
    path = base / f"{job_id}.json"
    if not path.is_file():
        candidates = sorted(base.glob(f"{job_id}*.json")) if job_id and "/" not in job_id else []
        candidates = [c for c in candidates if not c.name.endswith(".header.sh")]
        if len(candidates) == 1:
            path = candidates[0]
        elif len(candidates) > 1:
            raise JobNotFound(f"job id {job_id!r} is ambiguous: {', '.join(c.stem for c in candidates[:5])}")
        else:
            raise JobNotFound(f"no job {job_id!r} (see 'mlds jobs ls')")
    try:
        return JobRecord.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError) as err:
        raise JobError(f"{path}: unreadable job record ({err})") from None


def list_jobs(machine: str | None = None) -> list[JobRecord]:
    """Every job record, newest first (optionally of one machine)."""
    base = jobs_dir()
    out = []
    for path in base.glob("*.json") if base.is_dir() else []:
        with contextlib.suppress(JobError, JobNotFound):
            rec = load(path.stem)
            if machine is None or rec.machine == machine:
                out.append(rec)
    return sorted(out, key=lambda r: (r.created, r.id), reverse=True)


def _machine_of(record: JobRecord) -> Machine:
    try:
        return get_machine(record.machine)
    except MachineError:
        raise MachineError(record.machine, f"job {record.id} ran on this machine, which is no longer configured; add it again to follow the job") from None


# -- submission ------------------------------------------------------------------------

def render_script(
    run_dir: str | os.PathLike,
    machine: Machine | str,
    *,
    script: str = "job.sh",
    resources: sch.Resources | dict | None = None,
    resume: bool = False,
) -> str:
    """The batch script a submission would use, without connecting (``--dry-run``)."""
    m = resolve(machine)
    res = as_resources(resources)
    job_id = "00000000-000000-0000"
    remote_dir = posixpath.join(m.workdir, "jobs", job_id)
    import tempfile

    with tempfile.TemporaryDirectory(prefix="mlds-dry-run-") as tmp:
        sj = sch.build_job(m, None, remote_dir=remote_dir, script=script, resources=res, job_id=job_id,
                           header_file=Path(tmp) / "header.sh", resume=resume)
        script_text = sj.script()
        run_text = sj.run_part()
    return (
        f"# batch script ({m.scheduler}, {sj.script_name} in {remote_dir})\n{script_text}\n"
        f"# sourced task part ({sj.script_name}.run)\n{run_text}"
    )


def as_resources(resources: sch.Resources | dict | None) -> sch.Resources:
    """Resources from a dict or an object, checked (one line on a bad value)."""
    if resources is None:
        res = sch.Resources()
    elif isinstance(resources, dict):
        unknown = sorted(set(resources) - set(sch.Resources.__dataclass_fields__))
        if unknown:
            raise JobError(f"unknown resource(s) {', '.join(unknown)} (known: {', '.join(sch.Resources.__dataclass_fields__)})")
        res = sch.Resources.from_dict(resources)
    else:
        res = resources
    for key in ("nodes", "ranks", "threads"):
        value = getattr(res, key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise JobError(f"{key} must be a positive integer, not {value!r}")
    if res.nodes > res.ranks:
        raise JobError(f"{res.nodes} nodes need at least as many ranks (got {res.ranks})")
    return res


def submit(
    run_dir: str | os.PathLike,
    machine: Machine | str,
    *,
    script: str = "job.sh",
    inputs: Iterable[str] | None = None,
    outputs: Iterable[str] | None = None,
    resources: sch.Resources | dict | None = None,
    detach: bool = False,
    on_state: StateCallback | None = None,
    on_line: LineCallback | None = None,
    on_upload: Callable[[int], None] | None = None,
    poll: float | None = None,
    required: Iterable[str] | None = None,
    notes: dict[str, Any] | None = None,
) -> JobRecord:
    """Upload what the job needs, submit ``script``, and (unless ``detach``) wait.

    ``inputs`` are paths relative to ``run_dir`` (default: every non-hidden
    file); ``outputs`` are globs fetched back by :func:`fetch` (default: every
    file of the job folder); ``required`` are the globs that must match for a
    fetch to succeed (default: every output).  Returns the job record; a job
    that ends badly is *returned* (``record.raise_for_state()`` turns it into
    one line).  ``notes`` start the record's ``result`` (what the job is for).
    """
    run_path = Path(run_dir).expanduser().resolve()
    if not run_path.is_dir():
        raise JobError(f"run folder {run_path} does not exist")
    m = resolve(machine)
    script = transfer.check_relative(script, "script")
    if not (run_path / script).is_file():
        raise JobError(f"{run_path}: job script {script} does not exist")
    in_list = list(inputs) if inputs is not None else transfer.default_inputs(run_path)
    if script not in in_list:
        in_list.append(script)
    described = transfer.describe_inputs(run_path, in_list)
    out_list = [transfer.check_relative(o, "output") for o in outputs] if outputs is not None else ["*"]
    req_list = None if required is None else [transfer.check_relative(o, "required output") for o in required]
    res = as_resources(resources)
    sch.parse_walltime(res.walltime or m.walltime, m.name)

    record = JobRecord(
        id=new_job_id(), machine=m.name, scheduler=m.scheduler, host=m.display, run_dir=str(run_path),
        script=script, inputs=[i.to_dict() for i in described], outputs=out_list, required=req_list,
        resources=res.to_dict(), created=_now(), result=dict(notes or {}), client=_client(),
    )
    record.set_state("preparing")
    record.save()
    _notify(on_state, record)

    try:
        conn = connect(m)
    except MachineError as err:
        _fail_before_run(record, "connect", err, on_state)
        raise
    try:
        workdir = conn.expand(m.workdir)
        record.remote_dir = f"{workdir}/jobs/{record.id}"
        record.set_state("uploading")
        record.save()
        _notify(on_state, record)
        try:
            report = transfer.upload_inputs(conn, run_path, workdir, record.remote_dir, described, progress=on_upload)
        except (MachineError, JobError) as err:
            _fail_before_run(record, "upload", err, on_state)
            raise
        record.upload = report.to_dict()
        _submit_attempt(record, m, conn, res, resume=False, on_state=on_state)
        if detach:
            return record
        return _wait_on(record, m, conn, on_state=on_state, on_line=on_line, poll=poll)
    finally:
        conn.close()


def _submit_attempt(record: JobRecord, m: Machine, conn: Connection, res: sch.Resources, *, resume: bool, on_state) -> None:
    try:
        sj = sch.build_job(m, conn, remote_dir=record.remote_dir, script=record.script, resources=res,
                           job_id=record.id, header_file=record.header_path, resume=resume)
    except MachineError as err:
        _fail_before_run(record, "submit", err, on_state)
        raise
    record.scheduler_job = sj.serialize()
    record.scheduler_id = ""
    record.set_state("submitting")
    record.save()  # the job hash is on disk before sbatch runs
    try:
        scheduler_id = sch.submit(sj)
    except MachineError as err:
        _fail_before_run(record, "submit", err, on_state)
        raise
    record.scheduler_id = scheduler_id
    record.scheduler_job = sj.serialize()
    record.attempts.append({"scheduler_id": scheduler_id, "submitted": _now(), "resume": resume,
                            "resources": res.to_dict()})
    record.log_tail = []
    record.set_state("queued", stage="run", resumable=False)
    record.save()
    _notify(on_state, record)


def _fail_before_run(record: JobRecord, stage: str, err: Exception, on_state) -> None:
    record.set_state("failed", str(err), stage=stage, resumable=False)
    record.save()
    _notify(on_state, record)


def _notify(cb: StateCallback | None, record: JobRecord) -> None:
    if cb is not None:
        cb(record)


# -- following a job ------------------------------------------------------------------

def wait(
    job: "str | JobRecord",
    *,
    on_state: StateCallback | None = None,
    on_line: LineCallback | None = None,
    poll: float | None = None,
    timeout: float | None = None,
) -> JobRecord:
    """Poll until the job ends; the connection is re-established after drops."""
    record = load(job)
    if record.is_final:
        return record
    m = _machine_of(record)
    conn = connect(m)
    try:
        return _wait_on(record, m, conn, on_state=on_state, on_line=on_line, poll=poll, timeout=timeout)
    finally:
        conn.close()


def _wait_on(record: JobRecord, m: Machine, conn: Connection, *, on_state, on_line, poll, timeout=None) -> JobRecord:
    interval = float(poll if poll is not None else m.poll_interval)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        try:
            _refresh(record, m, conn, on_state=on_state, on_line=on_line)
        except ConnectionLost as err:
            raise ConnectionLost(m.name, f"{str(err).split(': ', 1)[1]}; job {record.id} keeps running: "
                                 f"'mlds jobs status {record.id} --wait' picks it up again") from None
        if record.is_final:
            return record
        if deadline is not None and time.monotonic() >= deadline:
            return record
        time.sleep(interval)


def status(job: "str | JobRecord", *, refresh: bool = True, on_line: LineCallback | None = None) -> JobRecord:
    """The job's record, brought up to date from its machine (unless final)."""
    record = load(job)
    if not refresh or record.is_final:
        return record
    m = _machine_of(record)
    conn = connect(m)
    try:
        _refresh(record, m, conn, on_state=None, on_line=on_line)
    finally:
        conn.close()
    return record


def _client() -> dict:
    import socket

    return {"host": socket.gethostname(), "pid": os.getpid()}


def _submitter_alive(record: JobRecord) -> bool:
    """Is the process that is submitting this job still at it (same host only)?"""
    import socket

    client = record.client or {}
    if client.get("host") != socket.gethostname() or not client.get("pid") or client["pid"] == os.getpid():
        return False
    try:
        os.kill(int(client["pid"]), 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _refresh(record: JobRecord, m: Machine, conn: Connection, *, on_state, on_line) -> None:
    if record.is_final:
        return
    if record.state in ("preparing", "uploading") or (record.state == "submitting" and not record.scheduler_id):
        if _submitter_alive(record):
            return  # another mlds process is still submitting it
    if record.state in ("preparing", "uploading"):
        # the client died before submitting: nothing runs
        if record.set_state("lost", "the client stopped before the job was submitted; nothing runs", resumable=False):
            record.save()
            _notify(on_state, record)
        return
    sj = sch.load_job(m, conn, record.remote_dir, record.scheduler_job)
    if not record.scheduler_id:
        text = conn.read_text(posixpath.join(record.remote_dir, f"{sj.job.job_hash}_job_id"))
        if not text or not text.strip():
            record.set_state("lost", "submission was interrupted before the scheduler answered; nothing is known to run",
                             resumable=False)
            record.save()
            _notify(on_state, record)
            return
        record.scheduler_id = text.strip()
        sj.job.register_job_id(record.scheduler_id)
        record.attempts.append({"scheduler_id": record.scheduler_id, "submitted": _now(), "resume": False, "recovered": True})
    sj.job.register_job_id(record.scheduler_id)
    state = sch.check_status(sj)
    if on_line is not None:
        _stream_log(record, conn, on_line)
    changed = False
    if state == "waiting":
        changed = record.set_state("queued")
    elif state in ("running", "completing"):
        changed = record.set_state("running")
    elif state == "finished":
        own = _job_state_file(conn, record)
        if own.get("state") == "failed":
            changed = record.set_state("failed", _message(own, "the job reported failure"), stage="run", resumable=False)
        else:
            changed = record.set_state("done", _message(own, ""), stage="run")
    elif state == "terminated":
        changed = _classify_end(record, m, conn, sj)
    elif state == "unknown":
        pass
    if record.is_final and record.state != "done":
        record.log_tail = log_tail(record, conn=conn)
    if changed or record.is_final:
        record.save()
        if changed:
            _notify(on_state, record)
    elif on_line is not None:
        record.save()  # the log offset moved


def _classify_end(record: JobRecord, m: Machine, conn: Connection, sj: sch.ScriptJob) -> bool:
    own = _job_state_file(conn, record)
    if own.get("state") == "failed":
        return record.set_state("failed", _message(own, "the job reported failure"), stage="run", resumable=False)
    reason = sch.kill_reason(m, conn, record.scheduler_id)
    if reason in sch.KILL_REASONS:
        return record.set_state("killed", f"{sch.KILL_REASONS[reason]} ({reason})", stage="run", resumable=True)
    flag = sch.task_failed_flag(sj)
    if flag:
        return record.set_state("failed", "the job script exited with an error", stage="run", resumable=False)
    if flag is None:
        return record.set_state("killed", "the job ended before its script started (cancelled or a node failed)",
                                stage="run", resumable=True)
    return record.set_state(
        "killed", "the job ended without finishing: killed by the scheduler (walltime, node failure or cancellation)",
        stage="run", resumable=True,
    )


def _message(own: dict, default: str) -> str:
    parts = [str(own[k]) for k in ("step", "message") if own.get(k)]
    return ": ".join(parts) if parts else default


def _job_state_file(conn: Connection, record: JobRecord) -> dict:
    text = conn.read_text(posixpath.join(record.remote_dir, sch.STATE_FILE))
    if not text:
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _stream_log(record: JobRecord, conn: Connection, on_line: LineCallback) -> None:
    data = conn.read_bytes(posixpath.join(record.remote_dir, sch.LOG), offset=record.log_offset, limit=1 << 18)
    if not data:
        return
    end = data.rfind(b"\n")
    if end < 0:
        if len(data) < (1 << 18):
            return
        end = len(data) - 1
    chunk = data[: end + 1]
    record.log_offset += len(chunk)
    for line in chunk.decode("utf-8", "replace").splitlines():
        on_line(line)


def log_tail(job: "str | JobRecord", lines: int = LOG_TAIL_LINES, *, conn: Connection | None = None) -> list[str]:
    """The last lines of the job's log (and any notice the scheduler wrote)."""
    record = load(job)
    own = conn is None
    if conn is None:
        conn = connect(_machine_of(record))
    try:
        cmd = " ".join([
            "cd", _q(record.remote_dir), "2>/dev/null || exit 0;",
            f"tail -n {int(lines)} {sch.LOG} 2>/dev/null;",
            f"grep -h -i -E 'cancelled|time limit|killed|error' {sch.SCHEDULER_LOG} 2>/dev/null | tail -n 3; true",
        ])
        result = conn.run(cmd)
    finally:
        if own:
            conn.close()
    return [ln.rstrip() for ln in result.out.splitlines() if ln.strip()]


def _q(text: str) -> str:
    import shlex

    return shlex.quote(text)


# -- results, cancel, resubmit ----------------------------------------------------

def fetch(job: "str | JobRecord", *, force: bool = False, partial: bool = False) -> list[Path]:
    """Download the job's outputs into its local run folder.

    Every required output glob must match at least one file (else a one-line
    error and nothing is written); ``partial`` fetches what there is from a
    job that did not finish (logs, checkpoints) without that check."""
    record = load(job)
    if record.state != "done" and not partial:
        if record.state in ACTIVE:
            raise JobError(f"job {record.id} is still {record.state}; wait for it ('mlds jobs status {record.id} --wait')")
        raise JobError(record.summary() + "; nothing to fetch (use --partial for its logs)")
    if not record.remote_dir:
        raise JobError(f"job {record.id} never reached its machine; nothing to fetch")
    m = _machine_of(record)
    run_path = Path(record.run_dir)
    conn = connect(m)
    try:
        files = transfer.list_remote_files(conn, record.remote_dir)
        matched, missing = transfer.match_outputs(files, record.outputs)
        required = record.outputs if record.required is None else record.required
        _, missing_required = transfer.match_outputs(files, required)
        missing = missing_required
        if missing and not partial:
            msg = f"results on {m.name} lack {', '.join(missing)}"
            record.stage = "fetch"
            record.fetched = {"time": _now(), "error": msg, "files": record.fetched.get("files", {})}
            record.save()
            raise JobError(f"job {record.id}: {msg} (in {record.remote_dir})")
        for extra in (sch.STATE_FILE, sch.LOG):
            if extra in files and extra not in matched:
                matched.append(extra)
        previously = dict(record.fetched.get("files", {}))
        previously.update({i["path"]: i["sha256"] for i in record.inputs if i["path"] not in previously})
        got = transfer.fetch_files(conn, record.remote_dir, run_path, matched, previously=previously, force=force)
    finally:
        conn.close()
    record.fetched = {"time": _now(), "files": {**record.fetched.get("files", {}), **got}}
    absent = [p for p in record.outputs if not any(transfer.match_outputs([f], [p])[0] for f in got)]
    if absent:
        record.fetched["absent"] = absent  # optional outputs the job did not write
    record.save()
    return [run_path / rel for rel in got]


def cancel(job: "str | JobRecord") -> JobRecord:
    """Cancel a queued or running job (the record says so)."""
    record = load(job)
    if record.is_final:
        raise JobError(f"job {record.id} already ended ({record.state}); nothing to cancel")
    if not record.scheduler_id and record.state != "submitting":
        record.set_state("cancelled", "cancelled before it was submitted", resumable=False)
        record.save()
        return record
    m = _machine_of(record)
    conn = connect(m)
    try:
        sj = sch.load_job(m, conn, record.remote_dir, record.scheduler_job)
        if not record.scheduler_id:
            _refresh(record, m, conn, on_state=None, on_line=None)
            if record.is_final:
                return record
        sj.job.register_job_id(record.scheduler_id)
        sch.cancel(sj)
    finally:
        conn.close()
    record.set_state("cancelled", "cancelled with 'mlds jobs cancel'", stage="run", resumable=True)
    record.save()
    return record


def resubmit(
    job: "str | JobRecord",
    *,
    resume: bool = True,
    resources: sch.Resources | dict | None = None,
    detach: bool = False,
    on_state: StateCallback | None = None,
    on_line: LineCallback | None = None,
    poll: float | None = None,
) -> JobRecord:
    """Submit a killed, failed or cancelled job again in the same job folder.

    ``resources`` (a dict) replaces only the keys it has, e.g. a longer walltime.

    With ``resume`` the script gets ``MLDS_RESUME=1`` and continues from its
    last checkpoint; inputs the job changed are kept, missing ones restored."""
    record = load(job)
    if record.state not in RESUBMITTABLE or not record.remote_dir or record.stage not in ("run", "fetch"):
        raise JobError(f"job {record.id} is {record.state}{' at ' + record.stage if record.stage else ''}; "
                       f"only a job that ran and was {', '.join(RESUBMITTABLE)} can be resubmitted")
    m = _machine_of(record)
    res = as_resources(record.resources)
    if resources is not None:
        # only what was given replaces the first attempt's request
        override = dict(resources) if isinstance(resources, dict) else resources.to_dict()
        res = as_resources({**res.to_dict(), **override})
    sch.parse_walltime(res.walltime or m.walltime, m.name)
    conn = connect(m)
    try:
        workdir = conn.expand(m.workdir)
        run_path = Path(record.run_dir)
        described = [transfer.InputFile(**i) for i in record.inputs]
        if not conn.exists(record.remote_dir):
            raise JobError(f"job folder {record.remote_dir} is gone from {m.name}; submit a new job")
        _restore_inputs(conn, run_path, workdir, record, described)
        n = len(record.attempts)
        conn.run(f"cd {_q(record.remote_dir)} && if [ -f {sch.STATE_FILE} ]; then mv -f {sch.STATE_FILE} mlds-job.attempt{n}.json; fi")
        record.resources = res.to_dict()
        record.log_tail = []
        _submit_attempt(record, m, conn, res, resume=resume, on_state=on_state)
        if detach:
            return record
        return _wait_on(record, m, conn, on_state=on_state, on_line=on_line, poll=poll)
    finally:
        conn.close()


def _restore_inputs(conn: Connection, run_path: Path, workdir: str, record: JobRecord, described: list) -> None:
    missing = [i for i in described if not conn.exists(posixpath.join(record.remote_dir, i.path))]
    if not missing:
        return
    present = transfer.existing_objects(conn, workdir, {i.sha256 for i in missing})
    for item in missing:
        if item.sha256 not in present:
            local = run_path / item.path
            if not local.is_file() or sha256_file(local) != item.sha256:
                raise JobError(f"input {item.path} is gone from the job folder and the local copy changed; submit a new job")
    transfer.upload_inputs(conn, run_path, workdir, record.remote_dir, missing)


def annotate(job: "str | JobRecord", **result: Any) -> JobRecord:
    """Add facts to the record's ``result`` (e.g. the potential registered)."""
    record = load(job)
    record.result.update(result)
    record.save()
    return record
