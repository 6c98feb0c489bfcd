#!/usr/bin/env python
"""Conversion throughput: ``mlds convert`` as a process against ASE and dpdata, on VASP files.

Builds large MD files from real runs in the shared test data (header once, ionic steps repeated with
VASP's counters renumbered, trailer once, so each file is one long valid run): OUTCARs at every
``--sizes`` (default 60 and 400 MB) and vasprun.xml files at every ``--xml-sizes`` (default 60 MB).
Then every tool runs as its own process, round-robin, ``--repeats`` times each (the same number for
every tool), timed from the outside: wall clock from start to exit (interpreter start-up, imports,
reading, writing), CPU time and peak RSS from ``os.wait4``:

  mlds          ``python -m mlds convert FILE -o out.h5 -q``                (reads and writes a dataset)
  mlds-before   the same, with the source tree of ``--baseline`` (the converter before issue 12)
  ase           ``ase.io.read(FILE, ":", format="vasp-out" | "vasp-xml")``  (reads only)
  dpdata        ``dpdata.LabeledSystem(FILE, fmt="vasp/outcar" | "vasp/xml")``  (reads only)

and, timed inside the process (the call only), ``mlds-reader`` (iterating the mlds reader) and
``linecount`` (``for line in open(FILE, "rb")``: the Python I/O limit a line-based reader has).

    python benchmarks/convert_throughput.py                        # 60 + 400 MB OUTCARs, 60 MB vasprun
    python benchmarks/convert_throughput.py --sizes 20 --xml-sizes 20 --repeats 1   # quick
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUTCAR_SOURCES = {
    "npt": "custodian/tests/files/npt_common/OUTCAR",  # 84 atoms, NpT MD, 10 steps
    "h2o": "dpdata/tests/poscars/OUTCAR.h2o.md.10",  # 6 atoms, NVT MD, 10 steps
}
XML_SOURCE = "dpdata/tests/poscars/vasprun.h2o.md.10.xml"  # 6 atoms, 10 <calculation>
TOOLS = ("mlds", "mlds-before", "ase", "dpdata", "mlds-reader", "linecount")
PROCESS_TOOLS = ("mlds", "mlds-before", "ase", "dpdata")
# the commit before the issue-12 converter work: "its current speed" of the vasprun goal
BASELINE = "8fe68a0"
MB = 1e6

# ----------------------------------------------------------------------------- data

_STEP_START = re.compile(r"^-+ Iteration\s+\d+\(\s*1\)", re.M)
_ITER_NUM = re.compile(r"(?<=Iteration)(\s*\d+)(?=\()")
# the labelled energy of an OUTCAR step / a vasprun <calculation> (the last e_fr_energy of the block)
_TOTEN = re.compile(r"(?<=free  energy   TOTEN  =)(\s*-?\d+\.\d+)")
_E_FR = re.compile(r'(?<=<i name="e_fr_energy">)(\s*-?\d+\.\d+)(?=[^<]*</i>\s*(?:<i [^>]*>[^<]*</i>\s*)*</energy>\s*'
                   r'(?:<time [^>]*>[^<]*</time>\s*)*(?:<dos>|<eigenvalues>|</calculation>))')


def _unique(pattern: re.Pattern, text: str, n: int) -> str:
    """``text`` with the energy ``pattern`` finds lowered by n * 1e-8 eV (same width): every repeated
    step becomes a distinct frame (mlds drops exact duplicates by default; the peers keep them)."""
    def shift(m: re.Match) -> str:
        old = m.group(1)
        decimals = len(old) - old.index(".") - 1
        return f"{float(old) - n * 1e-8:.{decimals}f}".rjust(len(old))
    return pattern.sub(shift, text)


def split_outcar(text: str) -> tuple[str, list[str], str]:
    """(header, [one text per ionic step], trailer) of a multi-step OUTCAR."""
    starts = [m.start() for m in _STEP_START.finditer(text)]
    if len(starts) < 2:
        raise SystemExit("source OUTCAR has fewer than 2 ionic steps")
    # the last step ends after its "LOOP+" timing line; what follows is the end-of-job summary
    loop = text.rfind("LOOP+")
    end = text.index("\n", loop) + 1
    bounds = starts + [end]
    steps = [text[a:b] for a, b in zip(bounds, bounds[1:])]
    return text[: starts[0]], steps, text[end:]


def make_outcar(src: Path, dst: Path, size: int) -> int:
    """Repeat the ionic steps of ``src`` until ``dst`` is >= ``size`` bytes, each copy's energy made
    distinct; returns the step count."""
    header, steps, trailer = split_outcar(src.read_text())
    pieces = [_ITER_NUM.split(s) for s in steps]  # each step split around its "Iteration N(" counter
    n = written = 0
    tmp = dst.with_suffix(".part")
    with open(tmp, "w") as fh:
        fh.write(header)
        written += len(header)
        while written < size:
            for parts in pieces:
                n += 1
                num = f"{n:5d}"
                txt = _unique(_TOTEN, "".join(num if i % 2 else p for i, p in enumerate(parts)), n)
                fh.write(txt)
                written += len(txt)
                if written >= size:
                    break
        fh.write(trailer)
    tmp.replace(dst)
    return n


def make_vasprun(src: Path, dst: Path, size: int, dos: str = "last") -> int:
    """Repeat the ``<calculation>`` blocks of ``src`` until ``dst`` is >= ``size`` bytes, each copy's
    energy made distinct.

    ``dos="last"`` (default): as VASP writes an MD run, the block carrying the eigenvalues and DOS
    (the source's last) comes once, at the end, and the others repeat before it.  ``"every"``:
    every copy of the ten blocks keeps it (the layout of the runs before 2026-11-29, where such
    tails were 40 % of the bytes).
    """
    text = src.read_text()
    first = text.rindex("\n", 0, text.index("<calculation>")) + 1
    last = text.index("\n", text.rindex("</calculation>")) + 1
    blocks = [b + "</calculation>\n" for b in text[first:last].split("</calculation>\n") if b.strip()]
    header, trailer = text[:first], text[last:]
    tail: list[str] = []
    if dos == "last":
        tail = [b for b in blocks if "<dos>" in b or "<eigenvalues>" in b]
        blocks = [b for b in blocks if b not in tail]
        if not blocks:
            raise SystemExit(f"{src}: no <calculation> block without a DOS to repeat")
    n = written = 0
    tmp = dst.with_suffix(".part")
    with open(tmp, "w") as fh:
        fh.write(header)
        written += len(header) + sum(map(len, tail))
        while written < size:
            for b in blocks:
                n += 1
                b = _unique(_E_FR, b, n)
                fh.write(b)
                written += len(b)
                if written >= size:
                    break
        for b in tail:
            n += 1
            fh.write(_unique(_E_FR, b, n))
        fh.write(trailer)
    tmp.replace(dst)
    return n


# ----------------------------------------------------------------------------- children

_PEER = """
import json, sys
path, kind = sys.argv[1], sys.argv[2]
if {tool!r} == "ase":
    import ase.io
    images = ase.io.read(path, ":", format="vasp-out" if kind == "outcar" else "vasp-xml")
    e = [a.get_potential_energy(force_consistent=True) for a in images]
else:
    import dpdata
    s = dpdata.LabeledSystem(path, fmt="vasp/outcar" if kind == "outcar" else "vasp/xml")
    e = [float(x) for x in s["energies"]]
print(json.dumps({{"frames": len(e), "e_first": e[0] if e else None, "e_last": e[-1] if e else None,
                  "e_sum": sum(e)}}))
"""

_INNER = """
import json, sys, time
path = sys.argv[1]
if {tool!r} == "linecount":
    t0 = time.perf_counter()
    n = 0
    with open(path, "rb") as fh:
        for _ in fh:
            n += 1
    print(json.dumps({{"seconds": time.perf_counter() - t0, "lines": n}}))
else:
    from mlds.io.registry import open_reader
    t0 = time.perf_counter()
    e = [fr.energy for fr in open_reader(path)]
    print(json.dumps({{"seconds": time.perf_counter() - t0, "frames": len(e)}}))
"""


def _env(pythonpath: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    # bytecode caching as in a normal install (site-packages of the peers have their .pyc files)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return env


def command(tool: str, kind: str, path: Path, out: Path, baseline: Path | None) -> tuple[list[str], dict]:
    if tool in ("mlds", "mlds-before"):
        return ([sys.executable, "-m", "mlds", "convert", str(path), "-o", str(out), "-q"],
                _env(baseline if tool == "mlds-before" else ROOT))
    if tool in ("ase", "dpdata"):
        return [sys.executable, "-c", _PEER.format(tool=tool), str(path), kind], _env()
    return [sys.executable, "-c", _INNER.format(tool=tool), str(path)], _env(ROOT)


def run_process(cmd: list[str], env: dict, timeout: float) -> dict:
    """Run one process; wall time from start to exit, CPU time and peak RSS of that process."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=tempfile.gettempdir())
        timer = threading.Timer(timeout, p.kill)
        timer.start()
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        timer.cancel()
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    if p.returncode != 0:
        if p.returncode == -9 and wall >= timeout:
            return {"status": "timeout"}
        tail = (stderr or stdout).strip().splitlines()[-2:]
        return {"status": "error: " + " | ".join(tail)}
    res = {"status": "ok", "wall": wall, "cpu": ru.ru_utime + ru.ru_stime, "rss": ru.ru_maxrss * 1024}
    line = stdout.strip().splitlines()[-1] if stdout.strip() else ""
    if line.startswith("{"):
        res.update(json.loads(line))
    return res


def dataset_summary(path: Path) -> dict:
    import numpy as np

    import mlds

    with mlds.open(path) as ds:
        e = np.asarray(ds.array("energy"), dtype=float)
    return {"frames": len(e), "e_first": float(e[0]) if len(e) else None,
            "e_last": float(e[-1]) if len(e) else None, "e_sum": float(e.sum())}


def _first_write_bytes() -> int:
    from mlds.format.writer import FIRST_WRITE_BYTES

    return FIRST_WRITE_BYTES


STARTUP = {  # name -> argv after the interpreter; a 10-step real OUTCAR for the convert
    "python -c pass": ["-c", "pass"],
    "import numpy, h5py": ["-c", "import numpy, h5py"],
    "mlds --help": ["-m", "mlds", "--help"],
    "mlds convert (10 steps)": ["-m", "mlds", "convert", "{src}", "-o", "{out}", "-q"],
    "ase.io.read (10 steps)": ["-c", "import ase.io; ase.io.read('{src}', ':', format='vasp-out')"],
    "dpdata (10 steps)": ["-c", "import dpdata; dpdata.LabeledSystem('{src}', fmt='vasp/outcar')"],
}


def startup(src: Path, workdir: Path, runs: int, timeout: float) -> list[list[str]]:
    """Start-up: each command ``runs`` times round-robin; rows of median wall and CPU time."""
    got: dict[str, list[dict]] = {}
    out = workdir / "startup.h5"
    for _ in range(runs):
        for name, args in STARTUP.items():
            out.unlink(missing_ok=True)
            cmd = [sys.executable] + [a.format(src=src, out=out) for a in args]
            got.setdefault(name, []).append(run_process(cmd, _env(ROOT), timeout))
    out.unlink(missing_ok=True)
    rows = []
    for name, rs in got.items():
        ok = [r for r in rs if r["status"] == "ok"]
        if len(ok) < len(rs):
            rows.append([name, next(r["status"] for r in rs if r["status"] != "ok"), ""])
            continue
        rows.append([name, f"{statistics.median(r['wall'] for r in ok):.3f}",
                     f"{statistics.median(r['cpu'] for r in ok):.3f}"])
    return rows


def baseline_tree(rev: str, workdir: Path) -> Path | None:
    """The repository at ``rev`` (git archive), or None when git or the commit is unavailable."""
    dst = workdir / f"baseline-{rev}"
    if (dst / "mlds").is_dir():
        return dst
    try:
        data = subprocess.run(["git", "-C", str(ROOT), "archive", rev], capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    dst.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(dst)], input=data, check=True)
    return dst


