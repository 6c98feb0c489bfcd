"""A real single-node Slurm cluster for tests: Debian's slurm-wlm 22.05 + munge.

Everything lives in one temporary directory: a fresh munge key and socket,
a generated ``slurm.conf`` for this host (``proctrack/linuxproc``,
``task/none``, no cgroups, no accounting, non-default ports), and the state,
spool and log directories.  ``munged``, ``slurmctld`` and ``slurmd`` run in
the foreground as our child processes and are stopped by PID.  Clients find
the cluster through ``SLURM_CONF``.

``slurmd`` must run as root to start jobs (it switches to the job's user);
:func:`unavailable_reason` says exactly why the cluster cannot start when it
cannot, so the tests skip saying so.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

BINARIES = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "sinfo")
SBIN = ("/usr/sbin", "/usr/bin", "/sbin", "/bin")
PARTITION = "debug"
CPUS = 4  # more job slots than cores: jobs here mostly sleep


def _which(name: str) -> str | None:
    return shutil.which(name) or next((f"{d}/{name}" for d in SBIN if os.access(f"{d}/{name}", os.X_OK)), None)


def unavailable_reason() -> str | None:
    missing = [b for b in BINARIES if _which(b) is None]
    if missing:
        return f"Slurm/munge not installed (missing {', '.join(missing)}; apt-get install slurmctld slurmd slurm-client munge)"
    if os.geteuid() != 0:
        return "slurmd must run as root to launch jobs (it setuid()s to the job's user); run the tests as root"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class SlurmCluster:
    root: Path
    conf: Path
    node: str
    socket_dir: Path | None = None
    partition: str = PARTITION
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        return {"SLURM_CONF": str(self.conf)}

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(list(args), env={**os.environ, **self.env}, capture_output=True, text=True, check=check, timeout=60)

    def job_state(self, job_id: str) -> str:
        out = self.run("scontrol", "show", "job", "-o", str(job_id), check=False).stdout
        for word in out.split():
            if word.startswith("JobState="):
                return word.split("=", 1)[1]
        return ""

    def log(self, which: str = "slurmctld") -> str:
        path = self.root / "log" / f"{which}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        # end every job first, so no slurmstepd outlives the slurmd it reports to
        with _suppress():
            self.run("scancel", "--partition", self.partition, check=False)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                r = self.run("squeue", "-h", "-o", "%i", check=False)
                if r.returncode != 0 or not r.stdout.strip():
                    break
                time.sleep(0.2)
        # slurmd first (it ends the job steps it started), then the controller, then munge
        for name in ("slurmd", "slurmctld", "munged"):
            proc = self.procs.get(name)
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if self.socket_dir is not None:
            shutil.rmtree(self.socket_dir, ignore_errors=True)


class _suppress:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return True


def start_slurm(root: Path, *, timeout: float = 60) -> SlurmCluster:
    """Start munged, slurmctld and slurmd under ``root``; wait until the node is idle."""
    reason = unavailable_reason()
    if reason:
        raise RuntimeError(reason)
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o755)
    for sub in ("state", "spool", "log", "munge"):
        (root / sub).mkdir(exist_ok=True)
    # munged wants every directory above its socket enterable by everyone;
    # pytest's temporary directories are private, so the socket goes to /tmp
    sock_dir = Path(tempfile.mkdtemp(prefix="mlds-munge-", dir="/tmp"))
    os.chmod(sock_dir, 0o755)
    os.chmod(root / "munge", 0o700)
    key = root / "munge" / "munge.key"
    subprocess.run([_which("mungekey"), "--create", f"--keyfile={key}"], check=True, capture_output=True)
    socket_path = sock_dir / "munge.socket"

    node = socket.gethostname().split(".")[0]
    ctld_port, slurmd_port = free_port(), free_port()
    conf = root / "slurm.conf"
    conf.write_text(
        "\n".join([
            "ClusterName=mldstest",
            f"SlurmctldHost={node}(127.0.0.1)",
            f"SlurmctldPort={ctld_port}",
            f"SlurmdPort={slurmd_port}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={socket_path}",
            f"StateSaveLocation={root / 'state'}",
            f"SlurmdSpoolDir={root / 'spool'}",
            f"SlurmctldPidFile={root / 'slurmctld.pid'}",
            f"SlurmdPidFile={root / 'slurmd.pid'}",
            f"SlurmctldLogFile={root / 'log' / 'slurmctld.log'}",
            f"SlurmdLogFile={root / 'log' / 'slurmd.log'}",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/none",
            "SchedulerType=sched/builtin",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core",
            "SlurmdParameters=config_overrides",
            "MpiDefault=none",
            "MailProg=/bin/true",
            "ReturnToService=2",
            "MinJobAge=3600",
            "KillWait=2",
            "OverTimeLimit=0",
            "InactiveLimit=0",
            "SlurmctldTimeout=30",
            "SlurmdTimeout=30",
            f"NodeName={node} NodeAddr=127.0.0.1 CPUs={CPUS} State=UNKNOWN",
            f"PartitionName={PARTITION} Nodes={node} Default=YES MaxTime=INFINITE State=UP",
            "",
        ]),
        encoding="utf-8",
    )
    cluster = SlurmCluster(root=root, conf=conf, node=node, socket_dir=sock_dir)
    env = {**os.environ, "SLURM_CONF": str(conf)}
    try:
        cluster.procs["munged"] = _spawn(
            [_which("munged"), "--foreground", f"--socket={socket_path}", f"--key-file={key}",
             f"--log-file={root / 'log' / 'munged.log'}", f"--pid-file={sock_dir / 'munged.pid'}",
             f"--seed-file={root / 'munge' / 'munged.seed'}"],
            root / "log" / "munged.out", env,
        )
        _wait_for(lambda: socket_path.exists(), 15, "munged did not create its socket", cluster, "munged")
        cluster.procs["slurmctld"] = _spawn([_which("slurmctld"), "-D", "-f", str(conf)], root / "log" / "slurmctld.out", env)
        cluster.procs["slurmd"] = _spawn([_which("slurmd"), "-D", "-f", str(conf)], root / "log" / "slurmd.out", env)

        def _idle() -> bool:
            r = cluster.run("sinfo", "-h", "-o", "%T", check=False)
            return r.returncode == 0 and r.stdout.strip().rstrip("*") in ("idle", "mixed")

        _wait_for(_idle, timeout, "the Slurm node did not become idle", cluster, "slurmctld")
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _spawn(cmd: list[str], log: Path, env: dict) -> subprocess.Popen:
    fh = open(log, "ab")
    try:
        return subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    finally:
        fh.close()


def _tail(path: Path, n: int = 400) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


def _wait_for(pred, timeout: float, what: str, cluster: SlurmCluster, log: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, proc in cluster.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with status {proc.returncode}: {_tail(cluster.root / 'log' / (name + '.out'))}")
        if pred():
            return
        time.sleep(0.2)
    raise RuntimeError(f"{what} within {timeout:.0f} s; {log} log: {_tail(cluster.root / 'log' / (log + '.log'))}")
