"""The store/sync engine on a GakuNin RDM remote (``rdm://``), over HTTP against the local
OSF API v2 + WaterButler server (``tests/servers/rdm_server.py``).

Covers the issue's flows end to end, through the library API (``mlds.store.*``) and the
CLI (``mlds.cli.run``): push / pull / promote (personal folder -> group on RDM -> public on
a second, public RDM project) / search / ls; commit rules (ref last, exclusive-create locks,
concurrent pushers); read-only contributors; interrupted pushes (a killed subprocess);
429/5xx storms and dropped connections; ``mlds remote check``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

import mlds
import mlds.store as S
from mlds.errors import AuthError, ConflictError, StoreError
from mlds.store import manifest as mf
from mlds.store import sync
from mlds.store.store import Store
from tests.servers.rdm_server import TOKEN_ADMIN, TOKEN_READER
from tests.store.conftest import add_remote, public_meta, write_dataset

REPO = Path(__file__).resolve().parents[2]
GROUP_URL = "rdm://abcde/osfstorage/mlds"
PUBLIC_URL = "rdm://pubpj/osfstorage/mlds-public"
OBJECT_PUT = re.compile(r"[?&]name=[0-9a-f]{62}(&|$)")  # create of objects/sha256/ab/<62 hex>


# ----------------------------------------------------------------- fixtures & helpers
@pytest.fixture
def local(tmp_path, monkeypatch, srv):
    monkeypatch.setenv("MLDS_STORE", str(tmp_path / "local-store"))
    monkeypatch.setenv("MLDS_AUTHOR", "tester")
    monkeypatch.setenv("MLDS_RDM_TOKEN", TOKEN_ADMIN)
    monkeypatch.setenv("MLDS_RDM_TOKEN_FILE", str(tmp_path / "no-token-file"))
    monkeypatch.delenv("RDM_TOKEN", raising=False)
    monkeypatch.delenv("OSF_TOKEN", raising=False)
    monkeypatch.chdir(tmp_path)
    return Store.at_path(tmp_path / "local-store").init("personal", policy={"shard_max_frames": 25})


def rdm_opts(srv, **extra):
    return {"api_url": srv.api_url, "backoff": 0.001, "max_backoff": 0.01, **extra}


def server_files(srv, guid="abcde") -> dict[str, int]:
    """{materialized path: number of versions} of every file in the project's osfstorage."""
    root = srv.nodes[guid].providers["osfstorage"].root
    return {e.materialized: len(e.versions) for e in root.walk() if e.kind == "file"}


def server_tree(srv, guid="abcde") -> dict[str, tuple]:
    root = srv.nodes[guid].providers["osfstorage"].root
    return {e.materialized: (e.kind, len(e.versions)) for e in root.walk()}


def object_puts(srv, since: int) -> int:
    return sum(1 for m, _, p, _ in srv.requests[since:] if m == "PUT" and OBJECT_PUT.search(p))


def one_line(text: str) -> str:
    return " ".join(text.split())


