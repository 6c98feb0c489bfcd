"""Every command-line mistake: two lines (what, and where the help is), exit 2, never a traceback."""

from __future__ import annotations

import pytest

from tests.cli.conftest import no_traceback

CASES = [
    ([], "needs a command", "mlds --help"),
    (["imprt", "x.xyz"], "no such command 'imprt'", "mlds --help"),
    (["import"], "missing argument", "mlds import --help"),
    (["export", "a.h5", "-o", "b.xyz", "--bogus"], "no such option: --bogus", "mlds export --help"),
    (["remote"], "needs a command", "mlds remote --help"),
    (["info", "x.h5", "--plot"], "requires an argument", "--help"),
]


@pytest.mark.parametrize("argv,what,hint", CASES, ids=["bare", "typo", "missing-arg", "unknown-option", "bare-group",
                                                      "missing-value"])
def test_usage_error_is_two_lines_and_exit_2(mlds, argv, what, hint):
    r = mlds(*argv)
    assert r.code == 2, r
    assert no_traceback(r), r
    assert len(r.err_lines) <= 2, r
    assert what in r.err_lines[0], r
    assert hint in r.err, r


def test_both_click_copies_are_handled(monkeypatch, capsys):
    """typer >= 0.27 raises ``typer._click`` exceptions, older typer plain ``click`` ones: both become exit 2."""
    import importlib

    from mlds import cli

    raised = 0
    for name in ("typer._click.exceptions", "click.exceptions"):
        try:
            mod = importlib.import_module(name)
        except ImportError:
            continue

        def boom(*a, _mod=mod, **k):
            raise _mod.UsageError("bad usage from " + _mod.__name__)

        monkeypatch.setattr(cli, "app", boom)
        assert cli.run(["x"]) == 2
        err = capsys.readouterr().err
        assert f"bad usage from {name}" in err and len(err.strip().splitlines()) == 2
        raised += 1
    assert raised >= 1


def _groups() -> list[str]:
    """Every command group of the real command tree (not a hand-kept list: new groups are checked too)."""
    import typer.main

    from mlds.cli import _load_commands
    from mlds.cli.app import app

    _load_commands()
    return sorted(name for name, cmd in typer.main.get_command(app).commands.items() if hasattr(cmd, "commands"))


def test_every_group_and_new_command_mistakes_are_two_lines(mlds_many):
    groups = _groups()
    assert {"remote", "meta", "train", "machine", "jobs", "potential", "codes"} <= set(groups)
    mistakes = [["train", "n2p2"], ["ingest", "runs", "--bogus"], ["machine", "add"], ["jobs", "nosuch"]]
    runs = mlds_many(*[[g] for g in groups], *mistakes)
    for argv, r in zip([*[[g] for g in groups], *mistakes], runs):
        assert r.code == 2 and no_traceback(r) and len(r.err_lines) == 2, r
        assert r.out == "", r            # no screen of help instead of the two lines
        assert r.err_lines[1].startswith("run 'mlds ") and "--help' for usage" in r.err_lines[1], r
