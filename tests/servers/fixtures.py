"""Session-scoped pytest fixtures for the real protocol servers.

Import them in ``tests/conftest.py``::

    from tests.servers.fixtures import (  # noqa: F401  (pytest fixtures)
        s3_server, s3_env, s3_bucket, sftp_server, http_mirror_factory,
    )

* ``s3_server`` -> :class:`tests.servers.s3.S3Server`: ``.endpoint_url``,
  ``.key``/``.secret`` (valid; moto validates credentials), ``.env()``,
  ``.storage_options`` (for s3fs directly), ``.create_bucket()``, ``.url(bucket, prefix)``.
* ``s3_env`` (function scope) sets AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY /
  MLDS_S3_ENDPOINT_URL for the test so ``open_remote_fs`` finds the server and
  credentials the way users' machines do; yields the server.
* ``s3_bucket`` (function scope): a fresh, empty bucket name (uses ``s3_env``).
* ``sftp_server`` -> :class:`tests.servers.sftp.SFTPServer`: ``.url(path)``
  (``sftp://mlds@127.0.0.1:PORT/path``), ``.remote_options`` (key_file,
  strict known_hosts), ``.storage_options`` (for fsspec directly), ``.password``,
  ``.root`` (server directory seen as ``/``).
* ``http_mirror_factory(directory)`` -> :class:`tests.servers.http_mirror.HTTPMirror`
  serving that directory read-only: ``.url``, ``.root``.  All are stopped at
  the end of the session.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Callable, Iterator

import pytest

from tests.servers.http_mirror import HTTPMirror, start_http_mirror
from tests.servers.s3 import S3Server, start_s3_server
from tests.servers.sftp import SFTPServer, start_sftp_server

_CLEAR_AWS_ENV = (
    "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
    "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE",
)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    server = start_s3_server()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_env(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch, tmp_path_factory) -> S3Server:
    for var in _CLEAR_AWS_ENV:
        monkeypatch.delenv(var, raising=False)
    # keep ~/.aws of the developer out of the tests
    empty = tmp_path_factory.mktemp("aws")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for var, value in s3_server.env().items():
        monkeypatch.setenv(var, value)
    return s3_server


@pytest.fixture
def s3_bucket(s3_env: S3Server) -> str:
    return s3_env.create_bucket(f"mlds-test-{uuid.uuid4().hex[:12]}")


@pytest.fixture(scope="session")
def sftp_server() -> Iterator[SFTPServer]:
    server = start_sftp_server()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def http_mirror_factory() -> Iterator[Callable[[str | Path], HTTPMirror]]:
    mirrors: list[HTTPMirror] = []

    def factory(directory: str | Path) -> HTTPMirror:
        mirror = start_http_mirror(directory)
        mirrors.append(mirror)
        return mirror

    try:
        yield factory
    finally:
        for mirror in mirrors:
            mirror.stop()