# ----------------------------------------------------------------- 1. the primitive
def test_racing_file_creates_follow_the_real_commit_path_and_folder_locks_are_exclusive(srv, local):
    """The stand-in answers a create that lost the race at commit with 200 + a new version, as the real
    service does; the client reports it as lost (not "created"), and the store's locks rest on folder
    creation, which the service decides at commit."""
    import fsspec

    def new_fs():
        return fsspec.filesystem("rdm", token=TOKEN_ADMIN, api_url=srv.api_url, backoff=0.001,
                                 skip_instance_cache=True)

    def race(n, fn):
        results: list = [None] * n
        go = threading.Barrier(n)

        def worker(i):
            go.wait()
            try:
                fn(i)
                results[i] = "won"
            except FileExistsError:
                results[i] = "lost"
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return results

    path = "abcde/osfstorage/race/x.lock"
    new_fs().makedirs("abcde/osfstorage/race", exist_ok=True)
    fss = [new_fs() for _ in range(6)]
    for f in fss:
        f.ls("abcde/osfstorage/race")  # warm (empty) listings: the decision must come from the server
    srv.faults.commit_delay = 0.05  # every create passes the name check before the first one commits
    results = race(6, lambda i: fss[i].pipe_file(path, f"owner {i}".encode(), mode="create"))
    srv.faults.commit_delay = 0.0
    assert results.count("won") == 1 and results.count("lost") == 5, results
    # ... and yet the file now holds a loser's bytes, as a later version: a file create cannot be a lock
    fs = new_fs()
    assert fs.info(path)["version"] == 6
    with pytest.raises(FileExistsError):
        with fs.open(path, "xb") as fh:
            fh.write(b"intruder")
    fs.pipe_file(path, b"plain write")  # no mode: a new version, as before
    assert fs.cat(path) == b"plain write" and fs.info(path)["version"] == 7
    # create whose 201 is lost on the way back: the retry's 409 is recognised as our own create
    srv.faults.lose_next_responses(1)
    fs.pipe_file("abcde/osfstorage/race/y.lock", b"mine", mode="create")
    assert fs.cat("abcde/osfstorage/race/y.lock") == b"mine"
    # ... but someone else's file under that name still is a conflict after a lost answer
    srv.faults.lose_next_responses(1)
    with pytest.raises(FileExistsError):
        fs.pipe_file("abcde/osfstorage/race/y.lock", b"other", mode="create")

    # folder creation is decided at commit: exactly one of six racers gets the folder
    srv.faults.clear()  # (the lost answer above was never given: the 409 came first)
    srv.faults.commit_delay = 0.05
    results = race(6, lambda i: fss[i].mkdir("abcde/osfstorage/race/dir.lock", create_parents=False))
    srv.faults.commit_delay = 0.0
    assert results.count("won") == 1 and results.count("lost") == 5, results

    # another writer changes (new version) or replaces (new file id) a file this instance has cached:
    # reads return the new bytes instead of failing on the cached size/hash or the dead id
    a, b = new_fs(), new_fs()
    ref = "abcde/osfstorage/race/ref"
    a.pipe_file(ref, b"1" * 64)
    assert b.cat(ref) == b"1" * 64
    a.pipe_file(ref, b"22")
    assert b.cat(ref) == b"22" and b.info(ref)["size"] == 2
    a.rm_file(ref)
    a.pipe_file(ref, b"333", mode="create")
    assert b.cat(ref) == b"333"
    assert "abcde/osfstorage/race/ref" in b.ls("abcde/osfstorage/race", detail=False)

    # the store's tag lock on rdm: exclusive, released, nothing left behind
    add_remote("group", GROUP_URL, tier="group", options=rdm_opts(srv))
    a, b = S.open_store("group"), S.open_store("group")
    assert a.fs is not b.fs and a.atomic_put  # a WaterButler PUT is all-or-nothing
    with a.lock("sio", "latest"):
        with pytest.raises(ConflictError, match="locked"):
            with b.lock("sio", "latest", wait=0.3):
                pass
    assert not b.fs.find(b.path("locks"))


# ----------------------------------------------------------------- 2. library flows
def test_library_push_pull_promote_search_ls(srv, local, tmp_path, monkeypatch):
    add_remote("mine", str(tmp_path / "personal-folder"), tier="personal")
    add_remote("group", GROUP_URL, tier="group", options=rdm_opts(srv))
    add_remote("pub", PUBLIC_URL, tier="public", options=rdm_opts(srv))

    r1 = S.add(write_dataset(tmp_path / "a.h5", 60, public_meta()), "sio", "v1")
    S.push("sio", "mine")
    first = S.promote("sio@v1", "group")
    assert first["sent_objects"] == 4 and first["tags"] == ["latest", "v1"]  # 3 shards + manifest
    files = server_files(srv)
    objs = [p for p in files if p.startswith("/mlds/objects/")]
    refs = [p for p in files if p.startswith("/mlds/refs/")]
    assert len(objs) == 4 and sorted(refs) == ["/mlds/refs/sio/latest", "/mlds/refs/sio/v1"]
    assert not [p for p in files if "/locks/" in p or "/tmp/" in p]
    # the ref is the last thing written: every object version predates every ref version
    root = srv.nodes["abcde"].providers["osfstorage"].root
    created = {e.materialized: e.versions[0].created for e in root.walk() if e.kind == "file"}
    assert max(created[p] for p in objs) <= min(created[p] for p in refs)

    r2 = S.add(write_dataset(tmp_path / "b.h5", 70, public_meta()), "sio", "v2")
    n = len(srv.requests)
    inc = S.push("sio", "group")
    assert inc["sent_objects"] == 2 and object_puts(srv, n) == 2  # one new shard + manifest
    assert S.push("sio", "group")["sent_objects"] == 0
    assert server_files(srv)["/mlds/refs/sio/latest"] == 2  # the ref file gains a version per commit

    assert S.check_promotion("sio@v2", "pub") == []
    S.promote("sio@v2", "pub")
    ls = {d["dataset"]: d for d in S.ls("group")}
    assert sorted(ls["sio"]["refs"]) == ["latest", "v1", "v2"] and ls["sio"]["refs"]["latest"] == r2["manifest"]
    hits = S.search('elements HAS ALL "Si","O"', remotes=["group", "pub"])
    assert sorted(h["remote"] for h in hits) == ["group", "pub"]
    assert S.search('elements HAS "Fe"', remotes=["group"]) == []
    assert S.fsck("group")["ok"] and S.fsck("pub")["ok"]

    fresh = Store.at_path(tmp_path / "fresh").init()
    S.pull("sio", "group", store=fresh)
    with S.open_ref("sio@v1", store=fresh) as ds, mlds.open(tmp_path / "a.h5") as src:
        np.testing.assert_array_equal(ds.array("positions"), src.array("positions"))
    assert fresh.read_ref("sio", "v2") == r2["manifest"] and fresh.read_ref("sio", "v1") == r1["manifest"]

    # the public project is readable without any token
    monkeypatch.delenv("MLDS_RDM_TOKEN")
    anon = Store.at_path(tmp_path / "anon").init()
    S.pull("sio", "pub", store=anon)
    with S.open_ref("sio@latest", store=anon) as ds:
        assert len(ds) == 70
    with pytest.raises(AuthError, match="'group'"):
        S.ls("group")  # the private group project is not


