"""Commands and files on a machine: over SSH (paramiko), or on this computer.

Why ours and not the scheduler library's SSH context: dpdispatcher's
``SSHContext`` accepts any host key (``AutoAddPolicy``), ignores the ssh agent
and ``~/.ssh/config`` and re-uploads whole task folders.  mlds already speaks
SSH through paramiko for ``sftp://`` remotes; this module keeps the same
options (``key_file``, ``known_hosts_file``, ``host_key_policy``,
``allow_agent``, ``look_for_keys``) and adds what a job needs over hours:

* host keys are checked against ``~/.ssh/known_hosts`` (a changed key is
  always refused; ``host_key_policy = "strict"`` also refuses unknown hosts);
* authentication by the ssh agent or key files only - never a password;
* ``~/.ssh/config`` host aliases (HostName, User, Port, IdentityFile,
  ProxyCommand, ProxyJump) work as with ``ssh``;
* a dropped connection is re-established transparently for read-only work
  (status polls, log tails, downloads) for up to ``reconnect_seconds``;
  a command that changes state (``sbatch``) is never repeated blindly.

Every failure becomes one :class:`~mlds.compute.errors.MachineError` line.
"""

from __future__ import annotations

import contextlib
import errno
import getpass
import os
import posixpath
import shlex
import shutil
import socket
import subprocess
import time
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, TypeVar

from mlds.compute.errors import ConnectionLost, MachineError
from mlds.compute.machines import Machine

T = TypeVar("T")
RECONNECT_SECONDS = float(os.environ.get("MLDS_RECONNECT_SECONDS", "300"))
_CONNECT_ERRNOS = {
    errno.ECONNREFUSED, errno.ECONNRESET, errno.ECONNABORTED, errno.EHOSTUNREACH,
    errno.ENETUNREACH, errno.ETIMEDOUT, errno.EPIPE, errno.ENOTCONN,
}


@dataclass
class Result:
    rc: int
    out: str
    err: str

    @property
    def ok(self) -> bool:
        return self.rc == 0

    def first_error_line(self) -> str:
        lines = [ln.strip() for ln in (self.err or self.out).splitlines() if ln.strip()]
        return lines[-1] if lines else f"exit status {self.rc}"


class Connection:
    """What the execution layer needs from a machine.  Paths are POSIX paths on
    the machine; ``~`` is expanded with :meth:`expand`."""

    machine: Machine

    def run(self, command: str, *, retry: bool = True, timeout: float | None = 600) -> Result:
        raise NotImplementedError

    def put(self, local: Path, remote: str, *, callback: Callable[[int], None] | None = None) -> None:
        raise NotImplementedError

    def get(self, remote: str, local: Path) -> None:
        raise NotImplementedError

    def read_bytes(self, remote: str, offset: int = 0, limit: int | None = None) -> bytes | None:
        """Bytes of a file from ``offset`` (``None`` if it does not exist)."""
        raise NotImplementedError

    def write_text(self, remote: str, text: str) -> None:
        raise NotImplementedError

    def exists(self, remote: str) -> bool:
        raise NotImplementedError

    def home(self) -> str:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def expand(self, path: str) -> str:
        if path == "~" or path.startswith("~/"):
            return posixpath.normpath(self.home() + path[1:])
        return path

    def read_text(self, remote: str) -> str | None:
        data = self.read_bytes(remote)
        return None if data is None else data.decode("utf-8", errors="replace")

    def __enter__(self) -> "Connection":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# -- this computer --------------------------------------------------------------

