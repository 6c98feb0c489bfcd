#!/usr/bin/env python
"""Read throughput of mlds (HDF5 and Zarr) against extxyz, ASE SQLite, fairchem's ASE-LMDB and raw .npy.

One synthetic set (periodic frames of 48-96 atoms with energy, forces and stress)
is written in every format into a work directory, streamed in blocks so any size
fits in memory, then read back:

  scan      in-order pass touching numbers, positions, forces, energy of each frame
  random    single frames at random indices, page cache warm, fresh handle per pass
  cold      the same with the page cache dropped before each pass (posix_fadvise
            DONTNEED on every file of every tool; no root needed)
  per-open  100 random reads per open (open, 100 reads, close, repeated)
  batch     shuffled minibatches: mlds ``ds.batch(idx)`` vs a raw .npy memmap gather
  open      open + first frame + close
  bulk      all positions and forces as two arrays

Every tool gets the same number of passes (``--repeats``); the figure is the
median pass.  Ratios of mlds to the best configuration of each peer are printed
with PASS/FAIL for the targets of issue 12.

    python benchmarks/read_throughput.py                 # 20,000 frames (~75 MB)
    python benchmarks/read_throughput.py --size 2G       # >= 2 GB dataset (peers: aselmdb, npy)
    python benchmarks/read_throughput.py --frames 2000   # quick
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import ase.db  # noqa: E402
import ase.io  # noqa: E402
from ase import Atoms  # noqa: E402
from ase.calculators.singlepoint import SinglePointCalculator  # noqa: E402

import mlds  # noqa: E402
from mlds.format.frame import Frame  # noqa: E402

ELEMENTS = np.array([1, 6, 8, 14, 22, 26, 29], dtype=np.uint8)
BLOCK = 5000                 # frames generated and written per block
BYTES_PER_ATOM = 49          # numbers + positions + forces in mlds
BYTES_PER_FRAME = 171        # n_atoms, atom_offset, cell, pbc, energy, stress
MEAN_ATOMS = 72
ALL_PEERS = ("extxyz", "sqlite", "aselmdb", "npy")
SHORT_PASSES = 7             # timed passes of the short cases (batch, open, bulk), every tool alike

# ----------------------------------------------------------------------------- data


def atom_counts(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(48, 97, n)


def make_block(counts: np.ndarray, first: int, seed: int) -> list[Frame]:
    """Frames ``first ... first+len(counts)-1``: periodic, ~12 Å^3 per atom, with E, F and stress."""
    rng = np.random.default_rng([seed, first])
    frames = []
    for na in counts.tolist():
        a = (12.0 * na) ** (1.0 / 3.0)
        cell = np.diag([a, a, a]) + rng.normal(0.0, 0.2, (3, 3))
        s = rng.normal(0.0, 0.01, (3, 3))
        frames.append(Frame(
            numbers=rng.choice(ELEMENTS, na), positions=rng.random((na, 3)) @ cell, cell=cell,
            pbc=[True, True, True], energy=float(rng.normal(-5.0 * na, 2.0)),
            forces=rng.normal(0.0, 1.0, (na, 3)), stress=(s + s.T) / 2,
        ))
    return frames


def to_atoms(f: Frame) -> Atoms:
    a = Atoms(numbers=f.numbers.astype(int), positions=f.positions, cell=f.cell, pbc=f.pbc)
    a.calc = SinglePointCalculator(a, energy=f.energy, forces=f.forces, stress=f.stress[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]])
    return a


class _IdList(list):
    """The backend's id list with set membership: its ``write`` checks ``idx not in self.ids``
    (a scan of every id), which makes building a multi-GB database quadratic.  Build only;
    the rows written are the backend's own bytes."""

    def __init__(self, ids: Any) -> None:
        super().__init__(ids)
        self._set = set(self)

    def __contains__(self, x: object) -> bool:
        return x in self._set

    def append(self, x: Any) -> None:
        super().append(x)
        self._set.add(x)


def lmdb_connect(path: Path, *, building: bool = False, **kw: Any):
    """fairchem's ASE-LMDB backend: ``type="aselmdb"`` when ASE knows it, else the class."""
    try:
        db = ase.db.connect(str(path), type="aselmdb", **kw)
    except ValueError:  # older ASE without the aselmdb entry
        from ase_db_backends.aselmdb import LMDBDatabase

        db = LMDBDatabase(path, **kw)
    if building and isinstance(getattr(db, "ids", None), list):
        db.ids = _IdList(db.ids)
    return db


def files_of(p: Path) -> list[Path]:
    if p.is_dir():
        return [f for f in p.rglob("*") if f.is_file()]
    return [p] if p.exists() else []


def dir_size(p: Path) -> int:
    return sum(f.stat().st_size for f in files_of(p))


def remove(p: Path) -> None:
    if p.is_dir():
        shutil.rmtree(p)
    elif p.exists():
        p.unlink()


