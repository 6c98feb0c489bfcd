"""Ingest throughput: `mlds ingest` on a synthetic tree of run folders vs plain `mlds convert`.

    python benchmarks/ingest_throughput.py [--runs 10000] [--workers N] [--link] [--keep] [--json out.json]

The tree is built from the real VASP and Quantum ESPRESSO files in ../shared/testdata
(``MLDS_TESTDATA`` overrides): OUTCAR + vasprun.xml pairs, single OUTCARs, single
vasprun.xml files and pw.x outputs, cycled over ``--runs`` folders.  By default each
folder gets its own copy with every energy shifted by a run-specific amount in the last
printed digits (the same shift in both files of a pair, so they are still recognised as
one run): every run then holds new frames, as in a real tree.  ``--link`` hard-links the
files instead (no disk use; every copy of a template has the same frames, so all but
the first are deduplicated at the commit).

Measured, in one run on the same files:
  * first pass: `mlds.ingest.ingest` on the whole tree (walk, recognise, pair, convert in
    worker processes, one appended version per dataset) — runs/s and MB/s;
  * `mlds convert` of exactly the files ingest read (one per run), into one .h5 — the
    plain converter in one process, as a user would run it by hand;
  * second pass with nothing new (target < 5 s);
  * a pass with 1% new runs: the time should be that of the new part (target: extra time
    over the nothing-new pass <= 3x the first pass's time per run x new runs, + 2 s for
    starting the worker pool);
  * peak memory of the parent and of the largest worker.
The synthetic tree and the store are deleted at the end unless ``--keep``.  The machine
state (``uptime``) is printed: numbers from a loaded machine are not comparable.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
TESTDATA = Path(os.environ.get("MLDS_TESTDATA", REPO.parent / "shared" / "testdata"))

# run folder templates: [(testdata path, name in the folder)]; all end with their code's closing mark
TEMPLATES = [
    [("dpdata/tests/poscars/OUTCAR.h2o.md.10", "OUTCAR"), ("dpdata/tests/poscars/vasprun.h2o.md.10.xml", "vasprun.xml")],
    [("dpdata/tests/poscars/Ti-O-Ti-v6/OUTCAR", "OUTCAR"), ("dpdata/tests/poscars/Ti-O-Ti-v6/vasprun.xml", "vasprun.xml")],
    [("dpdata/tests/poscars/OUTCAR.Ge.vdw", "OUTCAR"), ("dpdata/tests/poscars/vasprun.Ge.vdw.xml", "vasprun.xml")],
    [("custodian/tests/files/npt_common/OUTCAR", "OUTCAR")],
    [("dpdata/tests/poscars/vasprun.h2o.md.tribox.xml", "vasprun.xml")],
    [("q-e/test-suite/pw_md/md.benchmark.out", "pw.out")],
    [("q-e/test-suite/pw_relax/relax2.benchmark.out", "relax.out")],
    [("dpdata/tests/qe.scf/Al.out", "scf.out")],
]
# energies as printed: VASP OUTCAR TOTEN / energy(sigma->0), vasprun <i name="e_..."> energies, pw.x '!' lines
_ENERGY = re.compile(rb"(TOTEN\s+=\s+|energy\(sigma->0\)\s+=\s+|<i name=\"e_[a-z0-9_]+\">\s*|[!]+\s+total energy\s+=\s+)(-?\d+\.\d{8})")


def _shifted(data: bytes, shift: int) -> bytes:
    """Every printed energy + shift units of its last digit (width kept), so each run's frames are new."""
    def repl(m: re.Match) -> bytes:
        text = m.group(2).decode()
        value = int(text.replace(".", "").replace("-", ""))
        value = -value if text.startswith("-") else value
        value += shift
        sign = "-" if value < 0 else ""
        digits = f"{abs(value):09d}"
        new = f"{sign}{digits[:-8]}.{digits[-8:]}"
        return m.group(1) + new.rjust(len(text)).encode()
    return _ENERGY.sub(repl, data)


def build_tree(root: Path, n_runs: int, start: int = 0, link: bool = False) -> tuple[int, int]:
    """``n_runs`` run folders under ``root`` (100 per group folder); returns (files, bytes)."""
    cache = {src: (TESTDATA / src).read_bytes() for t in TEMPLATES for src, _ in t}
    old = time.time() - 86400
    files = nbytes = 0
    for i in range(start, start + n_runs):
        d = root / f"group{i // 100:04d}" / f"run{i:06d}"
        d.mkdir(parents=True, exist_ok=True)
        for src, name in TEMPLATES[i % len(TEMPLATES)]:
            dst = d / name
            if link:
                os.link(TESTDATA / src, dst)
            else:
                dst.write_bytes(_shifted(cache[src], i + 1))
                os.utime(dst, (old, old))
            files += 1
            nbytes += dst.stat().st_size
    return files, nbytes


def _uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "(uptime unavailable)"


