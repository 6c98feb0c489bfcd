"""Generated batch scripts against golden files written from each scheduler's manual.

PBS and PJM cannot be installed here, so their scripts are checked against the
directives their documentation specifies; Slurm's and LSF's the same way (Slurm
also runs for real in test_slurm_ssh.py).  Sources:

* Slurm 22.05, sbatch(1), DESCRIPTION: "#SBATCH" options must come "before any
  executable commands"; OPTIONS: --job-name, --nodes, --ntasks,
  --cpus-per-task, --time ("minutes:seconds", "hours:minutes:seconds", ...),
  --partition, --account, --output.  https://slurm.schedmd.com/sbatch.html
* Altair PBS Professional 2022.1 User's Guide, section 2.3 "Submitting a PBS
  Job" (directives "#PBS" precede the first executable line), section 5
  "Allocating Resources & Placing Jobs" (``-l select=N:ncpus=C:mpiprocs=R:
  ompthreads=T``, ``-l walltime=hh:mm:ss``), Reference Guide qsub(1B): -N
  (name starting with a letter), -q, -A, -j oe, -o.
* Fugaku Users Guide - Use and job execution, section 5.3 "Batch job" (job
  script example with ``#PJM -L "node=N"``, ``-L "rscgrp=NAME"``,
  ``-L "elapse=hh:mm:ss"``, ``--mpi "max-proc-per-node=N"``, ``-g group``) and
  section 5.9 "Job execution command options" (pjsub: -N name up to 63 bytes,
  -j, -o file, -S).  https://www.r-ccs.riken.jp/fugaku/docs/user-guide/
* IBM Spectrum LSF 10.1 command reference, bsub: -J, -n, -R "span[ptile=N]",
  -W [hour:]minute, -q, -P project, -o.

The part after the header is dpdispatcher's (modules, exports, the task
wrapper); the golden files pin it too, with its 40-hex job/task hashes
normalised.  Regenerate after a deliberate change with MLDS_UPDATE_GOLDEN=1.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from mlds.compute import Machine, MachineError, Resources, render_script

GOLDEN = Path(__file__).parent / "golden"
HASH = re.compile(r"[0-9a-f]{40}")

# directive syntax per scheduler, from the manuals cited above
DIRECTIVES = {
    "slurm": ("#SBATCH", re.compile(r"^#SBATCH --(job-name|nodes|ntasks|cpus-per-task|time|partition|account|output)=\S+$")),
    "pbs": ("#PBS", re.compile(
        r"^#PBS (-N [A-Za-z][\w.-]{0,14}|-l select=\d+:ncpus=\d+:mpiprocs=\d+:ompthreads=\d+|-l walltime=\d+:\d\d:\d\d"
        r"|-q \S+|-A \S+|-j oe|-o \S+)$")),
    "pjm": ("#PJM", re.compile(
        r'^#PJM (-N \S{1,63}|-L "node=\d+"|-L "rscgrp=\S+"|-L "elapse=\d+:\d\d:\d\d"|--mpi "max-proc-per-node=\d+"'
        r"|-g \S+|-j|-o \S+|-S)$")),
    "lsf": ("#BSUB", re.compile(r'^#BSUB (-J \S+|-n \d+|-R "span\[ptile=\d+\]"|-W \d+:\d\d|-q \S+|-P \S+|-o \S+)$')),
}

EXPECTED_HEADERS = {
    "slurm": [
        "#!/bin/bash",
        "#SBATCH --job-name=mlds_0000000000",
        "#SBATCH --nodes=2",
        "#SBATCH --ntasks=8",
        "#SBATCH --cpus-per-task=2",
        "#SBATCH --time=02:30:00",
        "#SBATCH --partition=small",
        "#SBATCH --account=hp000000",
        "#SBATCH --output=mlds-scheduler.log",
    ],
    "pbs": [
        "#!/bin/bash",
        "#PBS -N mlds_0000000000",
        "#PBS -l select=2:ncpus=8:mpiprocs=4:ompthreads=2",
        "#PBS -l walltime=02:30:00",
        "#PBS -q small",
        "#PBS -A hp000000",
        "#PBS -j oe",
        "#PBS -o mlds-scheduler.log",
    ],
    "pjm": [
        "#!/bin/bash",
        "#PJM -N mlds_0000000000",
        '#PJM -L "node=2"',
        '#PJM -L "rscgrp=small"',
        '#PJM -L "elapse=02:30:00"',
        '#PJM --mpi "max-proc-per-node=4"',
        "#PJM -g hp000000",
        "#PJM -j",
        "#PJM -o mlds-scheduler.log",
        "#PJM -S",
    ],
    "lsf": [
        "#!/bin/bash",
        "#BSUB -J mlds_0000000000",
        "#BSUB -n 8",
        '#BSUB -R "span[ptile=4]"',
        "#BSUB -W 02:30",
        "#BSUB -q small",
        "#BSUB -P hp000000",
        "#BSUB -o mlds-scheduler.log",
    ],
}


def _machine(scheduler: str, **kw) -> Machine:
    fields = dict(
        scheduler=scheduler, host="alice@login.example.org", workdir="/work/alice/mlds", queue="small",
        account="hp000000", modules=["n2p2/2.3.0"], n2p2_bin="/opt/n2p2/bin",
    )
    fields.update(kw)
    return Machine(name=f"golden-{scheduler}", **fields)


RES = Resources(nodes=2, ranks=8, threads=2, walltime="2:30:00")


def _script(machine: Machine, resources: Resources = RES, **kw) -> str:
    return HASH.sub("<HASH>", render_script(".", machine, resources=resources, **kw))


def _batch_part(script: str) -> list[str]:
    """The submitted batch script's lines (without the sourced task part)."""
    body = script.split("# sourced task part", 1)[0]
    return body.splitlines()[1:]  # drop the '# batch script (...)' caption