# ----------------------------------------------------------------- 3. CLI flows
def test_cli_push_pull_promote_ls_search_check(srv, local, tmp_path, monkeypatch, capsys):
    from mlds.cli import run

    def cli(*args, code=0):
        capsys.readouterr()
        rc = run(list(args))
        out, err = capsys.readouterr()
        assert rc == code, (args, out, err)
        return one_line(out), err

    cli("remote", "add", "group", GROUP_URL, "--tier", "group", "-o", f"api_url={srv.api_url}",
        "-o", "backoff=0.001", "-o", "max_backoff=0.01")
    cli("remote", "add", "pub", PUBLIC_URL, "--tier", "public", "-o", f"api_url={srv.api_url}")
    cli("init", "group", "--tier", "group")
    cli("init", "pub", "--tier", "public")
    write_dataset(tmp_path / "a.h5", 40, public_meta())
    cli("add", str(tmp_path / "a.h5"), "-d", "sio", "-m", "first")
    out, _ = cli("push", "sio", "group")
    assert "pushed sio group: 3 object(s)" in out and "tags latest, v1" in out
    out, _ = cli("ls", "group")
    assert "sio" in out and "O Si" in out
    out, _ = cli("search", 'elements HAS ALL "Si","O"', "-r", "group")
    assert "group" in out and "sio" in out
    out, _ = cli("promote", "sio@v1", "--to", "pub")
    assert "promoted sio pub" in out
    out, _ = cli("remote", "check", "group")
    for want in ("reachable: yes", "mlds store: yes", "writable: yes", "user: Ada Admin (uadmn)",
                 "project: DFT training data (abcde)", "permission: admin", "quota: not reported (GakuNin's per-project quota endpoint takes a web login"):
        assert want in out, out
    assert not [p for p in server_files(srv) if ".mlds-check-" in p]  # the write probe is removed

    monkeypatch.setenv("MLDS_STORE", str(tmp_path / "second-machine"))
    out, _ = cli("pull", "sio", "group")
    assert "pulled sio group: 3 object(s)" in out
    with S.open_ref("sio@v1") as ds:
        assert len(ds) == 40

    # a read-only contributor: check says so, pull works, push fails with one line
    monkeypatch.setenv("MLDS_RDM_TOKEN", TOKEN_READER)
    out, _ = cli("remote", "check", "group")
    assert "user: Rea Reader (uread)" in out and "permission: read" in out and "writable: no" in out
    write_dataset(tmp_path / "b.h5", 55, public_meta())
    cli("add", str(tmp_path / "b.h5"), "-d", "sio")
    before = server_tree(srv)
    _, err = cli("push", "sio", "group", code=2)
    assert len(err.strip().splitlines()) == 1 and "remote 'group'" in err and "permission denied" in err
    assert TOKEN_READER not in err and TOKEN_ADMIN not in err
    assert server_tree(srv) == before


