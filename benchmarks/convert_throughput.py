#!/usr/bin/env python
"""Conversion throughput of the mlds VASP readers (OUTCAR, vasprun.xml) against ASE and dpdata.

Builds a large MD OUTCAR and a large vasprun.xml (``--size-mb``, default 200) by
repeating the ionic steps of real multi-step runs from the shared test data
(header once, step blocks repeated with VASP's ionic-step counter renumbered,
trailer once, so each file parses as one long valid run), plus the same at half
the size.  Then every tool runs in its own fresh subprocess, so the peak RSS
(``resource.getrusage(RUSAGE_SELF).ru_maxrss`` of that child) is per tool:

  mlds-iter     ``for frame in mlds.io.registry.open_reader(path)``
  mlds-convert  ``mlds convert path -o out.h5 -q`` (the CLI, in the child process)
  ase           ``ase.io.read(path, ":", format=...)``
  dpdata        ``dpdata.LabeledSystem(path, fmt="vasp/outcar" | "vasp/xml")``

Only the call itself is timed (interpreter start-up and imports are not).

    python benchmarks/convert_throughput.py                 # 200 MB files (ASE/dpdata take minutes)
    python benchmarks/convert_throughput.py --size-mb 20    # quick
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUTCAR_SOURCES = {
    "npt": "custodian/tests/files/npt_common/OUTCAR",  # 84 atoms, NpT MD, 10 steps
    "h2o": "dpdata/tests/poscars/OUTCAR.h2o.md.10",  # 6 atoms, NVT MD, 10 steps
}
XML_SOURCE = "dpdata/tests/poscars/vasprun.h2o.md.10.xml"  # 6 atoms, 10 <calculation>
TOOLS = ("mlds-iter", "mlds-convert", "ase", "dpdata")
MB = 1e6

# ----------------------------------------------------------------------------- data

_STEP_START = re.compile(r"^-+ Iteration\s+\d+\(\s*1\)", re.M)
_ITER_NUM = re.compile(r"(?<=Iteration)(\s*\d+)(?=\()")


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
    """Repeat the ionic steps of ``src`` until ``dst`` is >= ``size`` bytes; returns the step count."""
    header, steps, trailer = split_outcar(src.read_text())
    # each step split around its "Iteration N(" counter so it can be renumbered cheaply
    pieces = [_ITER_NUM.split(s) for s in steps]
    n = 0
    written = 0
    tmp = dst.with_suffix(".part")
    with open(tmp, "w") as fh:
        fh.write(header)
        written += len(header)
        while written < size:
            for parts in pieces:
                n += 1
                num = f"{n:5d}"
                txt = "".join(num if i % 2 else p for i, p in enumerate(parts))
                fh.write(txt)
                written += len(txt)
                if written >= size:
                    break
        fh.write(trailer)
    tmp.replace(dst)
    return n


def make_vasprun(src: Path, dst: Path, size: int) -> int:
    """Repeat the ``<calculation>`` blocks of ``src`` until ``dst`` is >= ``size`` bytes."""
    text = src.read_text()
    first = text.index("<calculation>")
    first = text.rindex("\n", 0, first) + 1
    last = text.rindex("</calculation>")
    last = text.index("\n", last) + 1
    body = text[first:last]
    blocks = [b + "</calculation>\n" for b in body.split("</calculation>\n") if b.strip()]
    header, trailer = text[:first], text[last:]
    n = 0
    written = 0
    tmp = dst.with_suffix(".part")
    with open(tmp, "w") as fh:
        fh.write(header)
        written += len(header)
        while written < size:
            for b in blocks:
                fh.write(b)
                written += len(b)
                n += 1
                if written >= size:
                    break
        fh.write(trailer)
    tmp.replace(dst)
    return n


# ----------------------------------------------------------------------------- child


def child(tool: str, kind: str, path: str, out: str) -> None:
    """Run one tool on one file in this (fresh) process; print one JSON line."""
    import resource

    import numpy as np

    energies: list[float] = []
    if tool == "mlds-iter":
        from mlds.io.registry import open_reader

        t0 = time.perf_counter()
        nat = 0
        for fr in open_reader(path):
            energies.append(fr.energy)
            nat += len(fr.forces)
        dt = time.perf_counter() - t0
    elif tool == "mlds-convert":
        import mlds
        from mlds.cli import run

        if os.path.exists(out):
            os.remove(out)
        t0 = time.perf_counter()
        rc = run(["convert", path, "-o", out, "-q"])
        dt = time.perf_counter() - t0
        if rc != 0:
            raise SystemExit(f"mlds convert exited {rc}")
        with mlds.open(out) as ds:
            energies = [float(e) for e in ds.array("energy")]
        os.remove(out)
    elif tool == "ase":
        import ase.io

        t0 = time.perf_counter()
        images = ase.io.read(path, ":", format="vasp-out" if kind == "outcar" else "vasp-xml")
        dt = time.perf_counter() - t0
        energies = [a.get_potential_energy(force_consistent=True) for a in images]
    elif tool == "dpdata":
        import dpdata

        t0 = time.perf_counter()
        s = dpdata.LabeledSystem(path, fmt="vasp/outcar" if kind == "outcar" else "vasp/xml")
        dt = time.perf_counter() - t0
        energies = [float(e) for e in s["energies"]]
    else:
        raise SystemExit(f"unknown tool {tool}")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    e = np.asarray(energies, dtype=float)
    print(json.dumps({"seconds": dt, "frames": len(e), "rss": rss,
                      "e_first": float(e[0]) if len(e) else None, "e_last": float(e[-1]) if len(e) else None,
                      "e_sum": float(e.sum())}))


def run_child(tool: str, kind: str, path: Path, workdir: Path, timeout: float) -> dict:
    out = workdir / f"convert_{tool}_{kind}.h5"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", tool, kind, str(path), str(out)]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"status": "timeout"}
    if p.returncode != 0:
        tail = (p.stderr or p.stdout).strip().splitlines()[-3:]
        return {"status": "error: " + " | ".join(tail)}
    res = json.loads(p.stdout.strip().splitlines()[-1])
    res["status"] = "ok"
    return res


# ----------------------------------------------------------------------------- report


def table(rows: list[list[str]], header: list[str]) -> None:
    w = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    fmt = lambda r: "  ".join(str(c).rjust(w[i]) if i else str(c).ljust(w[i]) for i, c in enumerate(r))  # noqa: E731
    print(fmt(header))
    print("  ".join("-" * x for x in w))
    for r in rows:
        print(fmt(r))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        sys.path.insert(0, str(ROOT))
        child(*argv[1:5])
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mb", type=float, default=200, help="size of each big file in MB (default 200)")
    ap.add_argument("--outcar-source", choices=sorted(OUTCAR_SOURCES), default="npt",
                    help="OUTCAR to repeat: npt = custodian npt_common (84 atoms, default), h2o = dpdata h2o.md.10 (6 atoms)")
    ap.add_argument("--formats", default="outcar,xml", help="comma list of outcar, xml (default both)")
    ap.add_argument("--tools", default=",".join(TOOLS), help=f"comma list of {', '.join(TOOLS)} (default all)")
    ap.add_argument("--timeout", type=float, default=900, help="per-tool timeout in seconds (default 900)")
    ap.add_argument("--workdir", type=Path, default=Path(__file__).resolve().parent / "_work")
    ap.add_argument("--json", type=Path, help="also write all results to this JSON file")
    ap.add_argument("--keep", action="store_true", help="keep the generated files (reused by the next run of the same size)")
    ap.add_argument("--strict", action="store_true", help="exit 1 if a target fails")
    a = ap.parse_args(argv)

    testdata = Path(os.environ.get("MLDS_TESTDATA", ROOT.parent / "shared" / "testdata"))
    a.workdir.mkdir(parents=True, exist_ok=True)
    formats = [f for f in a.formats.split(",") if f]
    tools = [t for t in a.tools.split(",") if t]
    size = int(a.size_mb * MB)
    tag = f"{a.size_mb:g}mb"
    half_tag = f"{a.size_mb / 2:g}mb"
    srcs = {"outcar": testdata / OUTCAR_SOURCES[a.outcar_source], "xml": testdata / XML_SOURCE}
    files: dict[tuple[str, str], Path] = {}
    made: list[Path] = []
    for kind in formats:
        for t, sz in ((tag, size), (half_tag, size // 2)):
            name = f"convert_{a.outcar_source}_{t}.OUTCAR" if kind == "outcar" else f"convert_vasprun_{t}.xml"
            p = a.workdir / name
            if not p.exists():
                t0 = time.perf_counter()
                n = (make_outcar if kind == "outcar" else make_vasprun)(srcs[kind], p, sz)
                print(f"wrote {p} ({p.stat().st_size / MB:.1f} MB, {n} steps) in {time.perf_counter() - t0:.1f} s",
                      flush=True)
            files[(kind, t)] = p
            made.append(p)

    results: dict[str, dict] = {}
    for kind in formats:
        jobs = [(tool, tag) for tool in tools] + [(tool, half_tag) for tool in tools if tool.startswith("mlds")]
        for tool, t in jobs:
            path = files[(kind, t)]
            r = run_child(tool, kind, path, a.workdir, a.timeout)
            r["bytes"] = path.stat().st_size
            results[f"{kind}/{tool}/{t}"] = r
            msg = (f"{r['seconds']:.1f} s, {r['frames']} frames, peak RSS {r['rss'] / MB:.0f} MB"
                   if r["status"] == "ok" else r["status"])
            print(f"  {kind:6s} {tool:12s} {t:>7s}: {msg}", flush=True)

    # ---- table
    fails: list[str] = []
    checks: list[str] = []
    print()
    print(f"VASP -> frames, {a.size_mb:g} MB files (half size {a.size_mb / 2:g} MB for the memory check); "
          f"OUTCAR source: {a.outcar_source}")
    rows = []
    for kind in formats:
        ref = results.get(f"{kind}/mlds-iter/{tag}", {})
        for tool in tools:
            for t in (tag, half_tag):
                r = results.get(f"{kind}/{tool}/{t}")
                if r is None:
                    continue
                if r["status"] != "ok":
                    rows.append([kind, tool, t, r["status"], "", "", "", "", ""])
                    continue
                mbs = r["bytes"] / MB / r["seconds"]
                fps = r["frames"] / r["seconds"]
                speed = mem = ""
                if ref.get("status") == "ok" and not tool.startswith("mlds"):
                    speed = f"{r['seconds'] / ref['seconds']:.1f}x"  # mlds speed / tool speed
                    mem = f"{ref['rss'] / r['rss']:.2f}"
                rows.append([kind, tool, t, f"{r['seconds']:.2f}", f"{mbs:.1f}", f"{fps:.0f}",
                             f"{r['rss'] / MB:.0f}", speed, mem])
        # correctness: every tool must see the same frames and energies as mlds-iter
        if ref.get("status") == "ok":
            for tool in tools:
                r = results.get(f"{kind}/{tool}/{tag}", {})
                if r.get("status") != "ok" or tool == "mlds-iter":
                    continue
                ok = (r["frames"] == ref["frames"] and abs(r["e_first"] - ref["e_first"]) < 1e-6
                      and abs(r["e_last"] - ref["e_last"]) < 1e-6
                      and abs(r["e_sum"] - ref["e_sum"]) < 1e-6 * max(1, r["frames"]))
                if not ok:
                    fails.append(f"{kind}: {tool} disagrees with mlds ({r['frames']} vs {ref['frames']} frames, "
                                 f"E first/last {r['e_first']}/{r['e_last']} vs {ref['e_first']}/{ref['e_last']})")
    table(rows, ["file", "tool", "size", "seconds", "MB/s", "frames/s", "peak RSS MB",
                 "mlds-iter speed-up", "RSS mlds-iter/tool"])

    # ---- targets
    print()
    targets = {"ase": 5.0, "dpdata": 2.0}
    for kind in formats:
        for mtool in ("mlds-iter", "mlds-convert"):
            m = results.get(f"{kind}/{mtool}/{tag}", {})
            if m.get("status") != "ok":
                continue
            for other, want in targets.items():
                r = results.get(f"{kind}/{other}/{tag}")
                if r is None:
                    continue
                if r["status"] == "timeout":
                    got, ok = f">{a.timeout / m['seconds']:.1f}x (timeout)", True
                elif r["status"] != "ok":
                    got, ok = r["status"], False
                else:
                    x = r["seconds"] / m["seconds"]
                    got, ok = f"{x:.1f}x", x >= want
                checks.append(f"{'PASS' if ok else 'FAIL'}  {kind}: {mtool} throughput >= {want:g}x {other}: {got}")
            h = results.get(f"{kind}/{mtool}/{half_tag}", {})
            if h.get("status") == "ok":
                # flat = the full-size file needs at most 10 % (or 16 MB) more peak memory than the half-size one
                ok = m["rss"] <= max(h["rss"] * 1.10, h["rss"] + 16 * 2**20)
                checks.append(f"{'PASS' if ok else 'FAIL'}  {kind}: {mtool} peak RSS flat with size: "
                              f"{h['rss'] / MB:.0f} MB at {half_tag} -> {m['rss'] / MB:.0f} MB at {tag}")
    for c in checks:
        print(c)
    for f in fails:
        print("FAIL  correctness:", f)
    if a.json:
        a.json.write_text(json.dumps({"size_mb": a.size_mb, "outcar_source": a.outcar_source, "results": results,
                                      "checks": checks, "correctness_failures": fails}, indent=1))
    if not a.keep:
        for p in made:
            p.unlink(missing_ok=True)
    if fails:
        return 1
    if a.strict and any(c.startswith("FAIL") for c in checks):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
