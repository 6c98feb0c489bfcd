"""A real SSH/SFTP server for tests: asyncssh on 127.0.0.1, chrooted to a temp dir.

The server runs its own asyncio event loop in a daemon thread.  It accepts one
user, authenticated either by a generated ed25519 client key or by a password.
Clients (fsspec's ``SFTPFileSystem`` on paramiko) see the chroot as ``/``.

``server.loose_excl = True`` makes the server honour ``SSH_FXF_EXCL`` loosely -- an
exclusive open of an existing file succeeds and truncates it -- as some SFTP servers
do (the flag is advisory in the SFTPv3 draft); the store's locks must not rely on it.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

import asyncssh

USER = "mlds"


class _Server(asyncssh.SSHServer):
    def __init__(self, username: str, password: str):
        self._username = username
        self._password = password

    def begin_auth(self, username: str) -> bool:
        return True  # always require authentication

    def password_auth_supported(self) -> bool:
        return True

    def validate_password(self, username: str, password: str) -> bool:
        return username == self._username and secrets.compare_digest(password, self._password)

    def public_key_auth_supported(self) -> bool:
        return True


class _Flags:
    loose_excl = False


class _SFTPServer(asyncssh.SFTPServer):
    flags: _Flags = _Flags()

    def open(self, path, pflags, attrs):
        if self.flags.loose_excl:
            pflags &= ~asyncssh.FXF_EXCL  # "create" degrades to create-or-truncate
        return super().open(path, pflags, attrs)


@dataclass
class SFTPServer:
    host: str
    port: int
    username: str
    password: str
    key_file: str          # private client key (OpenSSH format), usable by paramiko
    known_hosts: str       # known_hosts file holding this server's host key
    root: Path             # server directory that clients see as "/"
    _loop: asyncio.AbstractEventLoop = field(repr=False)
    _thread: threading.Thread = field(repr=False)
    _acceptor: object = field(repr=False)
    _tmp: tempfile.TemporaryDirectory = field(repr=False)
    _flags: _Flags = field(repr=False, default_factory=_Flags)

    @property
    def loose_excl(self) -> bool:
        return self._flags.loose_excl

    @loose_excl.setter
    def loose_excl(self, value: bool) -> None:
        self._flags.loose_excl = bool(value)

    def url(self, path: str = "/data") -> str:
        return f"sftp://{self.username}@{self.host}:{self.port}{path}"

    @property
    def storage_options(self) -> dict:
        """Keyword arguments for fsspec's ``SFTPFileSystem`` (key auth)."""
        return {
            "host": self.host,
            "port": self.port,
            "username": self.username,
            "key_filename": self.key_file,
            "allow_agent": False,
            "look_for_keys": False,
        }

    @property
    def remote_options(self) -> dict:
        """Options for an mlds remote: key auth, no agent/default keys, and
        strict host-key checking against this server's known_hosts file."""
        return {
            "key_file": self.key_file,
            "allow_agent": False,
            "look_for_keys": False,
            "host_key_policy": "strict",
            "known_hosts_file": self.known_hosts,
        }

    def stop(self) -> None:
        async def _close():
            self._acceptor.close()
            await self._acceptor.wait_closed()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        try:
            asyncio.run_coroutine_threadsafe(_close(), self._loop).result(timeout=10)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._tmp.cleanup()


def start_sftp_server(host: str = "127.0.0.1") -> SFTPServer:
    tmp = tempfile.TemporaryDirectory(prefix="mlds-sftp-")
    base = Path(tmp.name)
    root = base / "root"
    root.mkdir()
    keys = base / "keys"
    keys.mkdir(mode=0o700)

    host_key = asyncssh.generate_private_key("ssh-ed25519")
    client_key = asyncssh.generate_private_key("ssh-ed25519")
    key_file = keys / "id_ed25519"
    client_key.write_private_key(str(key_file), format_name="openssh")
    os.chmod(key_file, 0o600)
    authorized = asyncssh.import_authorized_keys(client_key.export_public_key().decode())
    password = secrets.token_urlsafe(16)

    loop = asyncio.new_event_loop()
    ready = threading.Event()

    flags = _Flags()

    def _sftp_factory(chan):
        server = _SFTPServer(chan, chroot=str(root).encode())
        server.flags = flags
        return server

    def _run():
        asyncio.set_event_loop(loop)
        ready.set()
        loop.run_forever()
        loop.close()

    thread = threading.Thread(target=_run, name="mlds-test-sftp", daemon=True)
    thread.start()
    ready.wait()

    async def _listen():
        return await asyncssh.listen(
            host, 0,
            server_host_keys=[host_key],
            authorized_client_keys=authorized,
            server_factory=lambda: _Server(USER, password),
            sftp_factory=_sftp_factory,
            allow_scp=False,
        )

    acceptor = asyncio.run_coroutine_threadsafe(_listen(), loop).result(timeout=20)
    port = acceptor.get_port()
    known_hosts = keys / "known_hosts"
    known_hosts.write_text(f"[{host}]:{port} {host_key.export_public_key().decode().strip()}\n")
    return SFTPServer(
        host=host, port=port, username=USER, password=password, key_file=str(key_file),
        known_hosts=str(known_hosts), root=root, _loop=loop, _thread=thread, _acceptor=acceptor, _tmp=tmp,
        _flags=flags,
    )