def drop_page_cache(paths: list[Path]) -> None:
    """Evict every file of every tool from the OS page cache (posix_fadvise DONTNEED; no root needed)."""
    for p in paths:
        for f in files_of(p):
            fd = os.open(f, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def warm_page_cache(paths: list[Path]) -> None:
    """Read every file once so warm cases start warm whatever ran before (cheap when already cached)."""
    buf = bytearray(1 << 22)
    for p in paths:
        for f in files_of(p):
            with open(f, "rb", buffering=0) as fh:
                while fh.readinto(buf):
                    pass


def resident_fraction(paths: list[Path]) -> float | None:
    """Fraction of the files' pages in the page cache, via util-linux ``fincore`` when installed."""
    if shutil.which("fincore") is None:
        return None
    total = res = 0
    for p in paths:
        fs = files_of(p)
        for k in range(0, len(fs), 500):
            out = subprocess.run(["fincore", "-b", "-n", "-o", "RES,SIZE", *map(str, fs[k:k + 500])],
                                 capture_output=True, text=True).stdout.split()
            for r, s in zip(out[0::2], out[1::2]):
                res += int(r)
                total += int(s)
    return res / total if total else None


def load() -> str:
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


# ----------------------------------------------------------------------------- building


@dataclass
class Paths:
    work: Path

    def __post_init__(self) -> None:
        w = self.work
        self.h5, self.zarr = w / "read_bench.h5", w / "read_bench.zarr"
        self.extxyz, self.sqlite, self.lmdb = w / "read_bench.extxyz", w / "read_bench.db", w / "read_bench.aselmdb"
        self.npy = {k: w / f"read_{k}.npy" for k in
                    ("numbers", "positions", "forces", "n_atoms", "atom_offset", "energy", "cell", "stress", "pbc")}
        self.stamp = w / "read_bench.json"

    def of(self, tool: str) -> list[Path]:
        if tool == "aselmdb":
            return [self.lmdb, Path(str(self.lmdb) + "-lock")]
        if tool == "npy":
            return list(self.npy.values())
        return [{"mlds-h5": self.h5, "mlds-zarr": self.zarr, "extxyz": self.extxyz, "sqlite": self.sqlite}[tool]]

    def all(self, tools: list[str]) -> list[Path]:
        return [p for t in tools for p in self.of(t)]


def build(paths: Paths, n: int, seed: int, peers: list[str]) -> dict[str, float]:
    """Write the same frames with every tool, block by block; returns write seconds per tool."""
    counts = atom_counts(n, seed)
    total_atoms = int(counts.sum())
    from numpy.lib.format import open_memmap

    mm = {}
    if "npy" in peers:
        shapes = {"numbers": ((total_atoms,), np.uint8), "positions": ((total_atoms, 3), np.float64),
                  "forces": ((total_atoms, 3), np.float64), "n_atoms": ((n,), np.int64), "atom_offset": ((n,), np.int64),
                  "energy": ((n,), np.float64), "cell": ((n, 3, 3), np.float64), "stress": ((n, 3, 3), np.float64),
                  "pbc": ((n, 3), np.uint8)}
        mm = {k: open_memmap(paths.npy[k], mode="w+", dtype=dt, shape=sh) for k, (sh, dt) in shapes.items()}
    w_h5, w_zarr = mlds.create(paths.h5), mlds.create(paths.zarr)
    secs = dict.fromkeys(["mlds-h5", "mlds-zarr", *peers], 0.0)

    def write_rows(db: Any, atoms: list[Atoms]) -> None:
        with db:  # one transaction per block (SQLite: commit at exit; LMDB: commit and close)
            for a in atoms:
                db.write(a)

    t_start, atom0 = time.perf_counter(), 0
    for b0 in range(0, n, BLOCK):
        frames = make_block(counts[b0:b0 + BLOCK], b0, seed)
        atoms = [to_atoms(f) for f in frames] if {"sqlite", "aselmdb", "extxyz"} & set(peers) else []
        for tool, fn in (
            ("mlds-h5", lambda: w_h5.append(frames)),
            ("mlds-zarr", lambda: w_zarr.append(frames)),
            ("extxyz", lambda: ase.io.write(str(paths.extxyz), atoms, format="extxyz", append=b0 > 0)),
            ("sqlite", lambda: write_rows(ase.db.connect(str(paths.sqlite)), atoms)),
            ("aselmdb", lambda: write_rows(lmdb_connect(paths.lmdb, building=True), atoms)),
            ("npy", lambda: _npy_block(mm, frames, b0, atom0)),
        ):
            if tool in secs:
                t0 = time.perf_counter()
                fn()
                secs[tool] += time.perf_counter() - t0
        atom0 += sum(f.n_atoms for f in frames)
        done = min(n, b0 + BLOCK)
        print(f"\r  writing: {done:,}/{n:,} frames ({time.perf_counter() - t_start:.0f} s)", end="", flush=True)
    for tool, fn in (("mlds-h5", w_h5.close), ("mlds-zarr", w_zarr.close)):
        t0 = time.perf_counter()
        fn()
        secs[tool] += time.perf_counter() - t0
    for a in mm.values():
        a.flush()
    mm.clear()
    print()
    return secs


def _npy_block(mm: dict[str, np.ndarray], frames: list[Frame], f0: int, a0: int) -> None:
    na = np.array([f.n_atoms for f in frames])
    a1 = a0 + int(na.sum())
    mm["numbers"][a0:a1] = np.concatenate([f.numbers for f in frames])
    mm["positions"][a0:a1] = np.concatenate([f.positions for f in frames])
    mm["forces"][a0:a1] = np.concatenate([f.forces for f in frames])
    sl = slice(f0, f0 + len(frames))
    mm["n_atoms"][sl] = na
    mm["atom_offset"][sl] = a0 + np.concatenate([[0], np.cumsum(na)[:-1]])
    mm["energy"][sl] = [f.energy for f in frames]
    mm["cell"][sl] = np.stack([f.cell for f in frames])
    mm["stress"][sl] = np.stack([f.stress for f in frames])
    mm["pbc"][sl] = np.stack([f.pbc for f in frames])


# ----------------------------------------------------------------------------- readers


def touch(numbers, pos, frc, e) -> float:
    return e + 0 * (numbers.shape[0] + pos.shape[0] + frc.shape[0])


def scan_mlds(path: Path, n: int):
    nf = nat = 0
    es = 0.0
    with mlds.open(path) as ds:
        for f in ds.iter_frames(0, n):
            nf += 1
            nat += f.numbers.shape[0]
            es += touch(f.numbers, f.positions, f.forces, f.energy)
    return nf, nat, es


def scan_extxyz(path: Path, n: int):
    nf = nat = 0
    es = 0.0
    for a in ase.io.iread(str(path), index=f":{n}", format="extxyz"):
        nf += 1
        nat += a.numbers.shape[0]
        es += touch(a.numbers, a.positions, a.get_forces(), a.get_potential_energy())
    return nf, nat, es


def _scan_rows(db, n: int):
    nf = nat = 0
    es = 0.0
    for row in db.select(limit=n):
        nf += 1
        nat += row.numbers.shape[0]
        es += touch(row.numbers, row.positions, row.forces, row.energy)
    return nf, nat, es


def scan_sqlite(path: Path, n: int):
    db = ase.db.connect(str(path))
    with db:  # one connection for the whole pass
        return _scan_rows(db, n)


def scan_lmdb(path: Path, n: int):
    db = lmdb_connect(path, readonly=True)
    try:
        return _scan_rows(db, n)
    finally:
        db.close()


def row_sum(row) -> float:
    return touch(row.numbers, row.positions, row.forces, row.energy)


class Reader:
    """Open / read frame i / close for one tool, so every random-read protocol treats tools alike."""

    def __init__(self, tool: str, paths: Paths, cache_bytes: int) -> None:
        self.tool, self.paths, self.cache_bytes = tool, paths, cache_bytes

    def open(self) -> Any:
        t = self.tool
        if t.startswith("mlds"):
            return mlds.open(self.paths.h5 if t == "mlds-h5" else self.paths.zarr, cache_bytes=self.cache_bytes)
        if t == "sqlite":
            db = ase.db.connect(str(self.paths.sqlite))
            db.__enter__()  # one connection while reading (otherwise ASE reconnects per get)
            return db
        if t.startswith("aselmdb"):
            return lmdb_connect(self.paths.lmdb, readonly=True, **({"readahead": False} if t.endswith("/noRA") else {}))
        raise ValueError(t)

    def read(self, h: Any, i: int) -> float:
        t = self.tool
        if t.startswith("mlds"):
            f = h[i]
            return touch(f.numbers, f.positions, f.forces, f.energy)
        if t == "sqlite" or t == "aselmdb/get":
            return row_sum(h.get(id=i + 1))
        return row_sum(h._get_row_by_index(i))  # what fairchem's AseDBDataset calls

    def close(self, h: Any) -> None:
        if self.tool == "sqlite":
            h.__exit__(None, None, None)
        else:
            h.close()


def random_pass(r: Reader, idx: list[int], per_open: int | None = None) -> float:
    es = 0.0
    step = per_open or len(idx)
    for k in range(0, len(idx), step):
        h = r.open()
        try:
            for i in idx[k:k + step]:
                es += r.read(h, i)
        finally:
            r.close(h)
    return es


def random_extxyz(path: Path, idx: list[int]) -> float:
    es = 0.0
    for i in idx:
        a = ase.io.read(str(path), index=i, format="extxyz")
        es += touch(a.numbers, a.positions, a.get_forces(), a.get_potential_energy())
    return es


def open_first(r: Reader) -> float:
    h = r.open()
    try:
        return r.read(h, 0)
    finally:
        r.close(h)


def disk_reads(path: Path, offsets: list[int]) -> int:
    """One 4 KiB ``pread`` per offset, one after another (queue depth 1, readahead off).

    With the page cache dropped this is the floor of a reader that fetches page by
    page and learns the next index only after returning the last frame (``ds[i]``
    in a loop): the disk's latency, not the format, sets it.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
        return sum(len(os.pread(fd, 4096, o)) for o in offsets)
    finally:
        os.close(fd)


def frame_pages(path: Path, idx: list[int]) -> list[list[int]]:
    """The 4 KiB pages of the HDF5 file that frame ``i``'s rows occupy, for every array a cold
    ``ds[i]`` reads page by page (per-atom arrays, and per-frame arrays wider than 8 bytes:
    the narrower ones are loaded whole once reads go cold).  From h5py's chunk index."""
    import h5py

    from mlds.format import spec

    out: list[list[int]] = [[] for _ in idx]
    with h5py.File(path, "r") as f:
        offsets = f["frames/atom_offset"][:]
        counts = f["frames/n_atoms"][:]
        for a in spec.ARRAYS:
            if a.key not in f or a.name in ("n_atoms", "atom_offset"):
                continue
            row = a.dtype.itemsize * math.prod(a.tail)
            if a.group == "frames" and row <= 8:
                continue
            d = f[a.key]
            per = d.chunks[0] if d.chunks else d.shape[0]
            starts: dict[int, int] = {}
            for j, i in enumerate(idx):
                r0, r1 = (int(offsets[i]), int(offsets[i] + counts[i])) if a.group == "atoms" else (i, i + 1)
                for r in range(r0 - r0 % per, r1, per):  # every chunk the rows touch
                    c = r // per
                    if c not in starts:
                        starts[c] = (d.id.get_chunk_info_by_coord((c * per,) + (0,) * len(a.tail)).byte_offset
                                     if d.chunks else d.id.get_offset())
                    b0 = starts[c] + (max(r0, r) - r) * row
                    b1 = starts[c] + (min(r1, r + per) - r) * row
                    out[j].extend(range(b0 // 4096, (b1 - 1) // 4096 + 1))
    return [sorted(set(p)) for p in out]


def parallel_page_reads(path: Path, pages: list[list[int]]) -> int:
    """Per frame, ask for all of its pages at once (``MADV_WILLNEED``), then touch each: the floor
    of a column-per-array reader that learns the next index only after returning the last frame
    (what ``ds[i]`` does cold), without any decoding."""
    import mmap

    fd = os.open(path, os.O_RDONLY)
    try:
        mm = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
        mm.madvise(mmap.MADV_RANDOM)
        got = 0
        for frame in pages:
            for p in frame:
                mm.madvise(mmap.MADV_WILLNEED, p * 4096, 4096)
            for p in frame:
                got += mm[p * 4096] >= 0  # the touch waits for the page
        mm.close()
        return got
    finally:
        os.close(fd)


def open_first_npy(paths: Paths) -> float:
    m = {k: np.load(paths.npy[k], mmap_mode="r") for k in ("numbers", "positions", "forces", "n_atoms", "atom_offset", "energy")}
    a, b = int(m["atom_offset"][0]), int(m["atom_offset"][0] + m["n_atoms"][0])
    return touch(np.array(m["numbers"][a:b]), np.array(m["positions"][a:b]), np.array(m["forces"][a:b]), float(m["energy"][0]))


BATCH_ARRAYS = ("numbers", "positions", "forces", "cell", "pbc", "energy", "stress")


def batches_mlds(path: Path, batches: list[np.ndarray], cache_bytes: int) -> list[dict[str, np.ndarray]]:
    with mlds.open(path, cache_bytes=cache_bytes) as ds:
        return [dict(ds.batch(b, arrays=BATCH_ARRAYS)) for b in batches]


def batches_npy(paths: Paths, batches: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
    """The raw baseline: memory-mapped .npy arrays, one vectorised gather per array (what a hand-rolled loader does)."""
    m = {k: np.load(p, mmap_mode="r") for k, p in paths.npy.items()}
    out = []
    for idx in batches:
        off, cnt = m["atom_offset"][idx], m["n_atoms"][idx]
        ends = np.cumsum(cnt)
        rows = np.repeat(off - (ends - cnt), cnt) + np.arange(int(ends[-1]) if cnt.size else 0)
        b = {k: m[k][rows] for k in ("numbers", "positions", "forces")}
        for k in ("cell", "energy", "stress"):
            b[k] = m[k][idx]
        b["pbc"] = m["pbc"][idx].astype(bool)
        b["n_atoms"] = cnt
        b["ptr"] = np.concatenate([[0], ends])
        b["batch"] = np.repeat(np.arange(len(idx)), cnt)
        out.append(b)
    return out


def bulk_mlds(path: Path):
    with mlds.open(path) as ds:
        return ds.array("positions"), ds.array("forces")


def bulk_npy(paths: Paths):
    return np.load(paths.npy["positions"]), np.load(paths.npy["forces"])


# ----------------------------------------------------------------------------- timing and report


@dataclass
class Result:
    case: str
    tool: str
    n: int                       # frames (or opens) per pass
    times: list[float]
    note: str = ""
    scale: float = 1.0           # sampled: the pass handled n/scale items
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def time(self) -> float:
        return float(np.median(self.times)) * self.scale

    @property
    def rate(self) -> float:
        return self.n / self.time if self.time > 0 else math.inf


def timed(fn: Callable[[], Any], repeats: int, before: Callable[[], None] | None = None) -> tuple[list[float], Any]:
    times, out = [], None
    for _ in range(repeats):
        if before is not None:
            before()
        gc.collect()
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return times, out


def fmt_rate(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:,.1f}"


def fmt_time(t: float) -> str:
    if t < 1e-3:
        return f"{t * 1e6:.0f} µs"
    if t < 1:
        return f"{t * 1e3:.1f} ms"
    return f"{t:.2f} s"


def print_table(rows: list[list[str]], header: list[str], right: set[int]) -> None:
    widths = [max(len(header[c]), *(len(r[c]) for r in rows if r)) for c in range(len(header))]

    def line(r: list[str]) -> str:
        return "  ".join(r[c].rjust(widths[c]) if c in right else r[c].ljust(widths[c]) for c in range(len(r))).rstrip()

    print(line(header))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print(line(r) if r else "")


def parse_size(text: str) -> int:
    units = {"k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}
    t = text.strip().lower().rstrip("b")
    return int(float(t[:-1]) * units[t[-1]]) if t and t[-1] in units else int(float(t))


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=20000, help="number of synthetic frames (default 20000)")
    ap.add_argument("--size", type=parse_size, help="make the mlds dataset about this big instead, e.g. 2G "
                    "(peers default to aselmdb and npy: SQLite/extxyz writes would take hours)")
    ap.add_argument("--peers", help=f"comma list of peers to build and read (default: {','.join(ALL_PEERS)}; with --size: aselmdb,npy)")
    ap.add_argument("--seed", type=int, default=0, help="RNG seed for the data and the random indices")
    ap.add_argument("--workdir", type=Path, default=Path(__file__).resolve().parent / "_work", help="where the files go (default benchmarks/_work)")
    ap.add_argument("--random", type=int, default=2000, help="distinct random frames per pass (default 2000)")
    ap.add_argument("--per-open", type=int, default=100, help="reads per open in the per-open case (default 100)")
    ap.add_argument("--batch-size", type=int, default=64, help="minibatch size for the batch case (default 64)")
    ap.add_argument("--extxyz-random", type=int, default=10, help="random reads actually done for extxyz (O(file) each), scaled (default 10)")
    ap.add_argument("--scan-frames", type=int, default=20000, help="frames per scan pass (default 20000; scans are per-frame rates)")
    ap.add_argument("--opens", type=int, default=30, help="opens per pass in the open+first-frame case (default 30)")
    ap.add_argument("--repeats", type=int, default=3, help="passes per tool and case, the same for every tool; median reported (default 3)")
    ap.add_argument("--cache-mb", type=float, help="mlds cache_bytes in MB (default: a quarter of the dataset, at most 256)")
    ap.add_argument("--json", type=Path, help="also write all timings to this JSON file")
    ap.add_argument("--strict", action="store_true", help="exit 1 if a target fails")
    ap.add_argument("--keep", action="store_true", help="keep the files (a later run with the same size and seed reuses them)")
    args = ap.parse_args(argv)

    n = args.frames if args.size is None else max(1000, int(1.03 * args.size / (MEAN_ATOMS * BYTES_PER_ATOM + BYTES_PER_FRAME)))  # 3% over: headers, the mean varies
    peers = [p for p in (args.peers.split(",") if args.peers else (["aselmdb", "npy"] if args.size else list(ALL_PEERS))) if p]
    for p in peers:
        if p not in ALL_PEERS:
            ap.error(f"unknown peer {p!r}; choose from {', '.join(ALL_PEERS)}")
    if "aselmdb" not in peers or "npy" not in peers:
        ap.error("aselmdb and npy are needed for the targets")
    work: Path = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    paths = Paths(work)
    rep = max(1, args.repeats)

    print(f"mlds read-throughput benchmark: {n:,} frames, seed {args.seed}, peers {', '.join(peers)}, workdir {work}")
    print(f"machine: {os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()}, {load()} at start")
    stamp = {"frames": n, "seed": args.seed, "peers": sorted(peers), "format": 2}
    reuse = paths.stamp.exists() and json.loads(paths.stamp.read_text()) == stamp and paths.lmdb.exists() and all(p.exists() for p in paths.all(["mlds-h5", "mlds-zarr", *[x for x in peers if x != "aselmdb"]]))
    results: list[Result] = []
    if reuse:
        print("reusing the files of an earlier --keep run (same frames, seed and peers)")
        write_secs: dict[str, float] = {}
    else:
        for p in paths.all(["mlds-h5", "mlds-zarr", *ALL_PEERS]) + [paths.stamp]:
            remove(p)
        write_secs = build(paths, n, args.seed, peers)
        paths.stamp.write_text(json.dumps(stamp))
        for tool, s in write_secs.items():
            results.append(Result("write", tool, n, [s], "one pass"))
    os.sync()  # written pages must be clean before they can be dropped
    counts = atom_counts(n, args.seed)
    n_atoms = int(counts.sum())
    sizes = {t: sum(dir_size(p) for p in paths.of(t)) for t in ["mlds-h5", "mlds-zarr", *peers]}
    ds_bytes = sizes["mlds-h5"]
    cache_bytes = int(args.cache_mb * 1e6) if args.cache_mb else max(1 << 20, min(256 << 20, ds_bytes // 4))
    print(f"dataset: {n:,} frames, {n_atoms:,} atoms; mlds HDF5 {ds_bytes / 1e6:,.1f} MB; mlds cache_bytes {cache_bytes / 1e6:,.1f} MB "
          f"({ds_bytes / cache_bytes:.1f}x smaller than the dataset)")

    # ---- correctness
    fails: list[str] = []
    rng = np.random.default_rng(args.seed + 1)
    check_idx = sorted({0, 1, n // 2, n - 1, *map(int, rng.integers(0, n, 4))})
    fails += check_correctness(paths, peers, counts, args.seed, check_idx)
    print("correctness of single frames: " + ("PASS" if not fails else "FAIL\n  " + "\n  ".join(fails)), flush=True)

    def run_case(case: str, entries: list[tuple], before: Callable[[], None] | None = None,
                 short: bool = False) -> dict[str, Any]:
        """Time every tool's pass, round-robin: pass 1 of each tool, then pass 2 of each, ...

        Round-robin makes the machine's load swings hit all tools alike.  ``entries``:
        (tool, fn, items[, note[, scale]]).  ``before`` runs before every pass (e.g. drop caches).
        ``short`` cases (passes of ~0.1 s, where one scheduler hiccup on the shared machine
        decides a median of 3) get one untimed round first (the process's first touch of
        fresh heap pages) and ``max(repeats, SHORT_PASSES)`` timed passes, for every tool alike.
        """
        if before is None:
            warm_page_cache(every_file)
        times: dict[str, list[float]] = {e[0]: [] for e in entries}
        outs: dict[str, Any] = {}
        if short:
            for e in entries:
                timed(e[1], 1, before)
        for _ in range(max(rep, SHORT_PASSES) if short else rep):
            for e in entries:
                t, out = timed(e[1], 1, before)
                times[e[0]] += t
                outs[e[0]] = out
        for e in entries:
            tool, _, items = e[:3]
            note = e[3] if len(e) > 3 else ""
            scale = e[4] if len(e) > 4 else 1.0
            results.append(Result(case, tool, items, times[tool], note, scale))
            print(f"  {case:<9} {tool:<13} {fmt_time(float(np.median(times[tool])) * scale):>9}", flush=True)
        print(f"  ({load()})", flush=True)
        return outs

    readers = {t: Reader(t, paths, cache_bytes) for t in ("mlds-h5", "mlds-zarr", "sqlite", "aselmdb", "aselmdb/get", "aselmdb/noRA")}
    random_tools = ["mlds-h5", "mlds-zarr"] + (["sqlite"] if "sqlite" in peers else []) + ["aselmdb", "aselmdb/get", "aselmdb/noRA"]
    every_file = paths.all(["mlds-h5", "mlds-zarr", *peers])

    def cold() -> None:
        from mlds.format import columns, h5_read

        h5_read.clear_caches()  # nothing learnt about the files kept in-process either
        columns.clear_map_cache()
        drop_page_cache(every_file)

    # ---- scan
    sn = min(n, args.scan_frames)
    scan_ref = (sn, int(counts[:sn].sum()))
    scans = [(t, fn, sn, f"first {sn:,} frames" if sn < n else "") for t, fn in (
        ("mlds-h5", lambda: scan_mlds(paths.h5, sn)), ("mlds-zarr", lambda: scan_mlds(paths.zarr, sn)),
        ("extxyz", lambda: scan_extxyz(paths.extxyz, sn)), ("sqlite", lambda: scan_sqlite(paths.sqlite, sn)),
        ("aselmdb", lambda: scan_lmdb(paths.lmdb, sn))) if t.startswith("mlds") or t in peers]
    for tool, (nf, nat, _) in run_case("scan", scans).items():
        if (nf, nat) != scan_ref:
            fails.append(f"scan {tool}: {nf} frames / {nat} atoms, expected {scan_ref}")

    # ---- random single frames, warm and cold
    k = min(args.random, n)
    idx = [int(i) for i in np.random.default_rng(args.seed + 2).choice(n, k, replace=False)]
    sums: dict[str, float] = {}
    for case, before, note in (("random", None, "fresh open per pass"), ("cold", cold, "page cache dropped before each pass")):
        entries = [(t, lambda t=t: random_pass(readers[t], idx), k, note) for t in random_tools]
        if case == "cold":  # the disk's floor for dependent cold reads, measured in the same rounds
            offsets = [4096 * int(o) for o in np.random.default_rng(args.seed + 4).integers(0, ds_bytes // 4096, k)]
            entries.append(("disk", lambda: disk_reads(paths.h5, offsets), k, "one random 4 KiB pread per frame"))
            pages = frame_pages(paths.h5, idx)
            mean_pages = sum(map(len, pages)) / len(pages)
            entries.append(("disk/frame", lambda: parallel_page_reads(paths.h5, pages), k,
                            f"each frame's own {mean_pages:.1f} pages (mean), asked for at once"))
        if "extxyz" in peers and case == "random":
            kx = min(args.extxyz_random, k)
            entries.append(("extxyz", lambda: random_extxyz(paths.extxyz, idx[:kx]), k, f"{kx} reads (O(file) each), scaled", k / kx))
        for tool, out in run_case(case, entries, before).items():
            if tool not in ("extxyz", "disk", "disk/frame"):
                sums[f"{case}/{tool}"] = out
    drop_page_cache(every_file)
    frac = resident_fraction(every_file)
    if frac is not None:
        print(f"  (right after dropping, {frac:.1%} of the benchmark files' pages are resident: fincore)")
    ref = sums["random/mlds-h5"]
    for key, val in sums.items():
        if abs(val - ref) > 1e-6 * max(1.0, abs(ref)):
            fails.append(f"{key}: sum over the random frames {val} != mlds-h5's {ref}")

    # ---- per open
    po = max(1, args.per_open)
    run_case("per-open", [(t, lambda t=t: random_pass(readers[t], idx, po), k, f"{po} reads per open") for t in random_tools])

    # ---- batch
    bs = max(1, args.batch_size)
    order = np.random.default_rng(args.seed + 3).permutation(n)[:max(k, bs)]
    batches = [order[j:j + bs] for j in range(0, len(order) - bs + 1, bs)]
    nb = sum(len(b) for b in batches)
    got = run_case("batch", [
        ("mlds-h5", lambda: batches_mlds(paths.h5, batches, cache_bytes), nb, f"ds.batch, {bs} frames per batch"),
        ("mlds-zarr", lambda: batches_mlds(paths.zarr, batches, cache_bytes), nb, f"ds.batch, {bs} frames per batch"),
        ("npy", lambda: batches_npy(paths, batches), nb, "memmap + vectorised gather")], short=True)
    for j, (bm, bn) in enumerate(zip(got["mlds-h5"], got["npy"])):
        for key in ("numbers", "positions", "forces", "cell", "energy", "stress", "pbc", "n_atoms", "ptr", "batch"):
            if not np.array_equal(bm[key], bn[key]):
                fails.append(f"batch {j}: {key} from mlds differs from the .npy gather")
                break
    del got
    run_case("batch/cold", [
        ("mlds-h5", lambda: batches_mlds(paths.h5, batches, cache_bytes), nb, "page cache dropped (info)"),
        ("npy", lambda: batches_npy(paths, batches), nb, "page cache dropped (info)")], cold)

    # ---- open + first frame
    no = max(1, args.opens)
    opens = [(t, lambda t=t: [open_first(readers[t]) for _ in range(no)], no, f"open + frame 0 + close, x{no}")
             for t in ["mlds-h5", "mlds-zarr"] + (["sqlite"] if "sqlite" in peers else []) + ["aselmdb", "aselmdb/get"]]
    opens.append(("npy", lambda: [open_first_npy(paths) for _ in range(no)], no, f"np.load(mmap_mode='r') + frame 0, x{no}"))
    run_case("open", opens, short=True)

    def first_open() -> None:
        from mlds.format import columns, h5_read

        h5_read.clear_caches()
        columns.clear_map_cache()

    run_case("open/new", [("mlds-h5", lambda: open_first(readers["mlds-h5"]), 1, "first open in the process (layout cache cleared)"),
                          ("aselmdb", lambda: open_first(readers["aselmdb"]), 1, "")], first_open, short=True)
    run_case("open/cold", [(t, lambda t=t: open_first(readers[t]), 1, "page cache dropped (info)") for t in ("mlds-h5", "aselmdb")], cold)

    # ---- bulk
    pos_ref, frc_ref = np.load(paths.npy["positions"], mmap_mode="r"), np.load(paths.npy["forces"], mmap_mode="r")
    nbytes = pos_ref.nbytes + frc_ref.nbytes
    got = run_case("bulk", [(t, fn, n) for t, fn in (
        ("mlds-h5", lambda: bulk_mlds(paths.h5)), ("mlds-zarr", lambda: bulk_mlds(paths.zarr)), ("npy", lambda: bulk_npy(paths)))],
        short=True)
    for tool, (pos, frc) in got.items():
        if not (np.array_equal(pos, pos_ref) and np.array_equal(frc, frc_ref)):
            fails.append(f"bulk {tool}: arrays differ from the .npy reference")
    del got
    for r in results:
        if r.case == "bulk":
            r.note = f"{nbytes / r.time / 1e9:.2f} GB/s"

    # ---- table
    by = {(r.case, r.tool): r for r in results}
    print()
    print(f"=== {n:,} frames, {n_atoms:,} atoms, mlds HDF5 {ds_bytes / 1e6:,.1f} MB; median of {rep} passes per tool ({max(rep, SHORT_PASSES)} after a warm-up round for batch, open, open/new, bulk); {load()} at end ===")
    header = ["case", "tool", "items/s", "time/pass", "h5/tool", "zarr/tool", "note"]
    rows: list[list[str]] = []
    for case in ("write", "scan", "random", "cold", "per-open", "batch", "batch/cold", "open", "open/new", "open/cold", "bulk"):
        rs = [r for r in results if r.case == case]
        h5, zr = by.get((case, "mlds-h5")), by.get((case, "mlds-zarr"))
        for r in rs:
            mine = r.tool.startswith("mlds")
            rows.append([case, r.tool, fmt_rate(r.rate), fmt_time(r.time),
                         "" if mine or h5 is None else f"{h5.rate / r.rate:,.2f}x",
                         "" if mine or zr is None else f"{zr.rate / r.rate:,.2f}x", r.note])
        if rs:
            rows.append([])
    print_table(rows[:-1], header, right={2, 3, 4, 5})
    print()
    print("file sizes:")
    for tool, sz in sizes.items():
        print(f"  {tool:<10} {sz:>16,} B" + ("   (all arrays as .npy)" if tool == "npy" else ""))

    # ---- targets
    def rate(case: str, tool: str) -> float:
        return by[(case, tool)].rate

    def best_lmdb(case: str) -> float:
        return max(rate(case, t) for t in ("aselmdb", "aselmdb/get", "aselmdb/noRA") if (case, t) in by)

    big = ds_bytes >= 4 * cache_bytes
    print()
    print("targets (issue 12; mlds-h5 is judged, mlds-zarr shown; peers at their best configuration):")
    checks = [
        ("random single frames >= 10x aselmdb (page cache warm)", rate("random", "mlds-h5") / best_lmdb("random"), 10.0),
        ("random single frames >= 10x aselmdb, page cache dropped" + ("" if big else " [dataset < 4x cache]"),
         rate("cold", "mlds-h5") / best_lmdb("cold"), 10.0),
        (f"{po} random reads per open >= 10x aselmdb", rate("per-open", "mlds-h5") / best_lmdb("per-open"), 10.0),
        (f"batch of {bs} >= 0.5x raw .npy memmap gather", rate("batch", "mlds-h5") / rate("batch", "npy"), 0.5),
        ("open + first frame <= 2x aselmdb time", by[("open", "aselmdb")].time / by[("open", "mlds-h5")].time, 0.5),
        ("open + first frame, first open in the process, <= 2x aselmdb",
         by[("open/new", "aselmdb")].time / by[("open/new", "mlds-h5")].time, 0.5),
        ("bulk positions+forces >= 0.5x raw .npy", rate("bulk", "mlds-h5") / rate("bulk", "npy"), 0.5),
        ("zarr: bulk within 2x raw .npy time", rate("bulk", "mlds-zarr") / rate("bulk", "npy"), 0.5),
    ]
    if "extxyz" in peers:
        checks.append(("in-order scan >= 20x extxyz", rate("scan", "mlds-h5") / rate("scan", "extxyz"), 20.0))
        checks.append(("HDF5 size <= extxyz size (x = extxyz/h5 bytes)", sizes["extxyz"] / sizes["mlds-h5"], 1.0))
    target_fail = False
    for name, got, want in checks:
        ok = got >= want
        target_fail |= not ok
        print(f"  {'PASS' if ok else 'FAIL'}  {name:<62} {got:,.2f}x (need {want:g}x)")
    if "sqlite" in peers:  # the earlier >= 20x SQLite target was set against SQLite reconnecting per read
        print(f"  INFO  random single frames vs ASE SQLite inside `with db:` (earlier target 20x, set when it "
              f"reconnected per read): {rate('random', 'mlds-h5') / rate('random', 'sqlite'):,.2f}x")
    floor = rate("cold", "disk")
    print(f"  INFO  page-by-page floor with the page cache dropped: one random 4 KiB read per frame = {fmt_rate(floor)}/s "
          f"= {floor / best_lmdb('cold'):,.2f}x aselmdb; mlds-h5 cold = {rate('cold', 'mlds-h5') / floor:.2f}x it "
          f"(it streams whole chunks when the data fits in memory)")
    frame_floor = rate("cold", "disk/frame")
    print(f"  INFO  the same floor for the pages mlds' columns put a frame on (all of a frame's pages asked for at once, "
          f"no decoding) = {fmt_rate(frame_floor)}/s = {frame_floor / best_lmdb('cold'):,.2f}x aselmdb; "
          f"mlds-h5 cold = {rate('cold', 'mlds-h5') / frame_floor:.2f}x it")
    print("  zarr for information: " + ", ".join(
        f"{c} {rate(c, 'mlds-zarr') / best_lmdb(c):.1f}x aselmdb" for c in ("random", "cold", "per-open")))
    print()
    print("correctness:", "PASS" if not fails else "FAIL\n  " + "\n  ".join(fails))

    if args.json:
        args.json.write_text(json.dumps({
            "frames": n, "atoms": n_atoms, "seed": args.seed, "sizes": sizes, "cache_bytes": cache_bytes, "peers": peers,
            "results": [dict(case=r.case, tool=r.tool, n=r.n, times=r.times, scale=r.scale, note=r.note) for r in results],
            "targets": [dict(name=c[0], got=c[1], want=c[2]) for c in checks], "failures": fails,
        }, indent=1))
    if not args.keep:
        for p in paths.all(["mlds-h5", "mlds-zarr", *ALL_PEERS]) + [paths.stamp]:
            remove(p)
        try:
            work.rmdir()  # only if now empty
        except OSError:
            pass
    return 1 if fails or (args.strict and target_fail) else 0


def check_correctness(paths: Paths, peers: list[str], counts: np.ndarray, seed: int, idx: list[int]) -> list[str]:
    """Frame i from every format against the synthetic frame i; returns failure messages."""
    fails: list[str] = []

    def block_frame(i: int) -> Frame:
        b0 = (i // BLOCK) * BLOCK
        return make_block(counts[b0:b0 + BLOCK], b0, seed)[i - b0]

    def cmp(tool: str, ref: Frame, i: int, numbers, pos, frc, e, cell, atol: float) -> None:
        ok = (np.array_equal(np.asarray(numbers, dtype=np.int64), ref.numbers.astype(np.int64))
              and np.allclose(pos, ref.positions, rtol=0, atol=atol) and np.allclose(frc, ref.forces, rtol=0, atol=atol)
              and np.allclose(cell, ref.cell, rtol=0, atol=atol) and abs(e - ref.energy) <= atol * max(1.0, abs(ref.energy)))
        if not ok:
            fails.append(f"{tool} frame {i} differs from the synthetic frame")

    refs = {i: block_frame(i) for i in idx}
    with mlds.open(paths.h5) as h5, mlds.open(paths.zarr) as zr:
        for tool, ds in (("mlds-h5", h5), ("mlds-zarr", zr)):
            if len(ds) != len(counts):
                fails.append(f"{tool} has {len(ds)} frames, expected {len(counts)}")
            for i in idx:
                f = ds[i]
                cmp(tool, refs[i], i, f.numbers, f.positions, f.forces, f.energy, f.cell, 0.0)
                if not np.array_equal(f.stress, refs[i].stress):
                    fails.append(f"{tool} frame {i} stress differs")
            b = ds.batch(idx)
            for j, i in enumerate(idx):
                if not np.array_equal(b.positions[b.ptr[j]:b.ptr[j + 1]], refs[i].positions):
                    fails.append(f"{tool} batch: frame {i} differs")
    if "extxyz" in peers:
        for i in idx[:3]:  # extxyz stores floats as %16.8f text: equal to ~1e-8 absolute; O(file) per read
            a = ase.io.read(str(paths.extxyz), index=i, format="extxyz")
            cmp("extxyz", refs[i], i, a.numbers, a.positions, a.get_forces(), a.get_potential_energy(), a.cell[:], 1e-7)
    dbs = []
    if "sqlite" in peers:
        dbs.append(("sqlite", ase.db.connect(str(paths.sqlite)), lambda db, i: db.get(id=i + 1)))
    dbs.append(("aselmdb", lmdb_connect(paths.lmdb, readonly=True), lambda db, i: db._get_row_by_index(i)))
    for tool, db, get in dbs:
        for i in idx:
            row = get(db, i)
            cmp(tool, refs[i], i, row.numbers, row.positions, row.forces, row.energy, row.cell, 1e-12)
        if tool == "aselmdb":
            db.close()
    m = {k: np.load(p, mmap_mode="r") for k, p in paths.npy.items()}
    for i in idx:
        a, b = int(m["atom_offset"][i]), int(m["atom_offset"][i] + m["n_atoms"][i])
        cmp("npy", refs[i], i, m["numbers"][a:b], m["positions"][a:b], m["forces"][a:b], float(m["energy"][i]), m["cell"][i], 0.0)
    return fails


if __name__ == "__main__":
    sys.exit(main())
