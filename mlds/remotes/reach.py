"""Is a network remote answering?  Probe it, saying so while retrying, before a sync starts.

A dead endpoint otherwise looks like a hang: botocore retries quietly with
long connect timeouts, paramiko waits out its own.  One TCP connect per
attempt (a few seconds at most) tells the user within seconds that the remote
is not answering and that mlds is retrying, and fails with one line if it
stays down.  Local-folder remotes need no probe.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Callable
from urllib.parse import urlsplit

from mlds.errors import RemoteError
from mlds.remotes.config import Remote, redact_url, url_scheme

DEFAULT_ATTEMPTS = 3
DEFAULT_TIMEOUT = 5.0
_DEFAULT_PORTS = {"s3": 443, "https": 443, "http": 80, "sftp": 22, "rdm": 443}


def endpoint(remote: Remote) -> tuple[str, int] | None:
    """(host, port) the remote's backend connects to; None for local folders."""
    scheme = url_scheme(remote.url)
    if scheme == "file":
        return None
    o = remote.options
    url = remote.url
    if scheme == "s3":
        url = o.get("endpoint_url") or next((os.environ[e] for e in ("MLDS_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3",
                                                                     "AWS_ENDPOINT_URL") if os.environ.get(e)), None)
        if not url:
            return ("s3.amazonaws.com", 443)
    elif scheme == "rdm":
        url = o.get("api_url") or "https://api.rdm.nii.ac.jp"
    parts = urlsplit(url)
    host = parts.hostname
    if not host:
        return None
    port = parts.port or (int(o["port"]) if scheme == "sftp" and o.get("port") else None)
    return host, port or _DEFAULT_PORTS.get((parts.scheme or scheme).lower(), 443)


def wait_until_reachable(remote: Remote, *, attempts: int | None = None, timeout: float | None = None,
                         on_retry: Callable[[str], None] | None = None, sleep: Callable[[float], None] = time.sleep,
                         ) -> None:
    """Return once the remote's endpoint accepts a TCP connection; retry with back-off, reporting each retry.

    ``attempts``/``timeout`` default to the remote's options ``connect_attempts``
    and ``connect_timeout`` (3 and 5 s).  Raises :class:`RemoteError` when every
    attempt failed.
    """
    target = endpoint(remote)
    if target is None:
        return
    o = remote.options
    attempts = max(1, int(attempts or o.get("connect_attempts") or DEFAULT_ATTEMPTS))
    timeout = float(timeout or o.get("connect_timeout") or DEFAULT_TIMEOUT)
    host, port = target
    why = ""
    for attempt in range(1, attempts + 1):
        try:
            with socket.create_connection((host, port), timeout=timeout):
                return
        except socket.gaierror:
            raise RemoteError(remote.name, f"cannot resolve host {host} ({redact_url(remote.url)})") from None
        except OSError as err:
            why = err.strerror or type(err).__name__
        if attempt < attempts:
            delay = min(8.0, 2.0 ** (attempt - 1))
            if on_retry:
                on_retry(f"remote {remote.name!r}: {host}:{port} is not answering ({why}); "
                         f"retrying in {delay:g} s (attempt {attempt + 1} of {attempts})")
            sleep(delay)
    raise RemoteError(remote.name, f"{host}:{port} is not answering ({why}) after {attempts} attempts; "
                      f"check that the server is up and the URL {redact_url(remote.url)} is right")