class LocalConnection(Connection):
    """The machine is this computer: commands run in ``bash -c``, files are copied."""

    def __init__(self, machine: Machine):
        self.machine = machine

    def run(self, command: str, *, retry: bool = True, timeout: float | None = 600) -> Result:
        try:
            proc = subprocess.run(
                ["bash", "-c", command], capture_output=True, timeout=timeout,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )
        except FileNotFoundError:
            raise MachineError(self.machine.name, "bash not found on this computer") from None
        except subprocess.TimeoutExpired:
            raise MachineError(self.machine.name, f"command timed out after {timeout:.0f} s: {command.split()[0]}") from None
        return Result(proc.returncode, proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace"))

    def put(self, local: Path, remote: str, *, callback: Callable[[int], None] | None = None) -> None:
        target = Path(remote)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.part")
        try:
            shutil.copyfile(local, tmp)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        if callback:
            callback(target.stat().st_size)

    def get(self, remote: str, local: Path) -> None:
        shutil.copyfile(remote, local)

    def read_bytes(self, remote: str, offset: int = 0, limit: int | None = None) -> bytes | None:
        try:
            with open(remote, "rb") as fh:
                fh.seek(offset)
                return fh.read() if limit is None else fh.read(limit)
        except FileNotFoundError:
            return None

    def write_text(self, remote: str, text: str) -> None:
        target = Path(remote)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.part")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, target)

    def exists(self, remote: str) -> bool:
        return os.path.exists(remote)

    def home(self) -> str:
        return str(Path.home())


# -- SSH ------------------------------------------------------------------------------

def _paramiko():
    import paramiko  # a dependency of dpdispatcher; imported only when SSH is used

    return paramiko


class SSHConnection(Connection):
    """One SSH session (exec + SFTP) to a machine's login host."""

    def __init__(self, machine: Machine, *, reconnect_seconds: float | None = None):
        self.machine = machine
        self.reconnect_seconds = RECONNECT_SECONDS if reconnect_seconds is None else reconnect_seconds
        self._client = None
        self._sftp = None
        self._home: str | None = None
        self.params = ssh_params(machine)
        self.reconnects = 0

    # connection management ----------------------------------------------------
    @property
    def where(self) -> str:
        p = self.params
        return f"{p['username']}@{p['hostname']}:{p['port']}"

    def connect(self) -> None:
        paramiko = _paramiko()
        p = self.params
        client = paramiko.SSHClient()
        with contextlib.suppress(OSError):
            client.load_system_host_keys()
        if p["known_hosts_file"]:
            try:
                client.load_host_keys(p["known_hosts_file"])
            except OSError as err:
                raise MachineError(self.machine.name, f"cannot read known_hosts file {p['known_hosts_file']}: {err.strerror or err}") from None
        client.set_missing_host_key_policy(_host_key_policy(p["host_key_policy"], self.machine.name))
        kwargs = dict(
            hostname=p["hostname"], port=p["port"], username=p["username"],
            key_filename=p["key_filenames"] or None, allow_agent=p["allow_agent"],
            look_for_keys=p["look_for_keys"], timeout=p["timeout"], banner_timeout=p["timeout"],
            auth_timeout=p["timeout"], password=None, passphrase=None,
        )
        if p["proxy_command"]:
            kwargs["sock"] = paramiko.ProxyCommand(p["proxy_command"])
        try:
            client.connect(**kwargs)
        except Exception as err:  # noqa: BLE001 - translated to one line below
            client.close()
            raise translate_ssh_error(self.machine, self.where, err) from None
        transport = client.get_transport()
        if transport is not None:
            transport.set_keepalive(30)
        self._client = client
        self._sftp = None

    def _active(self) -> bool:
        if self._client is None:
            return False
        transport = self._client.get_transport()
        return transport is not None and transport.is_active()

    def _drop(self) -> None:
        with contextlib.suppress(Exception):
            if self._sftp is not None:
                self._sftp.close()
        with contextlib.suppress(Exception):
            if self._client is not None:
                self._client.close()
        self._client = None
        self._sftp = None

    def close(self) -> None:
        self._drop()

    def _is_drop(self, err: BaseException) -> bool:
        paramiko = _paramiko()
        if isinstance(err, (paramiko.AuthenticationException, paramiko.BadHostKeyException)):
            return False
        if isinstance(err, (EOFError, ConnectionError, socket.timeout, TimeoutError, paramiko.SSHException)):
            return True
        if isinstance(err, OSError) and (err.errno in _CONNECT_ERRNOS or "Socket is closed" in str(err)):
            return True
        # an SFTP "file not found" on a live connection is a real answer
        return isinstance(err, OSError) and not self._active()

    def _call(self, fn: Callable[[], T], *, retry: bool = True) -> T:
        deadline: float | None = None
        delay = 0.5
        while True:
            try:
                if not self._active():
                    if self._client is not None:
                        self._drop()
                        self.reconnects += 1
                    self.connect()
                return fn()
            except MachineError as err:
                # (re)connecting failed: keep trying only while the host was reachable before
                if deadline is None or not _retryable_connect_error(err):
                    raise
                last: BaseException = err
            except Exception as err:  # noqa: BLE001
                if not self._is_drop(err):
                    raise
                last = err
                self._drop()
                if not retry:
                    raise ConnectionLost(
                        self.machine.name,
                        f"the SSH connection to {self.where} dropped during a command that changes state; "
                        "check the job with 'mlds jobs status' before retrying",
                    ) from None
            now = time.monotonic()
            if deadline is None:
                deadline = now + self.reconnect_seconds
            if now >= deadline:
                raise ConnectionLost(
                    self.machine.name,
                    f"lost the SSH connection to {self.where} and could not reconnect within "
                    f"{self.reconnect_seconds:.0f} s ({_one_line(last)})",
                ) from None
            time.sleep(min(delay, max(0.0, deadline - now)))
            delay = min(delay * 2, 15.0)

    def sftp(self):
        if self._sftp is None:
            self._sftp = self._client.open_sftp()
        return self._sftp

    # operations -----------------------------------------------------------------------
    def run(self, command: str, *, retry: bool = True, timeout: float | None = 600) -> Result:
        def _run() -> Result:
            _stdin, stdout, stderr = self._client.exec_command(command, timeout=timeout)
            out = stdout.read()
            err = stderr.read()
            rc = stdout.channel.recv_exit_status()
            if rc == -1 and not self._active():
                raise EOFError("connection closed before the command finished")
            return Result(rc, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))

        return self._call(_run, retry=retry)

    def put(self, local: Path, remote: str, *, callback: Callable[[int], None] | None = None) -> None:
        parent = posixpath.dirname(remote)
        tmp = f"{parent}/.{posixpath.basename(remote)}.{uuid.uuid4().hex[:8]}.part"

        def _put() -> None:
            sftp = self.sftp()
            self._makedirs(sftp, parent)
            done = [0]

            def _progress(sent: int, _total: int) -> None:
                if callback:
                    callback(sent - done[0])
                done[0] = sent

            try:
                sftp.put(str(local), tmp, callback=_progress, confirm=True)
                sftp.posix_rename(tmp, remote)
            except BaseException:
                with contextlib.suppress(Exception):
                    sftp.remove(tmp)
                raise

        self._call(_put)

    def get(self, remote: str, local: Path) -> None:
        self._call(lambda: self.sftp().get(remote, str(local)))

    def read_bytes(self, remote: str, offset: int = 0, limit: int | None = None) -> bytes | None:
        def _read() -> bytes | None:
            try:
                with self.sftp().open(remote, "rb") as fh:
                    if offset:
                        fh.seek(offset)
                    return fh.read() if limit is None else fh.read(limit)
            except FileNotFoundError:
                return None

        return self._call(_read)

    def write_text(self, remote: str, text: str) -> None:
        parent = posixpath.dirname(remote)
        tmp = f"{parent}/.{posixpath.basename(remote)}.{uuid.uuid4().hex[:8]}.part"

        def _write() -> None:
            sftp = self.sftp()
            self._makedirs(sftp, parent)
            with sftp.open(tmp, "wb") as fh:
                fh.write(text.encode("utf-8"))
            sftp.posix_rename(tmp, remote)

        self._call(_write)

    def exists(self, remote: str) -> bool:
        def _exists() -> bool:
            try:
                self.sftp().stat(remote)
                return True
            except FileNotFoundError:
                return False

        return self._call(_exists)

    def home(self) -> str:
        if self._home is None:
            self._home = self._call(lambda: self.sftp().normalize("."))
        return self._home

    @staticmethod
    def _makedirs(sftp, path: str) -> None:
        missing: list[str] = []
        while path not in ("", "/"):
            try:
                sftp.stat(path)
                break
            except FileNotFoundError:
                missing.append(path)
                path = posixpath.dirname(path)
        for p in reversed(missing):
            with contextlib.suppress(OSError):
                sftp.mkdir(p)


