"""The Typer application object every command module registers on."""

from __future__ import annotations

from typing import Any

import typer

app = typer.Typer(
    name="mlds",
    help="Versioned, shareable DFT training data for machine-learning interatomic potentials.",
    no_args_is_help=False,  # a bare `mlds` is a usage error (two lines, exit 2), not a screen of help
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
)


class _LazyConsole:
    """A ``rich.console.Console`` made on first use (attribute reads and writes go to it).

    Importing rich.console and building two consoles costs every process ~0.05 s of CPU, and
    the commonest run, a quiet ``mlds convert``, prints one plain line without it (issue 12)."""

    def __init__(self, **options: Any) -> None:
        object.__setattr__(self, "_mlds_options", options)
        object.__setattr__(self, "_mlds_console", None)

    def _mlds_real(self) -> Any:
        real = object.__getattribute__(self, "_mlds_console")
        if real is None:
            from rich.console import Console

            real = Console(**object.__getattribute__(self, "_mlds_options"))
            object.__setattr__(self, "_mlds_console", real)
        return real

    def __getattr__(self, name: str) -> Any:
        return getattr(self._mlds_real(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._mlds_real(), name, value)

    # Special methods are looked up on the type, not through __getattr__: Rich's Live/Progress
    # enter the console (``with console:``) when they stop.
    def __enter__(self) -> Any:
        return self._mlds_real().__enter__()

    def __exit__(self, *exc: Any) -> Any:
        return self._mlds_real().__exit__(*exc)


console: Any = _LazyConsole()
err_console: Any = _LazyConsole(stderr=True)


def print_error(message: str, label: str = "error") -> None:
    """``error: message`` on stderr; the message is plain text (brackets in it are not Rich markup)."""
    from rich.text import Text

    err_console.print(Text.assemble((f"{label}:", "bold red"), " ", message), highlight=False, soft_wrap=True)


def _show_version(value: bool) -> None:
    if value:
        from mlds import __version__

        console.print(f"mlds {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_show_version, is_eager=True, help="Show the version and exit."),
) -> None:
    """Versioned, shareable DFT training data for machine-learning interatomic potentials."""
