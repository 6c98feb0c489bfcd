"""Faults: an ingest SIGKILLed at many points, two ingests at once, unreadable files, a real Dask run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import make_run, source_hashes, sources_of, version_hashes

REPO = Path(__file__).resolve().parents[2]
RULES = '[ingest]\nrules = [ { path = "lps/**", dataset = "lps" }, { dataset = "water" } ]\n'

# one ingest pass in a fresh interpreter; prints the number of store writes it made
INGEST = """
import json, sys
from mlds.ingest import ingest
from mlds.store import store as S
r = ingest([sys.argv[1]], workers=int(sys.argv[2]), settle=0.05)
print(json.dumps({"writes": S.write_count(), "versions": sorted(r.versions)}))
"""


def _env(store_root: Path, project: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ, MLDS_STORE=str(store_root), PYTHONPATH=str(REPO), MLDS_AUTHOR="tester")
    env.update(extra)
    return env


def _ingest_proc(tree: Path, store_root: Path, project: Path, workers: int = 1, **extra: str):
    return subprocess.run([sys.executable, "-c", INGEST, str(tree), str(workers)], cwd=project,
                          env=_env(store_root, project, **extra), capture_output=True, text=True, timeout=120)


def _tree_with_two_datasets(tree: Path, project: Path) -> dict[str, list[str]]:
    w1 = make_run(tree, "water/a", "h2o_pair")
    w2 = make_run(tree, "water/b", "h2o_tribox")
    lps = make_run(tree, "lps/md", "lips_md")
    (project / ".mlds").mkdir(parents=True, exist_ok=True)
    (project / ".mlds" / "config.toml").write_text(RULES)
    return {"water": source_hashes(w1 / "OUTCAR") + source_hashes(w2 / "vasprun.xml"),
            "lps": source_hashes(lps / "OUTCAR")}


def _check_consistent(store_root: Path, expected: dict[str, list[str]]) -> None:
    """Every visible version is complete: each dataset is absent or holds exactly all of its frames, once."""
    from mlds.store.store import Store
    from mlds.store.versions import fsck

    st = Store.at_path(store_root)
    if not st.exists():
        return
    assert fsck(st)["ok"]
    for name, frames in expected.items():
        for tag in st.list_refs(name):  # every visible version holds all of its batch, never a part
            assert version_hashes(f"{name}@{tag}", st) == frames, (name, tag)
    idx = store_root / "ingest" / "index.json"
    if idx.exists():  # the index's derived claims point at committed versions only
        for name, entry in json.loads(idx.read_text()).get("ingested", {}).items():
            assert entry["head"] in st.list_refs(name).values()


# Kills ingests at chosen store writes.  Imports once, then forks one child per kill point (the driver is a
# fresh single-threaded interpreter, so forking is safe); each child arms the store's test hook
# (MLDS_TEST_KILL_AFTER_N_WRITES, mlds/store/store.py) and is SIGKILLed by it mid-ingest.
KILL_DRIVER = """
import json, os, sys
from mlds.ingest import ingest
from mlds.store import store as S
tree, base, points = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
assert hasattr(S, "_KILL_AFTER") and hasattr(S, "_writes")
out = {}
for k in points:
    pid = os.fork()
    if pid == 0:
        os.environ["MLDS_STORE"] = os.path.join(base, f"s{k}")
        S._KILL_AFTER, S._writes = k, 0
        try:
            ingest([tree], workers=1, settle=0.05)
        finally:
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    out[k] = os.WTERMSIG(status) if os.WIFSIGNALED(status) else -os.WEXITSTATUS(status)
print(json.dumps(out))
"""


def test_sigkill_at_every_stage_then_resume(tree, tmp_path, monkeypatch):
    from mlds.ingest import ingest
    from mlds.store import store as S
    from mlds.store.store import Store

    project = tmp_path / "proj"
    expected = _tree_with_two_datasets(tree, project)
    monkeypatch.chdir(project)  # the [ingest] rules of the project config route lps/** and the rest
    monkeypatch.setenv("MLDS_STORE", str(tmp_path / "probe"))
    before = S.write_count()
    ingest([tree], workers=1, settle=0.05)
    total = S.write_count() - before  # store writes of one complete ingest
    assert total >= 10
    # seven points spread over the whole pass (index, shards, manifests, refs of each dataset, catalog), last write included
    points = sorted({1 + round(i * (total - 2) / 6) for i in range(7)})
    proc = subprocess.run([sys.executable, "-c", KILL_DRIVER, str(tree), str(tmp_path), json.dumps(points)],
                          cwd=project, env=_env(tmp_path / "unused", project), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout) == {str(k): 9 for k in points}  # each child died of SIGKILL
    for k in points:
        root = tmp_path / f"s{k}"
        _check_consistent(root, expected)              # no version with half the frames
        st = Store.at_path(root).init("personal")  # (what local_store() does; a kill may precede the store's creation)
        ingest([tree], store=st, workers=1, settle=0.05)  # the next ingest resumes
        _check_consistent(root, expected)
        assert {n: version_hashes(f"{n}@latest", st) for n in expected} == expected, k
        for name in expected:  # the provenance lists each source once
            paths = [s["path"] for s in sources_of(f"{name}@latest", st)]
            assert len(paths) == len(set(paths)), k
        assert ingest([tree], store=st, workers=1, settle=0.05).versions == {}, k  # and then nothing is new


def test_sigkill_while_converting_in_worker_processes(tree, tmp_path, monkeypatch):
    import signal
    import time

    from mlds.ingest import ingest

    project = tmp_path / "proj"
    expected = _tree_with_two_datasets(tree, project)
    for i in range(3):  # more runs, so the pool is busy when the kill lands
        make_run(tree, f"water/x{i}", "h2o_pair" if i % 2 else "h2o_novirial")
    root = tmp_path / "store"
    proc = subprocess.Popen([sys.executable, "-c", INGEST, str(tree), "2"], cwd=project, env=_env(root, project),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not list((root / "tmp").glob("ingest-*/*.h5")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)   # wait until the workers are writing staging files
    workers = _children(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert workers  # the pool was running
    deadline = time.monotonic() + 15   # orphaned workers notice and exit (no idle processes left behind)
    while any(_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(w) for w in workers)
    from mlds.store.store import Store

    st = Store.at_path(root)
    assert st.read_ref("water", "latest") is None    # killed before the commit: nothing visible
    monkeypatch.chdir(project)
    ingest([tree], store=st, workers=1, settle=0.05)
    assert version_hashes("lps@latest", st) == expected["lps"]
    water = version_hashes("water@latest", st)
    assert len(water) == len(set(water)) and set(expected["water"]) <= set(water)
    assert set(st.list_refs("water")) == {"v1", "latest"}


def _children(pid: int) -> list[int]:
    import psutil

    return [c.pid for c in psutil.Process(pid).children(recursive=True)]


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_two_ingests_of_one_tree_at_once(tree, tmp_path):
    project = tmp_path / "proj"
    expected = _tree_with_two_datasets(tree, project)
    root = tmp_path / "store"
    procs = [subprocess.Popen([sys.executable, "-c", INGEST, str(tree), "1"], cwd=project, env=_env(root, project),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    made = [json.loads(o[0])["versions"] for o in outs]
    # each dataset got exactly one version, by whichever ingest committed first; the other added nothing
    assert sorted(made[0] + made[1]) == sorted(expected)
    _check_consistent(root, expected)
    from mlds.store.store import Store

    st = Store.at_path(root)
    for name in expected:
        assert len(sources_of(f"{name}@latest", st)) == len({s["path"] for s in sources_of(f"{name}@latest", st)})


def test_unreadable_file_is_listed_and_the_rest_ingested(tree, tmp_path):
    """A file we may not read (chmod 000): listed with the reason, the others ingested, retried once readable."""
    ok = make_run(tree, "ok", "h2o_tribox") / "vasprun.xml"
    locked = make_run(tree, "locked", "h2o_novirial") / "vasprun.xml"
    locked.chmod(0)
    cmd = [sys.executable, "-m", "mlds", "ingest", str(tree), "-d", "d", "-j", "1", "--settle", "0", "--json"]
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: cannot make a file unreadable")
        # root reads any file; drop the capabilities that let it, as a normal user would be
        cmd = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", *cmd]
    root = tmp_path / "store"
    proc = subprocess.run(cmd, cwd=tmp_path, env=_env(root, tmp_path), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    outcomes = {o["path"]: o for o in json.loads(proc.stdout)["outcomes"]}
    assert outcomes[str(locked)]["status"] == "failed" and "permission denied" in outcomes[str(locked)]["reason"]
    from mlds.store.store import Store

    st = Store.at_path(root)
    assert version_hashes("d@v1", st) == source_hashes(ok)
    locked.chmod(0o644)  # readable now (its mtime did not change): read on the next pass
    from mlds.ingest import ingest

    r = ingest([tree], "d", store=st, workers=1, settle=0)
    assert r.ok and version_hashes("d@v2", st) == source_hashes(ok) + source_hashes(locked)


def test_conversions_on_a_local_dask_cluster(store, tree):
    pytest.importorskip("distributed", reason="Dask is optional: pip install 'mlds[dask]'")
    from mlds.ingest import ingest

    runs = [make_run(tree, f"r{i}", lay) for i, lay in enumerate(["h2o_pair", "h2o_tribox"])]
    r = ingest([tree], "water", store=store, dask="local", workers=1, settle=0.05)
    assert r.ok
    assert version_hashes("water@v1", store) == source_hashes(runs[0] / "OUTCAR") + source_hashes(runs[1] / "vasprun.xml")
