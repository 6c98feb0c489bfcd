"""The Typer application object every command module registers on."""

from __future__ import annotations

import typer
from rich.console import Console

app = typer.Typer(
    name="mlds",
    help="Versioned, shareable DFT training data for machine-learning interatomic potentials.",
    no_args_is_help=False,  # a bare `mlds` is a usage error (two lines, exit 2), not a screen of help
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)


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