# ----------------------------------------------------------------- 4. concurrency
def test_concurrent_push_to_same_tag_is_detected(srv, local, tmp_path, monkeypatch):
    add_remote("group", GROUP_URL, tier="group", options=rdm_opts(srv))
    stores = []
    for i, n in enumerate((40, 45)):
        st = Store.at_path(tmp_path / f"pusher{i}").init("personal", policy={"shard_max_frames": 25})
        S.add(write_dataset(tmp_path / f"d{i}.h5", n, public_meta()), "sio", store=st)
        stores.append(st)
    gate = threading.Barrier(2, timeout=30)
    real_commit = sync.commit_refs

    def gated(*a, **kw):  # both pushers have read the remote refs and sent their objects
        gate.wait()
        return real_commit(*a, **kw)

    monkeypatch.setattr(sync, "commit_refs", gated)
    results: list = [None, None]

    def push(i):
        try:
            results[i] = S.push("sio", "group", store=stores[i])
        except ConflictError as err:
            results[i] = err

    threads = [threading.Thread(target=push, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    won = [i for i, r in enumerate(results) if isinstance(r, dict)]
    lost = [i for i, r in enumerate(results) if isinstance(r, ConflictError)]
    assert len(won) == 1 and len(lost) == 1, results
    assert "pull, then push again" in str(results[lost[0]])
    remote = S.open_store("group")
    assert remote.read_ref("sio", "v1") == results[won[0]]["manifest"] == remote.read_ref("sio", "latest")
    loser_manifest = stores[lost[0]].read_ref("sio", "latest")
    assert remote.has_object(loser_manifest)  # nothing lost: the loser's version is there, unreferenced
    assert not remote.fs.find(remote.path("locks"))
    assert S.fsck("group")["ok"]


# ----------------------------------------------------------------- 5. read-only contributor
def test_read_only_contributor_pulls_but_cannot_push(srv, local, tmp_path, monkeypatch):
    add_remote("group", GROUP_URL, tier="group", options=rdm_opts(srv))
    S.add(write_dataset(tmp_path / "a.h5", 40, public_meta()), "sio")
    S.push("sio", "group")
    monkeypatch.setenv("MLDS_RDM_TOKEN", TOKEN_READER)
    reader = Store.at_path(tmp_path / "reader").init("personal", policy={"shard_max_frames": 25})
    S.pull("sio", "group", store=reader)
    S.add(write_dataset(tmp_path / "b.h5", 80, public_meta()), "sio", store=reader)
    before = server_tree(srv)
    with pytest.raises(AuthError) as info:
        S.push("sio", "group", store=reader)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("remote 'group':") and "permission denied" in msg
    assert TOKEN_READER not in msg
    assert server_tree(srv) == before  # no stray objects, folders or lock files
    # only a tag to move (every object already there): fails at the tag lock, also one line.
    # (StoreError wrapping the 403 today; AuthError once Store._try_create re-raises PermissionError)
    S.tag("sio@v1", "paper", store=reader)
    with pytest.raises((AuthError, StoreError)) as info:
        S.push("sio@paper", "group", store=reader)
    msg = str(info.value)
    assert "\n" not in msg and "'group'" in msg and "permission denied" in msg and TOKEN_READER not in msg
    assert server_tree(srv) == before


# ----------------------------------------------------------------- 6. interrupted push
CHILD = textwrap.dedent("""
    import mlds.store as S
    S.push("sio", "group", workers=1)
    print("finished")
""")


def test_interrupted_push_resumes_and_refs_never_move_early(srv, local, tmp_path):
    add_remote("group", GROUP_URL, tier="group", options=rdm_opts(srv))
    r1 = S.add(write_dataset(tmp_path / "a.h5", 60, public_meta()), "sio")
    S.push("sio", "group")
    r2 = S.add(write_dataset(tmp_path / "b.h5", 110, public_meta()), "sio")  # 2 new shards + manifest
    remote = S.open_store("group")
    refs_before = remote.list_refs("sio")
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               MLDS_TEST_KILL_AFTER_N_WRITES="2")

    def killed_push():
        p = subprocess.run([sys.executable, "-c", CHILD], env=env, cwd=tmp_path, capture_output=True, text=True,
                           timeout=120)
        assert p.returncode == -9 and "finished" not in p.stdout, p.stderr[-2000:]

    # cut 1: after the two new shards (the manifest not sent)
    n = len(srv.requests)
    killed_push()
    assert object_puts(srv, n) == 2
    assert S.open_store("group").list_refs("sio") == refs_before
    # cut 2: resumes (shards skipped), sends the manifest, takes the first tag lock (a folder, then its
    # owner record: the third write) and dies holding it
    env["MLDS_TEST_KILL_AFTER_N_WRITES"] = "3"
    n = len(srv.requests)
    killed_push()
    assert object_puts(srv, n) == 1
    assert [p for p in server_files(srv) if "/locks/" in p] == ["/mlds/locks/sio/latest.lock/owner"]
    assert S.open_store("group").list_refs("sio") == refs_before
    assert [d["refs"] for d in S.ls("group")] == [refs_before]
    # resumed in-process: nothing left to send, the dead pusher's lock is broken, refs written
    n = len(srv.requests)
    res = S.push("sio", "group")
    assert res["sent_objects"] == 0 and object_puts(srv, n) == 0
    remote = S.open_store("group")
    assert remote.list_refs("sio") == {"v1": r1["manifest"], "v2": r2["manifest"], "latest": r2["manifest"]}
    assert not [p for p in server_files(srv) if "/locks/" in p]
    assert S.fsck("group")["ok"]


# ----------------------------------------------------------------- 7. storms
def test_push_and_pull_survive_429_and_5xx_storms_and_drops(srv, local, tmp_path):
    add_remote("group", GROUP_URL, tier="group", options=rdm_opts(srv, retries=12))
    S.add(write_dataset(tmp_path / "a.h5", 90, public_meta()), "sio")
    f = srv.faults
    f.fail_next(6, status=429, retry_after=0, prefix="/v1/")  # WaterButler's limiter
    f.fail_next(3, status=429, retry_after=0.05, prefix="/v2/")  # API v2 throttle, Retry-After honoured
    f.fail_next(4, status=503)
    f.fail_next(3, status=502, methods=("PUT",))
    f.fail_next(2, status=504, methods=("GET",))
    f.drop_next_upload(2, after_bytes=2000)
    res = S.push("sio", "group")
    assert res["sent_objects"] == 5
    assert all(r.remaining == 0 for r in f.rules) and all(d[0] == 0 for d in f.drops)
    assert not [p for p in server_files(srv) if "/locks/" in p]

    f.clear()
    f.fail_next(5, status=429, retry_after=0)
    f.fail_next(4, status=503, methods=("GET",))
    f.fail_next(2, status=502)
    f.drop_next_download(2, after_bytes=5000)
    f.redirect_downloads = True  # presigned-URL style downloads, no Authorization sent there
    fresh = Store.at_path(tmp_path / "fresh").init()
    S.pull("sio", "group", store=fresh)
    assert all(r.remaining == 0 for r in f.rules)
    with S.open_ref("sio@latest", store=fresh) as ds, mlds.open(tmp_path / "a.h5") as src:
        np.testing.assert_array_equal(ds.array("forces"), src.array("forces"))
    assert S.fsck(fresh)["ok"]


# ----------------------------------------------------------------- 8. a 200 MB shard, flat memory
MEASURE = textwrap.dedent("""
    import json, resource, sys
    import mlds.store as S
    from mlds.store.store import Store
    verb = sys.argv[1]
    dest = Store.at_path(sys.argv[2]).init() if len(sys.argv) > 2 else None
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    res = S.push("big", "group") if verb == "push" else S.pull("big", "group", store=dest)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"growth_mb": (peak - base) / 1024, "sent_bytes": res["sent_bytes"]}))
""")


@pytest.mark.slow
def test_200mb_shard_push_pull_flat_memory(srv, local, tmp_path):
    from mlds.format.frame import Frame

    na, n = 1000, 4300  # ~48 kB per frame in HDF5 -> one shard of ~205 MB
    rng = np.random.default_rng(0)
    pos = rng.random((na, 3)) * 20
    src = tmp_path / "big.h5"
    with mlds.create(src, public_meta("big")) as w:
        for start in range(0, n, 250):
            w.append([Frame(numbers=np.full(na, 14), positions=pos + i * 1e-3, cell=np.eye(3) * 20, pbc=[1, 1, 1],
                            energy=-5.0 * na, forces=rng.random((na, 3)), stress=np.zeros((3, 3)))
                      for i in range(start, min(n, start + 250))])
    r = S.add(src, "big", shard_max_frames=n)
    src.unlink()
    sizes = [s["size"] for s in mf.load(local, r["manifest"])["shards"]]
    assert len(sizes) == 1 and sizes[0] >= 200 * 2**20, sizes
    add_remote("group", GROUP_URL, tier="group", options=rdm_opts(srv))
    srv.faults.drop_next_upload(1, after_bytes=50 * 2**20)  # the big body is re-streamed from disk
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = {}
    for verb, extra in (("push", []), ("pull", [str(tmp_path / "puller")])):
        p = subprocess.run([sys.executable, "-c", MEASURE, verb, *extra], env=env, cwd=tmp_path,
                           capture_output=True, text=True, timeout=240)
        assert p.returncode == 0, p.stderr[-2000:]
        out[verb] = __import__("json").loads(p.stdout.strip().splitlines()[-1])
    assert out["push"]["sent_bytes"] >= sizes[0] and out["pull"]["sent_bytes"] >= sizes[0]
    assert srv.faults.drops[0][0] == 0  # the dropped upload was retried
    print(f"peak RSS growth for a {sizes[0] >> 20} MB shard: push {out['push']['growth_mb']:.1f} MB, "
          f"pull {out['pull']['growth_mb']:.1f} MB")
    for verb, res in out.items():
        assert res["growth_mb"] < 64, f"{verb} grew RSS by {res['growth_mb']:.0f} MB for a {sizes[0] >> 20} MB shard"
    puller = Store.at_path(tmp_path / "puller")
    assert puller.read_ref("big", "latest") == r["manifest"] and S.fsck(puller)["ok"]


# ----------------------------------------------------------------- 9. the notebook
NOTEBOOK = REPO / "examples" / "gakunin_rdm.ipynb"
SMALL_OUTCAR = Path(os.environ.get("MLDS_TESTDATA", REPO.parent / "shared" / "testdata")) / \
    "custodian/tests/files/potim/OUTCAR"


def test_notebook_is_valid_and_runs_against_the_local_server(srv, local, tmp_path, monkeypatch, capsys):
    import json

    nb = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    assert nb["nbformat"] == 4 and nb["cells"]
    for c in nb["cells"]:
        assert c["cell_type"] in ("markdown", "code") and isinstance(c["source"], list)
        if c["cell_type"] == "code":
            assert c["outputs"] == [] and c["execution_count"] is None
    try:
        import nbformat
    except ImportError:
        pass
    else:
        nbformat.validate(nbformat.reads(NOTEBOOK.read_text(encoding="utf-8"), as_version=4))
    # a dataset already in the project, pushed by a colleague
    add_remote("seed", GROUP_URL, tier="group", options=rdm_opts(srv))
    S.add(write_dataset(tmp_path / "a.h5", 30, public_meta("sio2")), "sio2")
    S.push("sio2", "seed")
    # this user's machine: empty local store, project id and API URL from the environment
    monkeypatch.setenv("MLDS_STORE", str(tmp_path / "jupyter-store"))
    monkeypatch.setenv("MLDS_RDM_PROJECT", "abcde")
    monkeypatch.setenv("MLDS_RDM_API_URL", srv.api_url)
    monkeypatch.setenv("MLDS_DATASET", "sio2")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    n_new = 0
    if SMALL_OUTCAR.exists():  # a real VASP run to append (3 frames, complete DFT settings)
        (work / "new_runs" / "fes").mkdir(parents=True)
        (work / "new_runs" / "fes" / "OUTCAR").write_bytes(SMALL_OUTCAR.read_bytes())
        n_new = 3
    ns: dict = {"__name__": "__main__"}
    for c in nb["cells"]:
        if c["cell_type"] == "code":
            src = "".join(line for line in c["source"] if not line.lstrip().startswith(("%", "!")))
            exec(compile(src, f"{NOTEBOOK.name}:{c['id']}", "exec"), ns)
    out = one_line(capsys.readouterr().out)
    assert "permission: admin" in out and (work / "sio2-distributions.png").stat().st_size > 0
    latest = S.open_store("group").list_refs("sio2")["latest"]
    if n_new:
        assert ns["report"]["version"] == 2 and "meets the group policy" in out
        with S.open_ref("sio2@latest") as ds:
            assert len(ds) == 30 + n_new
        assert latest == ns["report"]["manifest"]
    else:
        assert ns["report"]["unchanged"]
