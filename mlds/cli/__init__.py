"""Command-line interface: a thin layer over the library.

Each module registers its commands on :data:`mlds.cli.app.app`.  ``run``
turns every :class:`~mlds.errors.MldsError` into one line on stderr and its
exit code, and every command-line mistake (no command, a typo, a missing
argument, an unknown option) into one or two lines and exit code 2, so users
never see a traceback for bad input.
"""

from __future__ import annotations

import importlib
import sys

from mlds.cli.app import app, err_console, print_error
from mlds.errors import MldsError

_COMMAND_MODULES = [
    "mlds.cli.dataset_cmds",   # info, validate
    "mlds.cli.convert_cmds",   # import, convert, export (one pipeline)
    "mlds.cli.store_cmds",     # init, add, log, tag, checkout, fsck, gc, ls, search, push, pull, clone, promote
    "mlds.cli.remote_cmds",    # remote add/list/remove/check/default
    "mlds.cli.meta_cmds",      # meta show/set
    "mlds.cli.demo_cmds",      # demo
    "mlds.cli.machine_cmds",   # machine add/list/remove/check/template/url
    "mlds.cli.jobs_cmds",      # jobs submit/ls/status/log/fetch/cancel/resubmit
    "mlds.cli.ingest_cmds",    # ingest (run trees -> new versions)
    "mlds.cli.train_cmds",     # train n2p2/resume/finish/status
    "mlds.cli.potential_cmds", # potential ls/show/search/get/evaluate
    "mlds.cli.codes_cmds",     # codes list/build
]

# The top-level names each module registers: a start-up shortcut only (issue 12), so `mlds convert ...`
# imports and builds one module's commands instead of all of them.  A name missing here loads every
# module, so a new command works before it is listed; tests/cli/test_lazy_commands.py checks the map.
_COMMANDS_OF = {
    "mlds.cli.dataset_cmds": ("info", "validate"),
    "mlds.cli.convert_cmds": ("import", "convert", "export"),
    "mlds.cli.store_cmds": ("init", "add", "log", "tag", "checkout", "fsck", "gc", "ls", "search", "push", "pull",
                            "clone", "promote"),
    "mlds.cli.remote_cmds": ("remote",),
    "mlds.cli.meta_cmds": ("meta",),
    "mlds.cli.demo_cmds": ("demo",),
    "mlds.cli.machine_cmds": ("machine",),
    "mlds.cli.jobs_cmds": ("jobs",),
    "mlds.cli.ingest_cmds": ("ingest",),
    "mlds.cli.train_cmds": ("train",),
    "mlds.cli.potential_cmds": ("potential",),
    "mlds.cli.codes_cmds": ("codes",),
}

USAGE_EXIT = 2


def _load_commands(argv: list[str] | None = None) -> None:
    """Import the command modules: only the one that defines ``argv[0]`` when it is a known command
    name (``mlds --help``, a typo or an option first loads them all)."""
    first = argv[0] if argv else None
    for mod in _COMMAND_MODULES:
        if first in _COMMANDS_OF.get(mod, ()):
            importlib.import_module(mod)
            return
    for mod in _COMMAND_MODULES:
        importlib.import_module(mod)


def _click_modules() -> list:
    """The click exception modules in use: typer >= 0.27 bundles its own copy as ``typer._click``,
    older typer uses ``click``; a usage error may come from either."""
    mods = []
    for name in ("typer._click.exceptions", "typer.exceptions", "click.exceptions"):
        try:
            mods.append(importlib.import_module(name))
        except ImportError:
            continue
    return mods


# Commands whose process may end without the interpreter's teardown (_quick_exit): they write one
# output through context managers and h5py, which _quick_exit checks is closed.
_QUICK_EXIT_COMMANDS = ("convert", "export")


def main() -> None:
    """Console-script entry point."""
    argv = sys.argv[1:]
    code = run()
    if argv and argv[0] in _QUICK_EXIT_COMMANDS:
        _quick_exit(code)
    sys.exit(code)


def _quick_exit(code: int) -> None:
    """End the process without the interpreter's teardown when that is safe, else return.

    Freeing the modules (numpy, h5py, Typer, Rich...) at exit costs ~0.07 s of CPU per process, a
    tenth of converting a 60 MB OUTCAR (issue 12).  What an exit must still do is done here: the
    atexit handlers run (h5py, logging, temporary directories, thread pools), then stdout and stderr
    are flushed.  Not when a non-daemon thread still runs or an HDF5 file is still open (the HDF5
    library closes files in its own C-level exit handler, which os._exit skips): then the normal exit.
    """
    import os
    import threading

    main_thread = threading.main_thread()
    if any(t is not main_thread and not t.daemon and t.is_alive() for t in threading.enumerate()):
        return
    h5py = sys.modules.get("h5py")
    if h5py is not None and h5py.h5f.get_obj_count(h5py.h5f.OBJ_ALL, h5py.h5f.OBJ_FILE) != 0:
        return
    import atexit

    run_exitfuncs = getattr(atexit, "_run_exitfuncs", None)  # what the interpreter calls at exit
    if run_exitfuncs is None:
        return
    run_exitfuncs()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        code = code or 120  # as the interpreter does when flushing stdout fails at exit
    os._exit(code if isinstance(code, int) else 1)


def run(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code (tests call this in-process)."""
    _load_commands(sys.argv[1:] if argv is None else argv)
    try:
        # with standalone_mode off, click returns the code of typer.Exit(code) instead of exiting
        code = app(args=argv, standalone_mode=False, prog_name="mlds")
    except MldsError as err:
        print_error(str(err))
        return err.exit_code
    except KeyboardInterrupt:
        err_console.print("[bold red]interrupted[/]")
        return 130
    except SystemExit as exc:  # typer's own exits (--help, --version)
        return exc.code if isinstance(exc.code, int) else 1
    except Exception as exc:  # click usage errors arrive here in non-standalone mode
        for mod in _click_modules():
            if _is(exc, mod, "UsageError"):
                _usage_error(exc)
                return USAGE_EXIT
            if _is(exc, mod, "ClickException"):  # e.g. BadParameter raised by a callback outside parsing
                print_error(exc.format_message())
                return exc.exit_code
            if _is(exc, mod, "Abort"):
                err_console.print("aborted")
                return 1
        raise
    return code if isinstance(code, int) else 0


def _is(exc: BaseException, mod, name: str) -> bool:
    cls = getattr(mod, name, None)  # typer._click has no Abort, for one
    return isinstance(cls, type) and isinstance(exc, cls)


def _usage_error(exc) -> None:
    """Two lines: what was wrong, and where the help is."""
    ctx = getattr(exc, "ctx", None)
    path = ctx.command_path if ctx is not None and ctx.command_path else "mlds"
    message = (exc.format_message() or "").strip()
    if not message or message == "Missing command.":
        message = f"'{path}' needs a command"
    message = message[:1].lower() + message[1:] if message[:1].isupper() and not message[1:2].isupper() else message
    print_error(message)
    err_console.print(f"run '{path} --help' for usage", highlight=False, soft_wrap=True, markup=False)
