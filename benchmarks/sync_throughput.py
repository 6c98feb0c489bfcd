"""Sync throughput: mlds push/pull vs plain s3fs put/get, against a moto S3 server on loopback.

    python benchmarks/sync_throughput.py [--size-mb 1024] [--workers 4] [--keep DIR]

Measures, in one run on the same bytes:
  * s3fs ``put_file`` / ``get_file`` of the dataset as one file (the baseline);
  * ``mlds push`` / ``mlds pull`` of the same dataset stored as shards (parallel,
    sha256 verified on both sides, ref written last);
  * an incremental push after appending 1% more frames: bytes sent as a
    fraction of the dataset (target < 3%).
The moto server runs in its own process (``python -m moto.server``) so it does
not share the client's GIL.  Not a test: it prints a table.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

N_ATOMS = 256  # atoms per frame: ~12.5 kB per frame with forces


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


def _frames_source(src: Path, extra: int, dest: Path) -> None:
    """``dest`` = all frames of ``src`` plus ``extra`` new ones (an append)."""
    import mlds
    from mlds.format.frame import Frame

    with mlds.open(src) as ds, mlds.create(dest, ds.metadata) as w:
        w.append(ds.iter_frames())
        rng = np.random.default_rng(424242)
        nums = np.where(np.arange(N_ATOMS) % 3 == 0, 8, 14).astype(np.uint8)
        w.append(Frame(numbers=nums, positions=rng.random((N_ATOMS, 3)) * 12.0, cell=np.eye(3) * 12.0,
                       pbc=[True] * 3, energy=-1280.0, forces=rng.standard_normal((N_ATOMS, 3)), calculation=0)
                 for _ in range(extra))


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mb", type=float, default=1024.0, help="dataset size in MB (default 1024)")
    ap.add_argument("--workers", type=int, default=4, help="parallel transfers for mlds (default 4)")
    ap.add_argument("--keep", type=Path, default=None, help="work in this directory and keep it")
    args = ap.parse_args()

    import s3fs

    import mlds.store as S
    from mlds.store.store import Store

    work = args.keep or Path(tempfile.mkdtemp(prefix="mlds-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    proc, endpoint = start_moto()
    try:
        fs = s3fs.S3FileSystem(endpoint_url=endpoint, key="bench", secret="bench",
                               client_kwargs={"region_name": "us-east-1"}, skip_instance_cache=True,
                               use_listings_cache=False)
        import boto3

        boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="bench", aws_secret_access_key="bench",
                     region_name="us-east-1").create_bucket(Bucket="bench")

        per_frame = N_ATOMS * (3 * 8 * 2 + 1) + 150
        n_frames = max(100, int(args.size_mb * 1e6 / per_frame))
        src = work / "dataset.h5"
        t_gen, _ = timed(lambda: write_frames(src, n_frames))
        size = src.stat().st_size
        print(f"dataset: {n_frames} frames x {N_ATOMS} atoms, {size / 1e6:.0f} MB (written in {t_gen:.1f} s)")

        local = Store.at_path(work / "local").init("personal")
        t_add, r = timed(lambda: S.add(src, "bench", "v1", store=local))
        store_bytes = r["new_bytes"]
        print(f"mlds add: {r['new_shards']} shards, {store_bytes / 1e6:.0f} MB in {t_add:.1f} s")

        # baseline: one file, plain s3fs
        t_put, _ = timed(lambda: fs.put_file(str(src), "bench/baseline/dataset.h5"))
        got = work / "baseline-get.h5"
        t_get, _ = timed(lambda: fs.get_file("bench/baseline/dataset.h5", str(got)))
        assert got.stat().st_size == size
        got.unlink()
        fs.rm("bench/baseline/dataset.h5")

        remote = Store(fs, "bench/store", name="moto").init("personal")
        t_push, st = timed(lambda: S.push("bench", remote, store=local, workers=args.workers))
        fresh = Store.at_path(work / "fresh").init("personal")
        t_pull, pl = timed(lambda: S.pull("bench", remote, store=fresh, workers=args.workers))
        assert pl["sent_bytes"] >= store_bytes

        # incremental: +1% frames
        extra = max(1, n_frames // 100)
        src2 = work / "dataset-plus1.h5"
        _frames_source(src, extra, src2)
        t_add2, r2 = timed(lambda: S.add(src2, "bench", "v2 (+1%)", store=local))
        t_push2, st2 = timed(lambda: S.push("bench", remote, store=local, workers=args.workers))
        frac = st2["sent_bytes"] / store_bytes

        def mbps(nbytes, secs):
            return nbytes / 1e6 / secs if secs > 0 else float("inf")

        print()
        print(f"{'operation':<34}{'MB':>9}{'seconds':>10}{'MB/s':>10}{'vs s3fs':>10}")
        rows = [
            ("s3fs put_file (one file)", size, t_put, None),
            ("mlds push (shards, verified)", st["sent_bytes"], t_push, mbps(size, t_put)),
            ("s3fs get_file (one file)", size, t_get, None),
            ("mlds pull (shards, verified)", pl["sent_bytes"], t_pull, mbps(size, t_get)),
        ]
        for name, nbytes, secs, base in rows:
            rate = mbps(nbytes, secs)
            ratio = f"{rate / base:.2f}x" if base else "1.00x"
            print(f"{name:<34}{nbytes / 1e6:>9.0f}{secs:>10.2f}{rate:>10.1f}{ratio:>10}")
        print()
        print(f"incremental push after +{extra} frames (+1%): {st2['sent_objects']} objects, "
              f"{st2['sent_bytes'] / 1e6:.1f} MB sent = {100 * frac:.2f}% of the dataset "
              f"(target < 3%) in {t_push2:.2f} s; add took {t_add2:.1f} s "
              f"({r2['reused_shards']} shards reused, {r2['new_shards']} new)")
        print(f"push = {st['sent_objects']} objects with {args.workers} workers; moto at {endpoint}; work dir {work}")
    finally:
        proc.terminate()
        proc.wait(10)
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