def connect(machine: Machine, *, reconnect_seconds: float | None = None) -> Connection:
    """An open connection to ``machine`` (raises a one-line MachineError)."""
    if machine.is_local:
        return LocalConnection(machine)
    conn = SSHConnection(machine, reconnect_seconds=reconnect_seconds)
    conn.connect()
    return conn


@contextlib.contextmanager
def connection(machine: Machine) -> Iterator[Connection]:
    conn = connect(machine)
    try:
        yield conn
    finally:
        conn.close()


# -- SSH parameters and errors ---------------------------------------------------

def ssh_params(machine: Machine) -> dict:
    """Connection parameters: the machine's settings first, then ``~/.ssh/config``."""
    paramiko = _paramiko()
    o = machine.ssh
    alias = machine.hostname or ""
    found: dict = {}
    config_file = Path(str(o.get("config_file", "~/.ssh/config"))).expanduser()
    if config_file.is_file():
        try:
            found = paramiko.SSHConfig.from_path(str(config_file)).lookup(alias)
        except Exception as err:  # noqa: BLE001
            raise MachineError(machine.name, f"cannot read {config_file}: {_one_line(err)}") from None
    hostname = found.get("hostname", alias)
    port = machine.port or int(found.get("port", 22))
    username = machine.user or found.get("user") or getpass.getuser()
    keys = [str(Path(str(o["key_file"])).expanduser())] if o.get("key_file") else [
        str(Path(k).expanduser()) for k in found.get("identityfile", []) if Path(k).expanduser().is_file()
    ]
    for key in keys:
        if not Path(key).is_file():
            raise MachineError(machine.name, f"SSH key file {key} does not exist")
    proxy = o.get("proxy_command") or found.get("proxycommand")
    if not proxy and found.get("proxyjump") and found["proxyjump"].lower() != "none":
        proxy = f"ssh -W {shlex.quote(hostname)}:{port} {shlex.quote(found['proxyjump'])}"
    known_hosts = o.get("known_hosts_file")
    return {
        "hostname": hostname,
        "port": port,
        "username": username,
        "key_filenames": keys,
        "allow_agent": bool(o.get("allow_agent", True)),
        "look_for_keys": bool(o.get("look_for_keys", not keys)),
        "timeout": float(o.get("timeout", 20)),
        "proxy_command": proxy,
        "known_hosts_file": str(Path(str(known_hosts)).expanduser()) if known_hosts else None,
        "host_key_policy": o.get("host_key_policy", "known_hosts"),
    }


