"""The CLI's consoles are made on first use; Rich objects built on them must still work."""

from __future__ import annotations

import io

from rich.progress import Progress

from mlds.cli.app import _LazyConsole


def test_progress_on_a_lazy_console_starts_and_stops() -> None:
    out = io.StringIO()
    console = _LazyConsole(file=out, force_terminal=False)
    with Progress(console=console, transient=True) as progress:  # Live enters the console on stop
        task = progress.add_task("work", total=2)
        progress.advance(task, 2)
    console.print("after the bar")
    assert "after the bar" in out.getvalue()