def _peak_mb(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024.0  # Linux: kB


def _cpu() -> float:
    """CPU seconds of this process and its finished children (less sensitive to a busy machine than wall time)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _all_frames(store) -> int:
    from mlds.store import manifest as mf

    total = 0
    for name in store.list_datasets():
        h = store.read_ref(name, "latest")
        if h:
            total += int(mf.load(store, h)["summary"]["n_frames"])
    return total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--workers", type=int, default=None, help="ingest worker processes (default: one per core)")
    ap.add_argument("--new-fraction", type=float, default=0.01)
    ap.add_argument("--link", action="store_true", help="hard links instead of shifted copies (duplicate frames)")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    if not TESTDATA.is_dir():
        print(f"real DFT files not found at {TESTDATA} (set MLDS_TESTDATA)")
        return 2

    from mlds.convert import convert
    from mlds.ingest import core as C
    from mlds.ingest import ingest
    from mlds.store.store import Store

    base = Path(args.workdir or REPO / "benchmarks" / "_work")
    base.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="ingest-bench-", dir=base))
    tree, store_root = work / "tree", work / "store"
    out: dict[str, object] = {"runs": args.runs, "link": args.link, "uptime_start": _uptime()}
    print(f"machine: {out['uptime_start']}  (cores: {os.cpu_count()})")
    try:
        t = time.perf_counter()
        n_files, n_bytes = build_tree(tree, args.runs, link=args.link)
        print(f"tree: {args.runs} run folders, {n_files} files, {n_bytes / 1e6:.0f} MB "
              f"({'hard links' if args.link else 'copies'}; built in {time.perf_counter() - t:.1f} s)")
        store = Store.at_path(store_root).init("personal")

        # -- first pass
        t, c = time.perf_counter(), _cpu()
        r1 = ingest([tree], "bench", store=store, workers=args.workers, settle=0.0)
        t_first, c_first = time.perf_counter() - t, _cpu() - c
        # workers of the first pass, forked from a small parent: their peak is their own memory (later
        # workers fork from a parent that has grown, and RSS counts the pages they share with it)
        peak_worker = _peak_mb(resource.RUSAGE_CHILDREN)
        read = [o for o in r1.outcomes if o.status in (C.ADDED, C.NO_NEW_FRAMES)]
        read_bytes = sum(os.path.getsize(o.path) for o in read)
        frames_read = sum(o.frames for o in read)
        assert len(read) == args.runs and not r1.failed, (len(read), r1.failed[:3])
        stored = _all_frames(store)
        print(f"first pass: {t_first:.1f} s  {args.runs / t_first:.1f} runs/s  {read_bytes / 1e6 / t_first:.1f} MB/s "
              f"of sources read ({n_bytes / 1e6 / t_first:.1f} MB/s of the tree); {frames_read} frames read, "
              f"{stored} stored in {len(r1.versions)} dataset(s): {', '.join(sorted(r1.versions))}; CPU {c_first:.1f} s")

        # -- plain convert of the same source files
        conv_out = work / "convert.h5"
        t, c = time.perf_counter(), _cpu()
        res = convert([o.path for o in sorted(read, key=lambda o: o.path)], conv_out)
        t_conv, c_conv = time.perf_counter() - t, _cpu() - c
        print(f"mlds convert of the same {len(read)} files (1 process): {t_conv:.1f} s  {len(read) / t_conv:.1f} runs/s  "
              f"{read_bytes / 1e6 / t_conv:.1f} MB/s; {res.n_frames} frames; CPU {c_conv:.1f} s")
        assert res.n_frames == frames_read, (res.n_frames, frames_read)
        if not args.link:
            assert stored == frames_read, (stored, frames_read)  # every frame of every run stored once

        # -- second pass: nothing new
        t = time.perf_counter()
        r2 = ingest([tree], "bench", store=store, workers=args.workers, settle=0.0)
        t_second = time.perf_counter() - t
        assert r2.versions == {} and r2.count(C.UP_TO_DATE) == args.runs
        print(f"second pass (nothing new): {t_second:.2f} s")

        # -- 1% new runs
        n_new = max(1, int(args.runs * args.new_fraction))
        build_tree(tree, n_new, start=args.runs, link=args.link)
        t = time.perf_counter()
        r3 = ingest([tree], "bench", store=store, workers=args.workers, settle=0.0)
        t_new = time.perf_counter() - t
        new_read = sum(1 for o in r3.outcomes if o.status in (C.ADDED, C.NO_NEW_FRAMES))
        assert new_read == n_new, (new_read, n_new)
        per_run_first = t_first / args.runs
        budget = t_second + 3 * per_run_first * n_new + 2.0
        print(f"{n_new} new runs ({args.new_fraction:.0%}): {t_new:.2f} s  (nothing-new pass {t_second:.2f} s + "
              f"{(t_new - t_second) / n_new * 1000:.1f} ms per new run; first pass {per_run_first * 1000:.1f} ms per run)")

        peak_parent = _peak_mb(resource.RUSAGE_SELF)
        print(f"peak memory: parent {peak_parent:.0f} MB, largest worker of the first pass {peak_worker:.0f} MB")

        targets = {
            "second pass < 5 s": t_second < 5.0,
            f"1% new within {budget:.1f} s (proportional to the new part)": t_new <= budget,
        }
        ratio = t_conv / t_first
        print(f"ingest first pass vs mlds convert: {ratio:.2f}x the speed "
              f"(ingest: {args.workers or os.cpu_count()} worker processes + walk/pair/commit; convert: 1 process); "
              f"CPU time {c_first / c_conv:.2f}x convert's (pairing OUTCAR/vasprun.xml, hashing, staging, dedupe, "
              f"versioning)")
        for name, ok in targets.items():
            print(f"{'PASS' if ok else 'FAIL'}  {name}")
        out.update({"files": n_files, "bytes": n_bytes, "read_bytes": read_bytes, "frames": frames_read,
                    "stored_frames": stored, "first_s": t_first, "convert_s": t_conv, "first_cpu_s": c_first, "convert_cpu_s": c_conv, "second_s": t_second,
                    "new_runs": n_new, "new_s": t_new, "peak_parent_mb": peak_parent, "peak_worker_mb": peak_worker,
                    "targets": targets, "uptime_end": _uptime()})
        print(f"machine: {_uptime()}")
        if args.json:
            args.json.write_text(json.dumps(out, indent=1))
        return 0 if all(targets.values()) else 1
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work}")


if __name__ == "__main__":
    sys.exit(main())
