"""`mlds ingest` from the command line: the job-script one-liner, --push, --watch, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from mlds.cli import run

from .conftest import make_run, source_hashes, truncated_copy, version_hashes

REPO = Path(__file__).resolve().parents[2]
README_LINE = 'mlds ingest "$PWD" -d NAME --push group'


def _readme_job_line() -> str:
    """The job-script line exactly as the README shows it (so the README cannot drift from what works)."""
    text = (REPO / "README.md").read_text()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip().startswith("mlds ingest \"$PWD\"")]
    assert lines, "README has no job-script ingest line"
    return lines[0].split("  #")[0].strip()


def test_job_script_one_liner_pushes_to_the_group_remote(store, tree, tmp_path):
    group = tmp_path / "group-store"
    assert run(["remote", "add", "group", str(group), "--tier", "group"]) == 0
    run_dir = make_run(tree, "job42", "h2o_pair")
    line = _readme_job_line()
    assert line == README_LINE
    job = tmp_path / "job.sh"
    job.write_text("#!/bin/bash\nset -e\n# ... the calculation ran here ...\n" + line.replace("NAME", "water") + "\n")
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
               PYTHONPATH=str(REPO))
    proc = subprocess.run(["bash", str(job)], cwd=run_dir, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "water: new version v1" in proc.stdout and "pushed water" in proc.stdout
    from mlds.store.store import Store

    remote = Store.at_path(group)
    assert version_hashes("water@v1", store) == source_hashes(run_dir / "OUTCAR")
    assert remote.read_ref("water", "latest") == store.read_ref("water", "latest")
    # the next job's line (nothing new here) is a quiet success and pushes nothing again
    proc2 = subprocess.run(["bash", str(job)], cwd=run_dir, env=env, capture_output=True, text=True, timeout=120)
    assert proc2.returncode == 0 and "nothing new" in proc2.stdout and "pushed" not in proc2.stdout


def test_failed_push_is_retried_by_the_next_ingest(store, tree, tmp_path, capsys):
    import socket

    with socket.socket() as s:  # a port nobody listens on: the login node is unreachable
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert run(["remote", "add", "grp", f"sftp://mlds@127.0.0.1:{port}/store", "-o", "timeout=2"]) == 0
    make_run(tree, "a", "h2o_pair")
    assert run(["ingest", str(tree), "-d", "w", "--push", "grp", "-j", "1", "--settle", "0"]) == 1
    err = capsys.readouterr().err
    assert "push of w failed" in err and "tried again next time" in err
    assert store.read_ref("w", "v1") is not None        # the version is safe locally
    group = tmp_path / "group"
    assert run(["remote", "add", "grp", str(group), "--force"]) == 0  # the network is back
    assert run(["ingest", str(tree), "-d", "w", "--push", "grp", "-j", "1", "--settle", "0"]) == 0
    out = capsys.readouterr().out
    assert "nothing new" in out and "pushed w" in out  # no new version, but the pending push went through
    from mlds.store.store import Store

    assert Store.at_path(group).read_ref("w", "latest") == store.read_ref("w", "latest")


def test_json_summary_and_exit_codes(store, tree, capsys):
    make_run(tree, "ok", "lips_md")
    make_run(tree, "bad", "aborted")
    code = run(["ingest", str(tree), "-d", "d", "--json", "-j", "1", "--settle", "0"])
    out = json.loads(capsys.readouterr().out)
    assert code == 1  # a source failed in this pass: the job script sees it
    status = {Path(o["path"]).relative_to(tree).as_posix(): o["status"] for o in out["outcomes"]}
    assert status == {"ok/OUTCAR": "added", "bad/OUTCAR": "failed", "bad/vasprun.xml": "failed"}
    assert out["versions"]["d"]["version"] == 1
    assert run(["ingest", str(tree), "-d", "d", "-j", "1", "--settle", "0"]) == 0  # failed before: not again
    assert "2 source(s) failed before" in capsys.readouterr().out


def test_nothing_found_and_bad_arguments(store, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no calculation here")
    assert run(["ingest", str(empty), "-d", "d"]) == 1
    assert "no calculation outputs" in capsys.readouterr().err
    assert run(["ingest", str(tmp_path / "missing"), "-d", "d"]) == 2
    assert "no such file or directory" in capsys.readouterr().err
    assert run(["ingest", str(empty)]) == 2  # no -d and no [ingest] rules: one line saying what to do
    assert "pass -d NAME" in capsys.readouterr().err
    assert run(["ingest", str(empty), "-d", "{bogus}"]) == 2
    assert "unknown placeholder" in capsys.readouterr().err


def test_watch_picks_up_a_run_that_finishes_between_passes(store, tree, capsys, monkeypatch):
    import mlds.ingest.core as C

    out = tree / "md" / "OUTCAR"
    truncated_copy("dpdata/tests/poscars/OUTCAR.h2o.md.10", out, 0.5)  # still running
    real_sleep = C.time.sleep
    finished = make_run(tree.parent / "src", "x", "h2o_pair") / "OUTCAR"
    rounds = []

    def sleep_then_finish(seconds):  # the job finishes while --watch waits between passes
        rounds.append(store.read_ref("w", "latest"))
        out.write_bytes(finished.read_bytes())
        real_sleep(0.01)

    monkeypatch.setattr(C.time, "sleep", sleep_then_finish)
    code = run(["ingest", str(tree), "-d", "w", "--watch", "--interval", "5", "--max-rounds", "2", "-j", "1"])
    assert code == 0
    assert rounds == [None]  # after pass 1 (run still being written) there was no version
    text = capsys.readouterr().out
    assert "pass 2" in text and text.count("w: new version v1") == 1
    assert version_hashes("w@v1", store) == source_hashes(out)


def test_info_shows_the_settings_key(store, tree, capsys, monkeypatch):
    from mlds.format.settings_key import settings_key
    from mlds.io.registry import open_reader

    import importlib

    cli_app = importlib.import_module("mlds.cli.app")

    run_dir = make_run(tree, "a", "lips_md")
    assert run(["ingest", str(tree), "-d", "lps", "-j", "1", "--settle", "0", "-q"]) == 0
    capsys.readouterr()
    monkeypatch.setattr(cli_app.console, "width", 220)  # the calculations table is wide
    assert run(["info", "lps"]) == 0
    reader = open_reader(run_dir / "OUTCAR")
    for _ in reader:
        pass
    assert settings_key(reader.report.settings) in capsys.readouterr().out
