"""Errors a user can act on.

Every error mlds raises for bad input or a failed remote derives from
:class:`MldsError`; the CLI prints ``str(err)`` as one line and exits with
``err.exit_code`` (2 by default), never a traceback.  Messages name the file
or remote and the problem, and never contain credentials.
"""

from __future__ import annotations

import os


class MldsError(Exception):
    """Bad input or a refused operation: the CLI prints its message as one line and exits with ``exit_code``."""

    exit_code = 2


class FormatError(MldsError):
    """A file is not what it claims, or breaks the spec."""

    def __init__(self, path: str | os.PathLike | None, message: str, line: int | None = None):
        self.path = None if path is None else os.fspath(path)
        self.line = line
        self.message = message
        where = self.path or "<input>"
        if line is not None:
            where = f"{where}:{line}"
        super().__init__(f"{where}: {message}")


class SpecVersionError(FormatError):
    """The file was written by a newer major version of the spec."""


class ValidationError(FormatError):
    """Metadata or arrays violate the schema or the spec invariants."""


class UnknownFormatError(FormatError):
    pass


class RemoteError(MldsError):
    """A remote could not be reached, refused access, or holds bad data."""

    def __init__(self, remote: str, message: str):
        self.remote = remote
        super().__init__(f"remote {remote!r}: {message}")


class AuthError(RemoteError):
    pass


class OptionError(MldsError):
    """An option's value is invalid (``--frames 5:x``, ``--author ''``, a KEY=VALUE edit that cannot apply)."""


class OutputExistsError(MldsError):
    """An output would replace or delete something that is already there (``--force`` allows files)."""


class ConflictError(MldsError):
    """Someone else moved the same ref first; nothing was overwritten."""


class IntegrityError(MldsError):
    """Bytes did not match their recorded sha256."""


class StoreError(MldsError):
    pass


class NotFoundError(StoreError):
    """A store has nothing under this name (callers that know the kind they wanted rephrase it)."""

    def __init__(self, where: str, name: str) -> None:
        super().__init__(f"{where}: no dataset named {name!r}")
        self.where, self.name = where, name


class PolicyError(MldsError):
    """A tier's policy refuses the operation; the message lists what is missing."""