# ----------------------------------------------------------------------------- report


def table(rows: list[list[str]], header: list[str]) -> None:
    w = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    fmt = lambda r: "  ".join(str(c).rjust(w[i]) if i > 1 else str(c).ljust(w[i]) for i, c in enumerate(r))  # noqa: E731
    print(fmt(header))
    print("  ".join("-" * x for x in w))
    for r in rows:
        print(fmt(r))


def loadavg() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="60,400", help="OUTCAR sizes in MB, comma list (default 60,400; empty: none)")
    ap.add_argument("--xml-sizes", default="60", help="vasprun.xml sizes in MB, comma list (default 60; empty: none)")
    ap.add_argument("--xml-dos", choices=("last", "every"), default="last",
                    help="vasprun.xml: the DOS/eigenvalue block once at the end as in a real MD run (default), "
                         "or in every copy of the source's ten blocks (the layout of the earlier runs)")
    ap.add_argument("--outcar-source", choices=sorted(OUTCAR_SOURCES), default="npt",
                    help="OUTCAR to repeat: npt = custodian npt_common (84 atoms, default), h2o = dpdata h2o.md.10")
    ap.add_argument("--tools", default=",".join(TOOLS), help=f"comma list of {', '.join(TOOLS)} (default all)")
    ap.add_argument("--repeats", type=int, default=3, help="runs of every tool on every file (default 3)")
    ap.add_argument("--baseline", default=BASELINE, help=f"git revision for mlds-before (default {BASELINE})")
    ap.add_argument("--timeout", type=float, default=900, help="per-run timeout in seconds (default 900)")
    ap.add_argument("--workdir", type=Path, default=Path(__file__).resolve().parent / "_work")
    ap.add_argument("--json", type=Path, help="also write all results to this JSON file")
    ap.add_argument("--keep", action="store_true", help="keep the generated files (reused by a later run)")
    ap.add_argument("--startup-runs", type=int, default=5,
                    help="runs of each start-up command (--help, a 10-step convert, peers; default 5; 0: none)")
    ap.add_argument("--strict", action="store_true", help="exit 1 if a target fails")
    a = ap.parse_args(argv)

    testdata = Path(os.environ.get("MLDS_TESTDATA", ROOT.parent / "shared" / "testdata"))
    a.workdir.mkdir(parents=True, exist_ok=True)
    tools = [t for t in a.tools.split(",") if t]
    sizes = {"outcar": [float(x) for x in a.sizes.split(",") if x],
             "xml": [float(x) for x in a.xml_sizes.split(",") if x]}
    srcs = {"outcar": testdata / OUTCAR_SOURCES[a.outcar_source], "xml": testdata / XML_SOURCE}
    made: list[Path] = []
    files: list[tuple[str, float, Path]] = []
    for kind, szs in sizes.items():
        for sz in szs:
            name = (f"convert_{a.outcar_source}_{sz:g}mb.OUTCAR" if kind == "outcar" else f"convert_vasprun_{sz:g}mb_dos-{a.xml_dos}.xml")
            p = a.workdir / name
            if not p.exists():
                t0 = time.perf_counter()
                n = (make_outcar(srcs[kind], p, int(sz * MB)) if kind == "outcar"
                     else make_vasprun(srcs[kind], p, int(sz * MB), a.xml_dos))
                print(f"wrote {p.name} ({p.stat().st_size / MB:.1f} MB, {n} steps) in {time.perf_counter() - t0:.1f} s",
                      flush=True)
            made.append(p)
            files.append((kind, sz, p))
    baseline = None
    if "mlds-before" in tools:
        baseline = baseline_tree(a.baseline, a.workdir)
        if baseline is None:
            print(f"mlds-before skipped: cannot get revision {a.baseline} with git archive")
            tools.remove("mlds-before")

    # warm-up on a small real file: every tool's modules compiled and cached, as in a normal install
    print(f"start: {loadavg()}", flush=True)
    for tool in tools:
        kind = "outcar"
        cmd, env = command(tool, kind, srcs[kind], a.workdir / "warmup.h5", baseline)
        run_process(cmd, env, a.timeout)
        (a.workdir / "warmup.h5").unlink(missing_ok=True)

    results: dict[str, list[dict]] = {}
    for rep in range(a.repeats):
        for kind, sz, path in files:
            for tool in tools:
                out = a.workdir / f"convert_out_{tool}.h5"
                out.unlink(missing_ok=True)
                cmd, env = command(tool, kind, path, out, baseline)
                r = run_process(cmd, env, a.timeout)
                if r["status"] == "ok" and tool in ("mlds", "mlds-before"):
                    r.update(dataset_summary(out))
                out.unlink(missing_ok=True)
                results.setdefault(f"{kind}/{sz:g}/{tool}", []).append(r)
                msg = (f"{r['wall']:.2f} s wall, {r['cpu']:.2f} s CPU, peak RSS {r['rss'] / MB:.0f} MB"
                       if r["status"] == "ok" else r["status"])
                if "seconds" in r:
                    msg += f", call {r['seconds']:.2f} s"
                print(f"  [{rep + 1}/{a.repeats}] {kind:6s} {sz:5g} MB {tool:12s} {msg}", flush=True)
    start_rows = startup(srcs["outcar"], a.workdir, a.startup_runs, a.timeout) if a.startup_runs > 0 else []
    print(f"end: {loadavg()}")

    def summary(kind: str, sz: float, tool: str) -> dict | None:
        runs = results.get(f"{kind}/{sz:g}/{tool}")
        if not runs:
            return None
        ok = [r for r in runs if r["status"] == "ok"]
        if len(ok) < len(runs):
            return {"status": next(r["status"] for r in runs if r["status"] != "ok")}
        med = lambda k: statistics.median(r[k] for r in ok)  # noqa: E731
        s = {"status": "ok", "wall": med("wall"), "cpu": med("cpu"), "rss": max(r["rss"] for r in ok),
             "wall_min": min(r["wall"] for r in ok), "runs": len(ok)}
        if "seconds" in ok[0]:
            s["seconds"] = med("seconds")
        for k in ("frames", "e_first", "e_last", "e_sum"):
            if k in ok[0]:
                s[k] = ok[0][k]
        return s

    # ---- table
    print()
    print(f"VASP -> mlds dataset / frames; OUTCAR source {a.outcar_source}; {a.repeats} run(s) per tool, medians; "
          f"{loadavg()}")
    rows = []
    fails: list[str] = []
    for kind, sz, path in files:
        size = path.stat().st_size
        ref = summary(kind, sz, "mlds")
        for tool in tools:
            s = summary(kind, sz, tool)
            if s is None:
                continue
            if s["status"] != "ok":
                rows.append([kind, f"{sz:g} MB", tool, s["status"], "", "", "", "", ""])
                continue
            secs = s.get("seconds", s["wall"])
            speed = cpu_speed = ""
            if tool in PROCESS_TOOLS and tool != "mlds" and ref and ref["status"] == "ok":
                speed = f"{s['wall'] / ref['wall']:.1f}x"
                cpu_speed = f"{s['cpu'] / ref['cpu']:.1f}x"
            rows.append([kind, f"{sz:g} MB", tool, f"{s['wall']:.2f}", f"{s['cpu']:.2f}",
                         f"{size / MB / secs:.0f}", f"{s['rss'] / MB:.0f}", speed, cpu_speed])
            # correctness: every tool that returns frames sees the frames and energies mlds stored
            if ref and ref["status"] == "ok" and tool != "mlds" and "e_sum" in s:
                ok = (s["frames"] == ref["frames"] and abs(s["e_first"] - ref["e_first"]) < 1e-6
                      and abs(s["e_last"] - ref["e_last"]) < 1e-6
                      and abs(s["e_sum"] - ref["e_sum"]) < 1e-6 * max(1, s["frames"]))
                if not ok:
                    fails.append(f"{kind} {sz:g} MB: {tool} disagrees with mlds ({s['frames']} vs {ref['frames']} "
                                 f"frames, E first/last {s['e_first']}/{s['e_last']} vs {ref['e_first']}/{ref['e_last']})")
    table(rows, ["file", "size", "tool", "wall s", "CPU s", "MB/s", "peak RSS MB", "mlds speed-up", "(CPU)"])
    print("MB/s: file size / wall time of the whole process, except mlds-reader and linecount (the call only).")
    if start_rows:
        print()
        print(f"start-up: process wall and CPU time, medians of {a.startup_runs} (the 10-step file: {srcs['outcar'].name}"
              f" of {OUTCAR_SOURCES[a.outcar_source]})")
        table(start_rows, ["command", "wall s", "CPU s"])

    # ---- goals
    print()
    checks: list[str] = []

    def ratio_check(kind: str, sz: float, other: str, want: float, label: str) -> None:
        m, o = summary(kind, sz, "mlds"), summary(kind, sz, other)
        if not m or not o or m["status"] != "ok":
            return
        if o["status"] == "timeout":
            got, ok = f">{a.timeout / m['wall']:.1f}x (timeout)", True
        elif o["status"] != "ok":
            got, ok = o["status"], False
        else:
            x = o["wall"] / m["wall"]
            got, ok = f"{x:.1f}x (CPU time {o['cpu'] / m['cpu']:.1f}x)", x >= want
        checks.append(f"{'PASS' if ok else 'FAIL'}  {label} {sz:g} MB: mlds convert (process) >= {want:g}x {other}: {got}")

    for kind, sz, _ in files:
        if kind == "outcar":
            ratio_check(kind, sz, "ase", 5.0, "OUTCAR")
            ratio_check(kind, sz, "dpdata", 2.0, "OUTCAR")
        else:
            ratio_check(kind, sz, "mlds-before", 2.0, "vasprun.xml")
    for kind in sizes:
        szs = sizes[kind]
        if len(szs) >= 2:  # memory bounded, not growing with the file
            lo, hi = summary(kind, min(szs), "mlds"), summary(kind, max(szs), "mlds")
            if lo and hi and lo["status"] == hi["status"] == "ok":
                # the writer buffers up to FIRST_WRITE_BYTES of columns before it sizes the chunks (and
                # copies them once): a small file stays below that, a large one reaches it, then stays flat
                first = _first_write_bytes()
                allowed = lo["rss"] + 2 * first + 16 * 2**20
                ok = hi["rss"] <= allowed
                checks.append(f"{'PASS' if ok else 'FAIL'}  {kind}: mlds convert peak RSS bounded: "
                              f"{lo['rss'] / MB:.0f} MB at {min(szs):g} MB -> {hi['rss'] / MB:.0f} MB at {max(szs):g} MB "
                              f"(allowed {allowed / MB:.0f} MB: + 2 x the writer's {first / 2**20:.0f} MiB first buffer + 16 MiB)")
    for kind, sz, path in files:  # information: the reader against the Python line-count limit
        r, lc = summary(kind, sz, "mlds-reader"), summary(kind, sz, "linecount")
        if r and lc and r["status"] == lc["status"] == "ok":
            size = path.stat().st_size / MB
            checks.append(f"INFO  {kind} {sz:g} MB: mlds reader {size / r['seconds']:.0f} MB/s = "
                          f"{lc['seconds'] / r['seconds']:.2f}x Python line count ({size / lc['seconds']:.0f} MB/s)")
    for c in checks:
        print(c)
    for f in fails:
        print("FAIL  correctness:", f)
    if a.json:
        a.json.write_text(json.dumps({"sizes": sizes, "outcar_source": a.outcar_source, "repeats": a.repeats,
                                      "startup": start_rows,
                                      "load": os.getloadavg(), "results": results, "checks": checks,
                                      "correctness_failures": fails}, indent=1))
    if not a.keep:
        for p in made:
            p.unlink(missing_ok=True)
        if baseline is not None:
            shutil.rmtree(baseline, ignore_errors=True)
    if fails:
        return 1
    if a.strict and any(c.startswith("FAIL") for c in checks):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