def _host_key_policy(policy: str, machine: str):
    paramiko = _paramiko()
    if policy == "auto_add":
        return paramiko.AutoAddPolicy()
    if policy == "strict":
        return paramiko.RejectPolicy()

    class _Warn(paramiko.MissingHostKeyPolicy):
        def missing_host_key(self, client, hostname, key):
            warnings.warn(
                f"machine {machine!r}: host {hostname} is not in known_hosts; accepting its "
                f"{key.get_name()} key for this session (set ssh.host_key_policy = \"strict\" to refuse)",
                stacklevel=2,
            )

    return _Warn()


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text[:300]


def _retryable_connect_error(err: MachineError) -> bool:
    """While reconnecting, a host that does not answer yet may come back; a
    refused key or host key will not."""
    return "cannot reach" in str(err)


def translate_ssh_error(machine: Machine, where: str, err: BaseException) -> MachineError:
    """One line for a failed SSH connection, without any secret in it."""
    paramiko = _paramiko()
    name = machine.name
    if isinstance(err, MachineError):
        return err
    if isinstance(err, paramiko.BadHostKeyException):
        return MachineError(name, f"the SSH host key of {where} does not match known_hosts (possible man-in-the-middle); refusing to connect")
    if isinstance(err, paramiko.PasswordRequiredException):
        return MachineError(name, f"the SSH key for {where} is protected by a passphrase; load it into ssh-agent (ssh-add)")
    if isinstance(err, paramiko.AuthenticationException):
        return MachineError(name, f"SSH authentication failed for {where}: the server refused the key(s) offered (ssh agent, ssh.key_file or ~/.ssh/id_*)")
    if isinstance(err, paramiko.SSHException) and "not found in known_hosts" in str(err):
        return MachineError(name, f"host key of {where} is not in known_hosts and ssh.host_key_policy is strict; connect once with ssh or add it with ssh-keyscan")
    if isinstance(err, socket.gaierror):
        return MachineError(name, f"cannot resolve host {where.split('@', 1)[-1].rsplit(':', 1)[0]}")
    if isinstance(err, paramiko.ssh_exception.NoValidConnectionsError):
        return MachineError(name, f"cannot reach {where}: connection refused")
    if isinstance(err, (socket.timeout, TimeoutError)):
        return MachineError(name, f"cannot reach {where}: timed out")
    if isinstance(err, OSError) and err.errno in _CONNECT_ERRNOS:
        return MachineError(name, f"cannot reach {where}: {err.strerror or _one_line(err)}")
    if isinstance(err, paramiko.SSHException) and "No authentication methods" in str(err):
        return MachineError(name, f"no SSH key for {where}: start ssh-agent or set ssh.key_file")
    if isinstance(err, (paramiko.SSHException, EOFError, OSError)):
        return MachineError(name, f"cannot reach {where}: {_one_line(err)}")
    return MachineError(name, f"SSH connection to {where} failed: {_one_line(err)}")
