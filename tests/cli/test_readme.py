"""The README's commands run literally, in order, on a fresh copy of the repository.

Every ```bash / ```python block of the sections a user follows on a laptop runs as written
(the set-up, data, library and sharing sections, then the local lines of `mlds ingest`).
Lines that need what a test machine lacks (n2p2 programs, a batch system, a remote login node,
a loop that never ends) are not run; every `mlds` command line of the README is instead parsed
by the real command tree (`test_every_readme_command_line_parses`), so none can name a
command, option or argument that does not exist, and its TOML examples load through the
library's own config readers.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.conftest import REPO

# every block of these sections runs, in order
LITERAL = ("## Using it", "## Library: training loops, selections, workers", "## Sharing: stores, remotes, tiers")
INGEST = "## Automatic collection: `mlds ingest`"
# lines of the ingest section that need a remote login node, a never-ending loop or a batch system
NOT_RUN_HERE = ("sftp://", "--watch", "--dask slurm")


def sections(text: str) -> dict[str, list[tuple[str, str]]]:
    """Section heading -> its fenced blocks [(language, code)], in order (indented fences included)."""
    out = {}
    for part in re.split(r"^(?=## )", text, flags=re.M):
        blocks = re.findall(r"^( *)```(\w+)\n(.*?)^\1```", part, re.S | re.M)
        out[part.splitlines()[0].strip()] = [(lang, _dedent(code, indent)) for indent, lang, code in blocks]
    return out


def _dedent(code: str, indent: str) -> str:
    return "".join(line[len(indent):] if line.startswith(indent) else line for line in code.splitlines(True))


def _run(lang: str, code: str, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    argv = ["bash", "-euo", "pipefail", "-c", code] if lang == "bash" else [sys.executable, "-c", code]
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"README block failed:\n{code}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    return proc


def test_readme_sequence_runs_as_written(tmp_path, monkeypatch):
    clone = tmp_path / "mlds"
    shutil.copytree(REPO, clone, ignore=shutil.ignore_patterns(".git", "__pycache__", "*.egg-info", ".pytest_cache",
                                                                ".hypothesis", "benchmarks"))
    monkeypatch.delenv("MLDS_STORE", raising=False)
    home = tmp_path / "home"   # `~/runs` of the ingest examples
    home.mkdir()
    bindir = str(Path(sys.executable).parent)   # the `mlds` and `python3` of this environment, importing the copy
    env = dict(os.environ, PATH=bindir + os.pathsep + os.environ.get("PATH", ""), HOME=str(home), PYTHONPATH=str(clone),
               TMPDIR=str(tmp_path))
    readme = sections((clone / "README.md").read_text(encoding="utf-8"))
    # the set-up line, without the install (the environment has it; installing here would re-point it at the copy)
    install, demo = readme["## Set-up"][0][1].strip().split(" && ")
    assert install == "python3 -m pip install -e ." and demo == "mlds demo"
    where = _run("bash", demo + ' && python3 -c "import mlds; print(mlds.__file__)"', clone, env).stdout
    assert "demo finished" in where and where.splitlines()[-1].startswith(str(clone))
    blocks = [b for name in LITERAL for b in readme[name]]
    assert [lang for lang, _ in blocks] == ["bash", "python", "python", "bash"]
    sharing = blocks[-1][1]
    for step in ("mlds init", "mlds remote add group", "mlds meta set cu3au", "mlds push cu3au",
                 "mlds promote cu3au@v2 --to public", "mlds clone public colleague-store", "--append"):
        assert step in sharing   # the sharing sequence is really the one run below
    outs = [_run(lang, code, clone, env) for lang, code in blocks]
    assert (clone / "input.data").read_text().startswith("begin")
    assert "promoted cu3au public" in outs[-1].stdout and "cloned 1 dataset(s)" in outs[-1].stdout
    assert "nothing changed (still v2)" in outs[-1].stdout
    assert (clone / "colleague-store").is_dir()
    from mlds.format.validate import validate_dataset

    for subset in ("nial.h5", "first3.h5"):   # the library block's views, written out: valid datasets
        assert validate_dataset(clone / subset) == []

    # `mlds ingest`: the lines that need only local folders, literally, into the project store above
    from tests.ingest.conftest import make_run

    make_run(home / "runs" / "SiO2", "run1", "h2o_pair")
    make_run(home / "runs" / "SiO2", "run2", "qe_si_md")
    make_run(home / "runs" / "TiO", "run1", "tio_pair")
    first, job_line = readme[INGEST][0][1], readme[INGEST][1][1]
    local = "".join(line for line in first.splitlines(True) if not any(s in line for s in NOT_RUN_HERE))
    assert local.count("mlds ingest") == 3
    ingested = _run("bash", local, clone, env).stdout
    assert "SiO2: new version v1" in ingested and "nothing new: no version made" in ingested
    job = make_run(clone, "job-run", "tio_pair")   # a run folder inside the project: its store and remotes
    pushed = _run("bash", job_line.replace("NAME", "tio"), job, env).stdout
    assert "tio: new version v1" in pushed and "pushed tio" in pushed


def _mlds_lines(code: str) -> list[list[str]]:
    """Each `mlds ...` command of a bash block as argv (comments, continuations, `&&` chains handled)."""
    argvs = []
    for line in code.replace("\\\n", " ").splitlines():
        tokens = shlex.split(line, comments=True)
        while tokens:
            cut = tokens.index("&&") if "&&" in tokens else len(tokens)
            cmd, tokens = tokens[:cut], tokens[cut + 1:]
            while cmd and re.match(r"^[A-Z_]+=", cmd[0]):   # VAR=value prefixes
                cmd = cmd[1:]
            if cmd and cmd[0] == "mlds":
                argvs.append(cmd[1:])
    return argvs


def _rest(ctx) -> list[str]:
    """What a group leaves for its subcommand (``protected_args`` is private in typer's bundled click)."""
    protected = ctx._protected_args if hasattr(ctx, "_protected_args") else ctx.protected_args
    return [*protected, *ctx.args]


def test_every_readme_command_line_parses():
    """Commands not run above (n2p2, Slurm, remote hosts) still name real commands, options and arguments."""
    import typer.main

    from mlds.cli import _load_commands
    from mlds.cli.app import app

    _load_commands()
    root = typer.main.get_command(app)
    text = (REPO / "README.md").read_text(encoding="utf-8")
    argvs = [argv for blocks in sections(text).values() for lang, code in blocks if lang == "bash"
             for argv in _mlds_lines(code)]
    seen = set()
    for argv in argvs:
        ctx = root.make_context("mlds", list(argv))   # raises on unknown options, missing or extra arguments
        cmd, path = root, []
        while hasattr(cmd, "resolve_command") and _rest(ctx):
            name, cmd, rest = cmd.resolve_command(ctx, _rest(ctx))
            path.append(name)
            ctx = cmd.make_context(name, rest, parent=ctx)
        assert not hasattr(cmd, "resolve_command"), f"README line 'mlds {shlex.join(argv)}' names no command"
        seen.add(" ".join(path))
    # the sections other helpers own are among those checked
    assert {"train n2p2", "potential get", "machine add", "jobs resubmit", "ingest", "codes build"} <= seen


def test_readme_toml_examples_load(tmp_path):
    """The config examples are what the library reads (ingest rules, train settings, machines)."""
    from mlds.compute.machines import Machine
    from mlds.ingest.rules import parse_rules
    from mlds.train.settings import resolve

    text = (REPO / "README.md").read_text(encoding="utf-8")
    tomls = [code for blocks in sections(text).values() for lang, code in blocks if lang == "toml"]
    assert len(tomls) == 3
    rules, settings, machines = tomls
    assert [r.dataset for r in parse_rules(tomllib.loads(rules)["ingest"]["rules"])] == ["SiO2", "Li3PS4", "{formula}"]
    (tmp_path / "settings.toml").write_text(settings)
    resolved = resolve(["Cu", "S"], file=tmp_path / "settings.toml")
    assert resolved["epochs"] == 50 and resolved["network"]["hidden_nodes"] == [20, 20]
    header = tmp_path / "header.sh"   # the example's own job-script header is the user's file
    header.write_text("#PJM -L node=1\n")
    for name, entry in tomllib.loads(machines)["machines"].items():
        entry = dict(entry, **({"header": str(header)} if "header" in entry else {}))
        assert Machine.from_table(name, entry).scheduler == entry["scheduler"]


@pytest.mark.parametrize("line", ["python3 -m pip install -e . && mlds demo",
                                  "python3 -m pip install -e '.[test]' && python3 -m pytest -q -p no:cacheprovider"])
def test_setup_commands_are_as_documented(line):
    """The two set-up lines, as written (the sequence test above runs `mlds demo` on the copy)."""
    setup = sections((REPO / "README.md").read_text(encoding="utf-8"))["## Set-up"]
    assert ("bash", line + "\n") in setup