@pytest.mark.parametrize("scheduler", ["slurm", "pbs", "pjm", "lsf"])
def test_header_as_documented(scheduler):
    lines = _batch_part(_script(_machine(scheduler)))
    prefix, syntax = DIRECTIVES[scheduler]
    header = [ln for ln in lines if ln.startswith("#!") or ln.startswith(prefix)]
    assert header == EXPECTED_HEADERS[scheduler]
    assert lines[0] == "#!/bin/bash"                     # interpreter on line 1
    for line in header[1:]:
        assert syntax.match(line), f"{scheduler}: {line!r} is not a documented directive"
    # every directive precedes the first executable line
    first_command = next(i for i, ln in enumerate(lines) if ln.strip() and not ln.lstrip().startswith("#"))
    assert max(i for i, ln in enumerate(lines) if ln.startswith(prefix)) < first_command


@pytest.mark.parametrize("scheduler", ["slurm", "pbs", "pjm", "lsf", "shell"])
def test_whole_script_golden(scheduler):
    script = _script(_machine(scheduler))
    path = GOLDEN / f"{scheduler}.sh"
    if os.environ.get("MLDS_UPDATE_GOLDEN"):
        path.write_text(script)
    assert script == path.read_text(), f"{path} differs (regenerate with MLDS_UPDATE_GOLDEN=1 after checking the change)"


def test_job_environment_in_script():
    script = _script(_machine("slurm"))
    for line in ("export MLDS_N2P2_BIN=/opt/n2p2/bin", "export MLDS_MPIRUN='srun -n 8'", "export MLDS_THREADS=2",
                 "export OMP_NUM_THREADS=2", "module load n2p2/2.3.0", "( bash job.sh ) 1>>mlds-job.log 2>>mlds-job.log"):
        assert line in script, line
    assert "\nexport MLDS_RESUME" not in script
    assert "\nexport MLDS_RESUME=1\n" in _script(_machine("slurm"), resume=True)
    # a job Slurm requeues (node failure) continues from its checkpoint
    assert 'if [ "${SLURM_RESTART_COUNT:-0}" -gt 0 ]; then export MLDS_RESUME=1; fi' in script
    serial = _script(_machine("pjm"), Resources(ranks=1))
    assert "export MLDS_MPIRUN=''" in serial


def test_empty_optional_directives_left_out():
    lines = _batch_part(_script(_machine("pbs", queue=None, account=None), Resources()))
    assert not any(ln.startswith("#PBS -q") or ln.startswith("#PBS -A") for ln in lines)
    assert "#PBS -l select=1:ncpus=1:mpiprocs=1:ompthreads=1" in lines
    assert "#PBS -l walltime=01:00:00" in lines  # the machine's default


def test_header_override(tmp_path):
    template = tmp_path / "site.sh"
    template.write_text("#!/bin/bash\n#PJM -L \"node={nodes}\"\n#PJM -L \"elapse={walltime}\"\n#PJM -x PJM_LLIO_GFSCACHE=/vol0004\n")
    lines = _batch_part(_script(_machine("pjm", header=str(template))))
    assert [ln for ln in lines if ln.startswith("#PJM")] == ['#PJM -L "node=2"', '#PJM -L "elapse=02:30:00"', "#PJM -x PJM_LLIO_GFSCACHE=/vol0004"]
    template.write_text("#!/bin/bash\n#PJM -L \"node={nodez}\"\n")
    with pytest.raises(MachineError, match=r"unknown placeholder \{nodez\}"):
        render_script(".", _machine("pjm", header=str(template)))
