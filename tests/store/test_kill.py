"""A push SIGKILLed at 20 points never changes what the remote shows until the ref is written.

Uses the test hook ``MLDS_TEST_KILL_AFTER_N_WRITES=k`` (mlds/store/store.py):
the pushing process kills itself right after its k-th store write.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import mlds.store as S
from mlds.store import manifest as mf
from mlds.store import store as store_mod
from mlds.store.store import Store

from .conftest import add_remote, write_dataset

REPO = Path(__file__).resolve().parents[2]

PUSH = """
import sys
import mlds.store as S
from mlds.store.store import Store
S.push("sio", {remote}, store=Store.at_path(sys.argv[1]), workers=2)
"""


def _run_push(local_root: Path, remote_expr: str, k: int, env_extra: dict | None = None) -> int:
    env = dict(os.environ, MLDS_TEST_KILL_AFTER_N_WRITES=str(k), PYTHONPATH=str(REPO))
    env.update(env_extra or {})
    proc = subprocess.run([sys.executable, "-c", PUSH.format(remote=remote_expr), str(local_root)],
                          env=env, capture_output=True, timeout=60)
    return proc.returncode


def _visible(remote: Store) -> dict:
    return {t: h for t, h in remote.list_refs("sio").items()}


def _assert_consistent(remote: Store) -> None:
    """Every visible ref names a complete, valid version."""
    for t, h in remote.list_refs("sio").items():
        m = S.log(f"sio@{t}", store=remote)[0]
        assert not m.get("missing")
    rep = S.fsck(remote)
    assert rep["ok"], rep["bad"]


def _prepare(tmp_path):
    local = Store.at_path(tmp_path / "local").init("personal", policy={"shard_max_frames": 8})
    template = Store.at_path(tmp_path / "template", name="origin").init("personal")
    S.add(write_dataset(tmp_path / "a.h5", 16), "sio", "v1", store=local)
    S.push("sio", template, store=local)
    r2 = S.add(write_dataset(tmp_path / "b.h5", 56), "sio", "v2", store=local)
    return local, template, r2


def test_push_killed_at_20_points(tmp_path):
    local, template, r2 = _prepare(tmp_path)
    before = _visible(template)
    # count the writes of a complete push
    probe = Store.at_path(tmp_path / "probe", name="origin")
    shutil.copytree(template.root, probe.root)
    n0 = store_mod.write_count()
    full = S.push("sio", probe, store=local)
    total_writes = store_mod.write_count() - n0
    assert total_writes >= 20
    expected_final = _visible(probe)
    reference = (tmp_path / "ref.h5")
    S.checkout("sio@v2", reference, store=local)

    points = sorted({max(1, round(1 + i * (total_writes - 1) / 19)) for i in range(20)})
    assert len(points) == 20
    for k in points:
        rdir = tmp_path / f"r{k}"
        shutil.copytree(template.root, rdir)
        remote = Store.at_path(rdir, name="origin")
        rc = _run_push(Path(local.root), f"Store.at_path({str(rdir)!r}, name='origin')", k)
        assert rc in (-9, 0), rc
        vis = _visible(remote)
        # until a ref is written, the remote shows exactly what it showed before
        assert all(vis.get(t) in (before.get(t), expected_final.get(t)) for t in set(vis) | set(before)), (k, vis)
        if vis == before:
            assert remote.read_ref("sio", "latest") == before["latest"]
        _assert_consistent(remote)
        # the second push sends only what is missing
        present = {h for h, *_ in remote.iter_objects()}
        sizes = {x["sha256"]: x["size"] for x in mf.load(local, r2["manifest"])["shards"]}
        sizes[r2["manifest"]] = len(local.read_object(r2["manifest"]))
        missing = set(sizes) - present
        st = S.push("sio", remote, store=local)
        assert st["sent_objects"] == len(missing), k
        assert st["sent_bytes"] == sum(sizes[x] for x in missing), k
        assert _visible(remote) == expected_final
        # a pull afterwards is byte-identical
        fresh = Store.at_path(tmp_path / f"f{k}").init()
        S.pull("sio", remote, store=fresh)
        out = tmp_path / f"out{k}.h5"
        S.checkout("sio@v2", out, store=fresh)
        assert out.read_bytes() == reference.read_bytes()
        shutil.rmtree(rdir)
        shutil.rmtree(fresh.root)
    assert full["sent_objects"] > 0


def test_push_killed_against_s3(tmp_path, s3_env, s3_bucket, config_home):
    local, template, r2 = _prepare(tmp_path)
    remote = add_remote("s3r", s3_env.url(s3_bucket, "store"))
    S.push("sio", "s3r", "v1", store=local)
    before = _visible(remote)
    assert before == {"v1": before["v1"], "latest": before["v1"]}
    rc = _run_push(Path(local.root), "'s3r'", 6)  # killed mid-shards
    assert rc == -9
    assert _visible(remote) == before
    present = {h for h, *_ in remote.iter_objects()}
    needed = set(mf.shard_hashes(mf.load(local, r2["manifest"]))) | {r2["manifest"]}
    st = S.push("sio", "s3r", store=local)
    assert st["sent_objects"] == len(needed - present) < len(needed)
    assert remote.read_ref("sio", "latest") == r2["manifest"]
    assert S.fsck("s3r")["ok"]
