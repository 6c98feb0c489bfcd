"""Sync throughput: mlds push/pull of one shard vs plain s3fs put/get of the same bytes; RDM request counts.

    python benchmarks/sync_throughput.py [--sizes 50,1024] [--repeats N] [--workers 4] [--keep DIR]

Goals (issue 12), each printed with PASS/FAIL from this one run:

* push of one shard >= 0.8x the speed of s3fs ``put_file`` of the same file, at every size;
* pull of one shard >= 0.8x the speed of s3fs ``get_file`` of the same object, at every size;
* an incremental push after appending 1% more frames sends < 3% of the bytes.

The baseline, as it is: ``S3FileSystem.put_file`` sends a file below 100 MiB as one
``PutObject``; above, a multipart upload of 50 MiB parts, reading 10 parts into memory,
uploading those 10 concurrently, waiting for all, then the next 10.  ``get_file`` (s3fs
2026.9) of an object up to 50 MiB is one streaming ``GetObject`` read in 64 kB chunks; of a
larger one, concurrent ranged GETs of 50 MiB (10 at a time) -- which moto serves slowly, as it
reads the whole object for every range.  Neither hashes nor fsyncs anything.  mlds does what a
store needs on top: it verifies every byte against its sha256 in the same pass it copies it
(push: a shard whose local copy was verified and has not changed since is sent as it is, one
PUT below 100 MiB, else 50 MiB parts with 10 in flight, read while earlier parts go up; any
other is hashed while its parts are read; pull: one streaming GET read 4 MiB blocks ahead of
the hashing and writing into a staging file), fsyncs the pulled object before renaming it into
the store, and commits (locks, compare-and-swap of two refs, manifest, catalog).  Both
sides talk to the same moto S3 server, which runs in its own process so it does not share
the benchmark's GIL; both read the same file, warm in the page cache.  Each figure is the
median of ``--repeats`` runs, mlds and s3fs alternating.  Timings on a shared machine move
with its load: the load average is printed before and after.

The GakuNin RDM part pushes and pulls a 2-shard dataset to the local OSF/WaterButler
stand-in (tests/servers/rdm_server.py) and counts requests by kind (each one costs an auth
round trip on the real service).  Not a test: it prints tables.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

N_ATOMS = 256  # atoms per frame: ~12.5 kB per frame with forces
GOAL = 0.8


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_moto() -> tuple[subprocess.Popen, str]:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    import httpx

    for _ in range(200):
        try:
            httpx.get(url + "/moto-api/", timeout=0.5)
            return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("moto server did not start")


def write_frames(path: Path, n_frames: int, seed: int = 0, start: int = 0) -> None:
    import mlds
    from mlds.format.frame import Frame

    meta = {"name": "bench", "calculations": [{"code": "VASP", "functional": "PBE"}]}
    with mlds.create(path, meta) as w:
        batch = 2000
        for b0 in range(0, n_frames, batch):
            b1 = min(n_frames, b0 + batch)
            rng = np.random.default_rng(seed * 1_000_003 + start + b0)
            k = b1 - b0
            pos = rng.random((k, N_ATOMS, 3)) * 12.0
            frc = rng.standard_normal((k, N_ATOMS, 3))
            en = -5.0 * N_ATOMS + rng.random(k)
            nums = np.where(np.arange(N_ATOMS) % 3 == 0, 8, 14).astype(np.uint8)
            cell = np.eye(3) * 12.0
            w.append(Frame(numbers=nums, positions=pos[j], cell=cell, pbc=[True, True, True], energy=en[j],
                           forces=frc[j], calculation=0) for j in range(k))


def load() -> str:
    try:
        return "load average " + " ".join(Path("/proc/loadavg").read_text().split()[:3]) + f" on {os.cpu_count()} cores"
    except OSError:
        return "load unknown"


def timed(fn, what: str = ""):
    """Seconds ``fn()`` took.  moto under a heavy load sometimes answers 500 on a large multipart
    completion (its part buffers get closed: "seek of closed file" in its log); such a run is
    repeated (at most twice, for either side) and said so."""
    for attempt in range(3):
        t = time.perf_counter()
        try:
            out = fn()
        except Exception as err:  # noqa: BLE001 - reported, then the run is repeated
            if attempt == 2:
                raise
            print(f"  ({what or 'run'} failed: {str(err)[:120]}; repeated)")
            continue
        return time.perf_counter() - t, out


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


# ----------------------------------------------------------------- S3: one shard
def s3_case(fs, endpoint: str, work: Path, size_mb: float, repeats: int, workers: int) -> list[tuple]:
    import mlds.store as S
    from mlds.store.store import Store

    per_frame = N_ATOMS * (3 * 8 * 2 + 1) + 150
    n_frames = max(100, int(size_mb * 1e6 / per_frame))
    src = work / f"dataset-{size_mb:g}.h5"
    write_frames(src, n_frames)
    local = Store.at_path(work / f"local-{size_mb:g}").init(
        "personal", policy={"shard_max_bytes": 1 << 40, "shard_max_frames": 10 ** 9})
    r = S.add(src, "bench", "v1", store=local)
    assert r["new_shards"] == 1
    shard = mf_objects(local, r["manifest"])[0]
    shard_path = local.object_path(shard[0])
    size = shard[1]
    print(f"\n{size / 1e6:.0f} MB: one shard of {n_frames} frames x {N_ATOMS} atoms ({load()})")

    t_put, t_get, t_push, t_pull = [], [], [], []
    for k in range(repeats):
        key = f"bench/baseline-{size_mb:g}-{k}/shard.h5"
        t_put.append(timed(lambda: fs.put_file(shard_path, key), "s3fs put_file")[0])
        remote = mlds_remote(endpoint, f"s3://bench/store-{size_mb:g}-{k}")
        t_push.append(timed(lambda: S.push("bench", remote, store=local, workers=workers), "mlds push")[0])
        got = work / "baseline-get.h5"
        t_get.append(timed(lambda: fs.get_file(key, str(got)), "s3fs get_file")[0])
        assert got.stat().st_size == size
        got.unlink()
        fresh = Store.at_path(work / f"fresh-{size_mb:g}-{k}").init("personal")
        t_pull.append(timed(lambda: S.pull("bench", remote, store=fresh, workers=workers), "mlds pull")[0])
        shutil.rmtree(fresh.root)
        fs.rm(key)
        fs.rm(f"bench/store-{size_mb:g}-{k}", recursive=True)  # moto keeps objects in memory
    rows = []
    for op, base, mine in (("push", t_put, t_push), ("pull", t_get, t_pull)):
        b, m = statistics.median(base), statistics.median(mine)
        rows.append((f"{op} {size / 1e6:.0f} MB", size, b, m, b / m))
    return rows


def mlds_remote(endpoint: str, url: str):
    """A store on S3 the way users get one: a configured remote (``mlds remote add``)."""
    import mlds.store as S
    from mlds.remotes.config import add_remote

    name = "s3-" + url.rsplit("/", 1)[-1].replace(".", "_")
    add_remote(name, url, options={"endpoint_url": endpoint}, replace=True)
    return S.init(name)


def mf_objects(store, h):
    from mlds.store import manifest as mf

    return mf.objects(mf.load(store, h))


def incremental(fs, endpoint: str, work: Path, workers: int) -> tuple[float, str]:
    import mlds.store as S
    from mlds.store.store import Store

    src = work / "inc.h5"
    write_frames(src, 2000)
    local = Store.at_path(work / "local-inc").init("personal", policy={"shard_max_frames": 200})
    r1 = S.add(src, "inc", store=local)
    remote = mlds_remote(endpoint, "s3://bench/store-inc")
    S.push("inc", remote, store=local, workers=workers)
    src2 = work / "inc2.h5"
    write_frames(src2, 20, seed=7)
    S.add(src2, "inc", store=local, append=True)
    st = S.push("inc", remote, store=local, workers=workers)
    frac = st["sent_bytes"] / r1["new_bytes"]
    return frac, f"incremental push after +1% frames (append): {st['sent_objects']} objects, " \
                 f"{st['sent_bytes'] / 1e6:.2f} MB = {100 * frac:.2f}% of the dataset"


# ----------------------------------------------------------------- RDM: request counts
def rdm_requests(work: Path) -> list[tuple[str, int, dict]]:
    import mlds.store as S
    from mlds.store.store import Store
    from tests.servers.rdm_server import TOKEN_ADMIN, RDMServer

    os.environ["MLDS_RDM_TOKEN"] = TOKEN_ADMIN
    os.environ["MLDS_RDM_TOKEN_FILE"] = str(work / "no-token-file")
    os.environ["MLDS_CONFIG_HOME"] = str(work / "config")
    out = []
    with RDMServer.default() as srv:
        from mlds.remotes.config import add_remote

        add_remote("rdm", "rdm://abcde/osfstorage/bench", options={"api_url": srv.api_url})
        S.init("rdm")
        local = Store.at_path(work / "local-rdm").init("personal", policy={"shard_max_frames": 100})
        src = work / "rdm.h5"
        write_frames(src, 200)
        S.add(src, "rdm", store=local)  # 2 shards
        for what, fn in (("push of 2 shards (first)", lambda: S.push("rdm", "rdm", store=local)),
                         ("push again (nothing to send)", lambda: S.push("rdm", "rdm", store=local)),
                         ("pull of 2 shards", lambda: S.pull("rdm", "rdm", store=Store.at_path(work / "rdm-pull").init()))):
            n = len(srv.requests)
            fn()
            reqs = srv.requests[n:]
            kinds = collections.Counter()
            for m, _, p, _ in reqs:
                if p.startswith("/v2/"):
                    kinds["API v2"] += 1
                elif m == "GET" and "?" not in p and p.endswith("/"):
                    kinds["listing"] += 1
                else:
                    kinds[m] += 1
            out.append((what, len(reqs), dict(kinds)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="50,1024", help="shard sizes in MB, comma-separated (default 50,1024)")
    ap.add_argument("--repeats", type=int, default=None,
                    help="runs per figure, median reported (default 5 up to 100 MB, 3 above)")
    ap.add_argument("--workers", type=int, default=4, help="parallel transfers for mlds (default 4)")
    ap.add_argument("--keep", type=Path, default=None, help="work in this directory and keep it")
    ap.add_argument("--no-rdm", action="store_true", help="skip the GakuNin RDM request counts")
    args = ap.parse_args()

    import s3fs

    work = args.keep or Path(tempfile.mkdtemp(prefix="mlds-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ["AWS_ACCESS_KEY_ID"] = "bench"
    os.environ["AWS_SECRET_ACCESS_KEY"] = "bench"
    os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
    os.environ["MLDS_CONFIG_HOME"] = str(work / "config")
    print(f"sync_throughput: {load()} at start")
    proc, endpoint = start_moto()
    goals: list[tuple[str, bool]] = []
    try:
        fs = s3fs.S3FileSystem(endpoint_url=endpoint, key="bench", secret="bench",
                               client_kwargs={"region_name": "us-east-1"}, skip_instance_cache=True,
                               use_listings_cache=False)
        import boto3

        boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="bench", aws_secret_access_key="bench",
                     region_name="us-east-1").create_bucket(Bucket="bench")
        rows = []
        for size in [float(x) for x in args.sizes.split(",") if x.strip()]:
            rows += s3_case(fs, endpoint, work, size, args.repeats or (5 if size <= 100 else 3), args.workers)
        print(f"\n{'one shard, S3 (moto)':<22}{'s3fs s':>10}{'mlds s':>10}{'s3fs MB/s':>11}{'mlds MB/s':>11}"
              f"{'ratio':>8}  goal >= {GOAL}x")
        for name, size, b, m, ratio in rows:
            ok = ratio >= GOAL
            goals.append((f"{name}: mlds {ratio:.2f}x s3fs", ok))
            print(f"{name:<22}{b:>10.2f}{m:>10.2f}{size / 1e6 / b:>11.1f}{size / 1e6 / m:>11.1f}{ratio:>7.2f}x  "
                  f"{verdict(ok)}")
        frac, line = incremental(fs, endpoint, work, args.workers)
        goals.append((f"{line} (goal < 3%)", frac < 0.03))
    finally:
        proc.terminate()
        proc.wait(10)
    if not args.no_rdm:
        print("\nGakuNin RDM stand-in, requests per operation:")
        for what, n, kinds in rdm_requests(work):
            print(f"  {what:<32}{n:>5} requests  " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())))
    print("\ngoals:")
    for text, ok in goals:
        print(f"  {verdict(ok)}  {text}")
    print(f"\n{load()} at end; moto {endpoint}; work dir {work}")
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
