"""Errors of the execution layer: one line each, naming the machine or job."""

from __future__ import annotations

from mlds.errors import MldsError


class MachineError(MldsError):
    """A machine is unknown, misconfigured, unreachable or refused something."""

    def __init__(self, machine: str, message: str):
        self.machine = machine
        super().__init__(f"machine {machine!r}: {message}")


class ConnectionLost(MachineError):
    """The SSH connection dropped and could not be re-established in time."""


class JobError(MldsError):
    """A job is unknown, or ended without the result it should have.

    Exit code 1 (not 2): the input was fine, the job was not.
    """

    exit_code = 1


class JobNotFound(MldsError):
    """No job record with that id (bad input: exit 2)."""
