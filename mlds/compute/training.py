"""Training on a machine: ``mlds.train`` run folders through ``mlds.compute`` jobs.

Run folders (:mod:`mlds.train.run`): :func:`mlds.train.prepare` writes a self-contained run folder,
:func:`mlds.compute.submit` runs its ``job.sh`` on the machine, :func:`fetch`
brings the results back into the same folder, and :func:`mlds.train.finish`
checks them and registers the potential exactly as a local run does.  Nothing
is registered unless every step succeeded; the job record notes the outcome
(``result.potential`` or ``result.finish_error``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

from mlds.compute import jobs
from mlds.compute.errors import JobError
from mlds.compute.schedulers import Resources
from mlds.errors import MldsError

# what train.finish cannot do without; the rest of TrainRun.outputs is fetched when present
REQUIRED_OUTPUTS = ("mlds-job.json",)


@dataclass
class TrainOnMachine:
    job: jobs.JobRecord
    run: Any                 # mlds.train.TrainRun
    potential: Any = None    # mlds.train.Potential, once finished


def job_resources(run: Any, resources: Resources | Mapping[str, Any] | None) -> Resources:
    """What was asked, else n2p2's estimate: ranks by data size, memory."""
    given = dict(resources) if isinstance(resources, Mapping) else (resources.to_dict() if resources else {})
    estimate = run.estimate or {}
    if "ranks" not in given:
        given["ranks"] = max(int(estimate.get("ranks") or 1), int(given.get("nodes") or 1))
    if "memory_bytes" not in given and estimate.get("memory_bytes"):
        given["memory_bytes"] = int(estimate["memory_bytes"])
    return jobs.as_resources(given)


def train_on_machine(
    ref: str,
    machine: str,
    *,
    name: str | None = None,
    register: bool = True,
    metadata: Mapping[str, Any] | None = None,
    resources: Resources | Mapping[str, Any] | None = None,
    detach: bool = False,
    on_state: Callable | None = None,
    on_line: Callable | None = None,
    on_upload: Callable | None = None,
    poll: float | None = None,
    **prepare_kwargs: Any,
) -> TrainOnMachine:
    """prepare -> submit -> (wait -> fetch -> finish) for dataset version ``ref``.

    ``prepare_kwargs`` go to :func:`mlds.train.prepare` (settings,
    settings_file, workdir, seed, test_fraction, epochs, force); ``metadata``
    goes to :func:`mlds.train.finish` (licence, authors, description).  With
    ``detach`` the job is left running; :func:`complete` finishes it later.
    A job that ends badly is returned without a potential
    (``result.job.raise_for_state()`` gives its one line).
    """
    from mlds import train

    run = train.prepare(ref, **prepare_kwargs)
    record = jobs.submit(
        run.path, machine, script=run.script, inputs=run.inputs, outputs=run.outputs,
        required=[o for o in REQUIRED_OUTPUTS if o in run.outputs] or None,
        resources=job_resources(run, resources), detach=detach, on_state=on_state, on_line=on_line,
        on_upload=on_upload, poll=poll,
        notes={"kind": "train", "dataset": _dataset_ref(run), "name": name, "register": register,
               "metadata": dict(metadata or {})},
    )
    if detach or record.state != "done":
        return TrainOnMachine(record, run)
    return complete(record, run=run)


def complete(job: "str | jobs.JobRecord", *, name: str | None = None, register: bool | None = None,
             metadata: Mapping[str, Any] | None = None, run: Any = None) -> TrainOnMachine:
    """Fetch a finished training job and register its potential (one line on any failure).

    ``name``, ``register`` and ``metadata`` default to what the job was submitted with."""
    from mlds import train

    record = jobs.load(job)
    record.raise_for_state()
    if record.state != "done":
        raise JobError(f"job {record.id} is still {record.state}; wait for it ('mlds jobs status {record.id} --wait')")
    meta = record.result
    name = name if name is not None else meta.get("name")
    register = register if register is not None else meta.get("register", True)
    extra = {**(meta.get("metadata") or {}), **dict(metadata or {})}
    jobs.fetch(record)
    run = run or train.load_run(record.run_dir)
    try:
        pot = train.finish(run.path, name=name, register=register, metadata=extra or None)
    except MldsError as err:
        jobs.annotate(record.id, finish_error=str(err))
        raise
    where = f"{pot.name}@v{pot.version}" if getattr(pot, "version", None) else str(getattr(pot, "path", ""))
    record = jobs.annotate(record.id, potential=where, finish_error=None)
    return TrainOnMachine(record, run, pot)


def find_resumable(ref: str, machine: str) -> jobs.JobRecord:
    """The newest training job of ``ref`` on ``machine`` that can continue."""
    for record in jobs.list_jobs(machine):
        if record.result.get("kind") != "train" or not _same_dataset(record.result.get("dataset"), ref):
            continue
        if record.state in jobs.RESUBMITTABLE and record.resumable:
            return record
        if record.state in jobs.ACTIVE:
            raise JobError(f"training of {ref} on {machine} is still {record.state} as job {record.id}; "
                           f"follow it with 'mlds jobs status {record.id} --wait'")
    raise JobError(f"no interrupted training of {ref} on {machine} to resume (see 'mlds jobs ls --machine {machine}')")


def resume_on_machine(ref: str, machine: str, *, resources: Mapping[str, Any] | None = None, detach: bool = False,
                      name: str | None = None, register: bool | None = None,
                      metadata: Mapping[str, Any] | None = None, on_state=None, on_line=None,
                      poll: float | None = None) -> TrainOnMachine:
    """Resubmit the last interrupted training of ``ref`` with ``MLDS_RESUME=1``, then finish it."""
    record = find_resumable(ref, machine)
    record = jobs.resubmit(record, resume=True, resources=resources, detach=detach, on_state=on_state,
                           on_line=on_line, poll=poll)
    if detach or record.state != "done":
        return TrainOnMachine(record, None)
    return complete(record, name=name, register=register, metadata=metadata)


def _dataset_ref(run: Any) -> str:
    d = run.dataset or {}
    tag = d.get("tag") or (f"v{d['version']}" if d.get("version") else None)
    return f"{d.get('name')}@{tag}" if tag else str(d.get("name") or d.get("path") or "")


def _same_dataset(recorded: str | None, ref: str) -> bool:
    if not recorded:
        return False
    if recorded == ref:
        return True
    name, _, tag = ref.partition("@")
    r_name, _, r_tag = recorded.partition("@")
    return name == r_name and (not tag or tag == r_tag or (tag == "latest"))


__all__ = ["TrainOnMachine", "complete", "find_resumable", "resume_on_machine", "train_on_machine"]
