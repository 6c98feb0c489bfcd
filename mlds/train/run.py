"""Training run folders: :func:`prepare` writes one, :func:`run_local` runs its ``job.sh`` here.

A run folder is self-contained, so the same folder runs on this machine or, copied as is,
on a cluster (``mlds.compute``)::

    run.json          what this run is: dataset version + split, settings, estimate, file lists
    settings.toml     the resolved settings (every knob), to repeat or tweak the run
    input.data        the exported dataset, every structure tagged set=train / set=test
    input.nn          n2p2 settings with the full generated symmetry-function set
    job.sh, mlds_job.py   the job: n2p2 programs + an MPI launcher + python3 (stdlib) only
    -- written by the job --
    mlds-job.json     state: running / done / failed, step, message
    job.log           everything the job printed (run_local)
    steps/            scaling-full/, prune/, scaling/, train/seg000/ ...
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from mlds.errors import MldsError
from mlds.train import estimate as _estimate
from mlds.train import export as _export
from mlds.train import inputnn
from mlds.train import settings as _settings
from mlds.train.jobscript import RUN_FILE, STATE_FILE

JOB_SCRIPT = "job.sh"
JOB_HELPER = "mlds_job.py"
INPUTS = ["run.json", "settings.toml", "input.data", "input.data.units.json", "input.nn", JOB_SCRIPT, JOB_HELPER]
OUTPUTS = [STATE_FILE, "job.log", "steps/prune/prune.json", "steps/prune/input.nn", "steps/scaling/scaling.data",
           "steps/scaling/nnp-scaling.log.0000", "steps/*/.done", "steps/train/seg*/segment.json",
           "steps/train/seg*/input.nn", "steps/train/seg*/learning-curve.out", "steps/train/seg*/weights.*.out",
           "steps/train/seg*/nnp-train.log.0000", "steps/train/seg*/stdout.log"]

JOB_SH = """#!/bin/sh
# mlds training job ({code} {code_version}) for {dataset}.
# Needs only the n2p2 programs, an MPI launcher and python3 (standard library); no mlds.
#   MLDS_N2P2_BIN   folder with nnp-scaling and nnp-train (empty: PATH)
#   MLDS_MPIRUN     launcher prefix, e.g. "mpirun -np 4" or "srun" (empty: serial)
#   MLDS_THREADS    OpenMP threads per rank
#   MLDS_RESUME=1   continue an interrupted run from its last saved epoch
# Writes progress to stdout and its final state to mlds-job.json.
# Batch systems may run a copy of this script elsewhere: stay in the run folder.
if [ -n "$MLDS_RUN_DIR" ]; then cd "$MLDS_RUN_DIR" || exit 2
elif [ ! -f {helper} ]; then cd "$(dirname "$0")" || exit 2
fi
exec python3 {helper} "$@"
"""


class TrainError(MldsError):
    """A training run failed (the message says which step and why)."""


@dataclass
class TrainRun:
    """A prepared run folder (contract with ``mlds.compute``: path, script, inputs, outputs, estimate)."""

    path: Path
    script: str = JOB_SCRIPT
    inputs: list[str] = field(default_factory=lambda: list(INPUTS))
    outputs: list[str] = field(default_factory=lambda: list(OUTPUTS))
    estimate: dict[str, Any] = field(default_factory=dict)
    dataset: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    split: dict[str, Any] = field(default_factory=dict)
    code: str = "n2p2"
    created: str = ""
    commands: list[str] = field(default_factory=list)

    @property
    def state(self) -> dict[str, Any]:
        """The job's ``mlds-job.json`` (empty before it ran)."""
        try:
            return json.loads((self.path / STATE_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["path"] = str(self.path)
        return d


def load_run(run_dir: str | os.PathLike) -> TrainRun:
    """Re-read a prepared run folder (e.g. after ``mlds jobs fetch``)."""
    path = Path(run_dir)
    try:
        data = json.loads((path / RUN_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TrainError(f"{path}: not a training run folder (no {RUN_FILE})") from None
    except ValueError as err:
        raise TrainError(f"{path}/{RUN_FILE}: unreadable ({err})") from None
    keys = {"script", "inputs", "outputs", "estimate", "dataset", "settings", "split", "code", "created", "commands"}
    return TrainRun(path=path, **{k: v for k, v in data.items() if k in keys})


def default_workdir(record: Mapping[str, Any]) -> Path:
    tag = record.get("tag") or ("v" + str(record["version"]) if record.get("version") else "file")
    return Path("mlds-train") / f"{record['name']}-{tag}-{time.strftime('%Y%m%d-%H%M%S')}"


def prepare(ref: str, code: str = "n2p2", *, settings: Mapping[str, Any] | None = None,
            settings_file: str | os.PathLike | None = None, workdir: str | os.PathLike | None = None,
            seed: int | None = None, test_fraction: float | None = None, epochs: int | None = None,
            store: Any = None, force: bool = False, max_memory: int | None = None) -> TrainRun:
    """Write a self-contained run folder for ``ref`` (``NAME[@TAG]`` or an mlds file).

    Every check (settings, forces, split, memory, target folder) runs before anything is
    written; the folder appears complete or not at all.  ``max_memory`` (bytes): refuse when
    the estimated memory for symmetry functions exceeds it (``train`` passes what this
    machine has available; ``checks.memory_limit_gib`` in the settings wins).
    """
    if code != "n2p2":
        raise TrainError(f"training code {code!r} is not supported yet (only n2p2)")
    overrides = dict(settings or {})
    for key, val in (("seed", seed), ("test_fraction", test_fraction), ("epochs", epochs)):
        if val is not None:
            overrides[key] = val
    source = _export.open_source(ref, store=store)
    try:
        resolved = _settings.resolve(source.elements, overrides, settings_file)
        _export.check_trainable(source)
        mask = _export.split(len(source.ds), resolved["test_fraction"], resolved["seed"],
                             resolved["checks"]["min_test_frames"])
        sf_lines = inputnn.symmetry_function_lines(resolved)
        neighbours = _export.neighbour_stats(source.ds, resolved["cutoff"], resolved["elements"])
        est = _estimate.memory(sf_lines, source.atoms_per_element, neighbours, len(source.ds))
        _check_memory(est, int(float(resolved["checks"]["memory_limit_gib"]) * 2**30) or max_memory)
        target = Path(workdir) if workdir is not None else default_workdir(source.record)
        if target.exists() and (not target.is_dir() or any(target.iterdir())) and not force:
            raise TrainError(f"{target} exists and is not an empty folder; choose another --workdir or pass --force")
        run = TrainRun(path=target.resolve(), estimate=est, dataset=dict(source.record), settings=resolved,
                       split={"seed": resolved["seed"], "test_fraction": resolved["test_fraction"],
                              "n_train": int((~mask).sum()), "n_test": int(mask.sum()),
                              "test_indices": [int(i) for i in mask.nonzero()[0]]},
                       created=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        run.commands = _commands(run)
        _write_folder(run, source, mask, sf_lines)
        return run
    finally:
        source.close()


def _check_memory(est: Mapping[str, Any], limit: int | None) -> None:
    if limit and est["memory_bytes"] > limit:
        raise TrainError(
            f"training needs ~{_estimate.human(est['memory_bytes'])} to keep the symmetry functions of "
            f"{est['atoms']} atoms in memory (~{est['mean_neighbours']:.0f} neighbours each), more than the "
            f"{_estimate.human(limit)} available: train on a machine with more memory (--on MACHINE), fewer "
            "frames, a smaller cutoff or preset, or set n2p2.memorize_symfunc_results = false (slower)")


def _commands(run: TrainRun) -> list[str]:
    """What job.sh will run, for --dry-run and the run record."""
    s, est = run.settings, run.estimate
    bins = s["scaling_bins"]
    n_sf = sum(est["symmetry_functions"].values())
    return [
        f"cd {run.path} && MLDS_N2P2_BIN=<folder of nnp-*> MLDS_MPIRUN='mpirun -np {est['ranks']}' sh job.sh",
        f"  1. steps/scaling-full: $MLDS_MPIRUN nnp-scaling {bins}   (input.nn, all {n_sf} symmetry functions)",
        "  2. steps/prune: comment out symmetry functions constant over the data (python3 mlds_job.py)",
        f"  3. steps/scaling: $MLDS_MPIRUN nnp-scaling {bins}   (pruned input.nn -> scaling.data)",
        f"  4. steps/train/seg000: $MLDS_MPIRUN nnp-train   ({s['epochs']} epochs, weights saved every "
        "epoch; MLDS_RESUME=1 continues from the last)",
    ]


def _job_config(run: TrainRun) -> dict[str, Any]:
    """The part of run.json the stdlib job reads (see mlds.train.jobscript)."""
    from mlds.elements import atomic_numbers

    from mlds.codes import n2p2 as code_n2p2
    from mlds.io.n2p2 import n2p2_unit_factors

    s = run.settings
    lf, ef = n2p2_unit_factors(s["units"])
    return {
        "code": "n2p2", "code_version": code_n2p2.VERSION,
        "elements": s["elements"], "numbers": [atomic_numbers[e] for e in s["elements"]],
        "epochs": s["epochs"], "n_frames": run.dataset["n_frames"], "scaling_bins": s["scaling_bins"],
        "prune_threshold": s["symmetry_functions"]["prune_threshold"],
        "divergence_factor": s["checks"]["divergence_factor"],
        "memory_limit_gib": s["checks"]["memory_limit_gib"],
        "best_epoch": s["checks"]["best_epoch"],
        "units": s["units"], "length_per_angstrom": lf, "energy_per_eV": ef,
    }


def _write_folder(run: TrainRun, source: _export.DataSource, mask: Any, sf_lines: list[str]) -> None:
    from mlds.codes import n2p2 as code_n2p2
    from mlds.util import atomic_path

    s = run.settings
    label = f"{source.record['name']}@{source.record.get('tag') or 'file'}"
    with atomic_path(run.path, is_dir=True) as tmp:
        n = _export.export(source, tmp / "input.data", s["units"], mask)
        run.dataset["n_frames_exported"] = n
        header = (f"written by mlds for {label} (manifest {source.record.get('manifest') or 'n/a'})\n"
                  f"units: {s['units']} (cutoff {s['cutoff']} Å)")
        (tmp / "input.nn").write_text(inputnn.render(s, sf_lines, header=header), encoding="utf-8")
        (tmp / "settings.toml").write_text(_settings.dumps(s), encoding="utf-8")
        (tmp / JOB_SCRIPT).write_text(JOB_SH.format(code="n2p2", code_version=code_n2p2.VERSION, dataset=label,
                                                    helper=JOB_HELPER), encoding="utf-8")
        os.chmod(tmp / JOB_SCRIPT, 0o755)
        shutil.copy(Path(__file__).with_name("jobscript.py"), tmp / JOB_HELPER)
        data = run.to_json()
        data.pop("path")
        data["job"] = _job_config(run)
        (tmp / RUN_FILE).write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")


def job_env(run: TrainRun, *, ranks: int | None = None, bin_dir: str | os.PathLike | None = None,
            resume: bool = False) -> dict[str, str]:
    """Environment for running ``job.sh`` on this machine."""
    env = dict(os.environ)
    if bin_dir is None:
        from mlds.codes import locate

        loc = locate("n2p2", ("nnp-scaling", "nnp-train"))
        bin_dir = loc.bin_dir if loc.bin_dir is not None else loc.programs["nnp-train"].parent
    env["MLDS_N2P2_BIN"] = str(bin_dir)
    env["MLDS_MPIRUN"] = f"mpirun -np {int(ranks)}" if ranks and int(ranks) > 1 else env.get("MLDS_MPIRUN", "")
    if resume:
        env["MLDS_RESUME"] = "1"
    env.pop("MLDS_RUN_DIR", None)
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        env.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
        env.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    return env


def run_local(run: TrainRun | str | os.PathLike, *, on_line: Callable[[str], None] | None = None,
              ranks: int | None = None, resume: bool = False,
              bin_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Run the folder's ``job.sh`` on this machine; returns ``mlds-job.json``, raises :class:`TrainError` on failure.

    ``bin_dir``: folder of the n2p2 programs (default: :func:`mlds.codes.locate`).
    """
    if not isinstance(run, TrainRun):
        run = load_run(run)
    if ranks and int(ranks) > 1 and not shutil.which("mpirun"):
        raise TrainError(f"--ranks {ranks} needs mpirun on PATH (Debian: apt-get install openmpi-bin)")
    env = job_env(run, ranks=ranks, resume=resume, bin_dir=bin_dir)
    log_path = run.path / "job.log"
    with open(log_path, "a", encoding="utf-8") as log:
        proc = subprocess.Popen(["sh", str(run.path / run.script)], cwd=run.path, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, errors="replace", start_new_session=True)
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                log.write(line)
                log.flush()
                if on_line:
                    on_line(line.rstrip("\n"))
            rc = proc.wait()
        except BaseException:  # Ctrl-C: stop the job (it records "failed ... MLDS_RESUME=1") and re-raise
            import signal

            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=30)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
            raise
    state = run.state
    if state.get("state") != "done":
        msg = state.get("message") or f"job.sh exited with {rc}; see {log_path}"
        raise TrainError(f"training failed in step {state.get('step', '?')}: {msg}")
    return state
