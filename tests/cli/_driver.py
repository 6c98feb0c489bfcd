"""Run several `mlds` command lines in one fresh interpreter, one after another.

Interpreter start-up and imports cost most of a CLI call (0.5-3 s on a loaded
2-core machine); a scenario of ten commands in one process keeps the suite
fast while still running in a subprocess with the real entry point
(:func:`mlds.cli.run`), real files and real environment.  Reads a JSON list
of argv lists on stdin, writes a JSON list of {code, out, err} on stdout.
"""

import contextlib
import io
import json
import sys
import traceback

from mlds.cli import run

results = []
for argv in json.load(sys.stdin):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = run(argv)
        except SystemExit as exc:  # noqa: PERF203 - what the console script would do
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:  # an uncaught error: the console script would show this traceback
            traceback.print_exc()
            code = 1
    results.append({"code": code, "out": out.getvalue(), "err": err.getvalue()})
sys.__stdout__.write(json.dumps(results))
