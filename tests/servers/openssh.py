"""A real OpenSSH login node for tests: Debian's ``sshd`` on 127.0.0.1.

Generated host and user keys, a free port, key authentication only (no
password, no PAM), ``internal-sftp`` for file transfer, and ``SetEnv`` lines so
sessions see the test cluster (``SLURM_CONF``) the way a real login node sees
``/etc/slurm``.  ``sshd -D`` runs as our child process and is stopped by PID;
:meth:`OpenSSHServer.drop_connections` kills the per-connection sshd
processes (children of the listener) to cut every open session mid-job.
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.servers.slurm import free_port


def _sshd() -> str | None:
    return shutil.which("sshd") or next((p for p in ("/usr/sbin/sshd", "/sbin/sshd") if os.access(p, os.X_OK)), None)


def unavailable_reason() -> str | None:
    if _sshd() is None or shutil.which("ssh-keygen") is None:
        return "OpenSSH server not installed (apt-get install openssh-server)"
    return None


@dataclass
class OpenSSHServer:
    host: str
    port: int
    user: str
    key_file: str        # private client key
    known_hosts: str     # known_hosts holding the host key
    root: Path
    proc: subprocess.Popen

    @property
    def login(self) -> str:
        return f"{self.user}@{self.host}"

    @property
    def ssh_options(self) -> dict:
        """``[machines.X.ssh]`` options for this server: our key only, strict
        host key, and an empty ssh config (the developer's ~/.ssh stays out)."""
        return {
            "config_file": str(self.root / "ssh_config"),
            "key_file": self.key_file,
            "known_hosts_file": self.known_hosts,
            "host_key_policy": "strict",
            "allow_agent": False,
            "look_for_keys": False,
        }

    def connection_pids(self) -> list[int]:
        """PIDs of the per-connection sshd processes (children of the listener)."""
        pids = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == self.proc.pid:
                pids.append(int(entry))
        return pids

    def accepted_logins(self) -> int:
        """How many sessions the server accepted so far (from its log)."""
        return (self.root / "sshd.log").read_text(errors="replace").count("Accepted publickey")

    def drop_connections(self) -> int:
        """Kill every open session (the listener stays up); returns how many."""
        pids = self.connection_pids()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return len(pids)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


def start_sshd(root: Path, env: dict[str, str] | None = None, *, timeout: float = 20) -> OpenSSHServer:
    reason = unavailable_reason()
    if reason:
        raise RuntimeError(reason)
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o755)
    host_key = root / "host_ed25519"
    user_key = root / "id_ed25519"
    for key in (host_key, user_key):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "mlds-test", "-f", str(key)], check=True)
    authorized = root / "authorized_keys"
    authorized.write_text((root / "id_ed25519.pub").read_text())
    os.chmod(authorized, 0o600)
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)  # privilege separation dir
    port = free_port()
    user = getpass.getuser()
    lines = [
        f"Port {port}",
        "ListenAddress 127.0.0.1",
        f"HostKey {host_key}",
        f"PidFile {root / 'sshd.pid'}",
        f"AuthorizedKeysFile {authorized}",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PermitRootLogin prohibit-password",
        "UsePAM no",
        "StrictModes no",
        "MaxSessions 50",
        "MaxStartups 50",
        "Subsystem sftp internal-sftp",
        "LogLevel VERBOSE",
    ]
    for key, value in (env or {}).items():
        lines.append(f"SetEnv {key}={value}")
    (root / "ssh_config").write_text("")
    config = root / "sshd_config"
    config.write_text("\n".join(lines) + "\n")
    log = open(root / "sshd.log", "ab")
    try:
        proc = subprocess.Popen([_sshd(), "-D", "-e", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    finally:
        log.close()
    pub = host_key.with_suffix(".pub").read_text().split()
    known_hosts = root / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {pub[0]} {pub[1]}\n")
    server = OpenSSHServer("127.0.0.1", port, user, str(user_key), str(known_hosts), root, proc)
    deadline = time.monotonic() + timeout
    import socket

    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd exited with {proc.returncode}: {(root / 'sshd.log').read_text()[-500:]}")
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return server
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"sshd did not listen on port {port} within {timeout:.0f} s")
