"""`mlds CMD` imports only the module that defines CMD (start-up time, issue 12); the map it uses is
what the modules really register."""

from __future__ import annotations

import ast
import json
import subprocess
import sys

_REGISTERED = """
import importlib, json
from mlds.cli import _COMMAND_MODULES
from mlds.cli.app import app
out = {}
for mod in _COMMAND_MODULES:
    nc, ng = len(app.registered_commands), len(app.registered_groups)
    importlib.import_module(mod)
    out[mod] = sorted([c.name or c.callback.__name__.replace("_", "-") for c in app.registered_commands[nc:]]
                      + [g.name or g.typer_instance.info.name for g in app.registered_groups[ng:]])
print(json.dumps(out))
"""

_LOADED = """
import sys
from mlds.cli import run
code = run(sys.argv[1:])
print(sorted(m for m in sys.modules if m.startswith("mlds.cli.") and m.endswith("_cmds")), code)
"""


def test_command_map_matches_what_modules_register():
    """Fresh interpreter: every module's top-level names equal the map's (a stale map would hide a command)."""
    from mlds.cli import _COMMAND_MODULES, _COMMANDS_OF

    proc = subprocess.run([sys.executable, "-c", _REGISTERED], capture_output=True, text=True, check=True)
    registered = json.loads(proc.stdout)
    assert list(registered) == _COMMAND_MODULES
    assert registered == {mod: sorted(names) for mod, names in _COMMANDS_OF.items()}


def test_a_command_loads_only_its_module_and_help_loads_all(tmp_path):
    from mlds.cli import _COMMAND_MODULES

    def loaded(*args: str) -> tuple[list[str], str]:
        proc = subprocess.run([sys.executable, "-c", _LOADED, *args], capture_output=True, text=True, cwd=tmp_path)
        mods, code = proc.stdout.strip().splitlines()[-1].rsplit(" ", 1)
        return ast.literal_eval(mods), code

    mods, code = loaded("convert", "--help")
    assert (mods, code) == (["mlds.cli.convert_cmds"], "0")
    mods, code = loaded("--help")
    assert mods == sorted(_COMMAND_MODULES) and code == "0"
    mods, code = loaded("convrt")  # a typo: every module, so click can suggest the right name
    assert mods == sorted(_COMMAND_MODULES) and code == "2"
