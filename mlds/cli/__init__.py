"""Command-line interface: a thin layer over the library.

Each module registers its commands on :data:`mlds.cli.app.app`.  ``main``
turns every :class:`~mlds.errors.MldsError` into one line on stderr and its
exit code, so users never see a traceback for bad input.
"""

from __future__ import annotations

import importlib
import sys

from mlds.cli.app import app, err_console
from mlds.errors import MldsError

_COMMAND_MODULES = [
    "mlds.cli.dataset_cmds",   # info, validate, export, import
    "mlds.cli.convert_cmds",   # convert, ingest
    "mlds.cli.store_cmds",     # init, add, log, tag, checkout, fsck, gc, ls, search, push, pull, clone, promote
    "mlds.cli.remote_cmds",    # remote add/list/remove/check
    "mlds.cli.demo_cmds",      # demo
    "mlds.cli.machine_cmds",   # machine add/list/remove/check/template/url
    "mlds.cli.jobs_cmds",      # jobs submit/ls/status/log/fetch/cancel/resubmit
    "mlds.cli.ingest_cmds",    # ingest (run trees -> new versions)
    "mlds.cli.train_cmds",     # train n2p2/resume/finish/status
    "mlds.cli.potential_cmds", # potential ls/show/search/get/evaluate
    "mlds.cli.codes_cmds",     # codes list/build
]


def _load_commands() -> None:
    for mod in _COMMAND_MODULES:
        importlib.import_module(mod)


def main() -> None:
    """Console-script entry point."""
    sys.exit(run())


def run(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code (tests call this in-process)."""
    _load_commands()
    try:
        # with standalone_mode off, click returns the code of typer.Exit(code) instead of exiting
        code = app(args=argv, standalone_mode=False)
    except MldsError as err:
        err_console.print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
        return err.exit_code
    except KeyboardInterrupt:
        err_console.print("[bold red]interrupted[/]")
        return 130
    except SystemExit as exc:  # typer's own exits (--help, usage errors)
        return exc.code if isinstance(exc.code, int) else 1
    except Exception as exc:  # click usage errors arrive here in non-standalone mode
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            return exc.exit_code
        if isinstance(exc, click.exceptions.Abort):
            err_console.print("aborted")
            return 1
        raise
    return code if isinstance(code, int) else 0

