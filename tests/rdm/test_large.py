"""200 MB upload + download through rdm:// with flat client memory (measured in a subprocess)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests.servers.rdm_server import TOKEN_ADMIN, RDMServer

SIZE = 200 * 2**20

CHILD = textwrap.dedent("""
    import json, resource, sys
    import fsspec
    api_url, token, src, dst = sys.argv[1:5]
    fs = fsspec.filesystem("rdm", token=token, api_url=api_url, backoff=0.001)
    fs.ls("rdm://abcde/osfstorage")
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    fs.put_file(src, "rdm://abcde/osfstorage/big/data.bin")
    after_up = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    fs.get_file("rdm://abcde/osfstorage/big/data.bin", dst)
    after_down = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    info = fs.info("rdm://abcde/osfstorage/big/data.bin")
    print(json.dumps({"base_kb": base, "up_kb": after_up, "down_kb": after_down,
                      "size": info["size"], "sha256": info["sha256"]}))
""")


@pytest.mark.slow
def test_200mb_roundtrip_flat_memory(tmp_path):
    src = tmp_path / "src.bin"
    h = hashlib.sha256()
    block = os.urandom(2**20)
    with open(src, "wb") as f:
        for i in range(SIZE // 2**20):
            b = i.to_bytes(4, "little") + block[4:]
            h.update(b)
            f.write(b)
    want = h.hexdigest()
    dst = tmp_path / "dst.bin"
    with RDMServer.default() as srv:
        srv.faults.drop_next_upload(1, after_bytes=30 * 2**20)  # the big body is re-streamed from disk
        srv.faults.redirect_downloads = True  # and the download goes through a token-less redirect
        env = dict(os.environ, PYTHONPATH=os.getcwd() + os.pathsep + os.environ.get("PYTHONPATH", ""))
        out = subprocess.run([sys.executable, "-c", CHILD, srv.api_url, TOKEN_ADMIN, str(src), str(dst)],
                             capture_output=True, text=True, timeout=240, env=env)
        assert out.returncode == 0, out.stderr[-2000:]
        res = json.loads(out.stdout.strip().splitlines()[-1])
        assert srv.faults.drops[0][0] == 0
        assert any(r[2].startswith("/_blob/") for r in srv.requests)
    assert res["size"] == SIZE and res["sha256"] == want
    growth_mb = (max(res["up_kb"], res["down_kb"]) - res["base_kb"]) / 1024
    print(f"client peak RSS growth: {growth_mb:.1f} MB")
    assert growth_mb < 64, f"client peak RSS grew {growth_mb:.1f} MB for a 200 MB file"
    h2 = hashlib.sha256()
    with open(dst, "rb") as f:
        for b in iter(lambda: f.read(2**20), b""):
            h2.update(b)
    assert h2.hexdigest() == want
