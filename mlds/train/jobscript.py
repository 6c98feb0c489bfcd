#!/usr/bin/env python3
"""mlds n2p2 training job: every step after the export, with the standard library only.

This file is copied verbatim into each run folder as ``mlds_job.py`` and started by
``job.sh``; the machine that runs it needs only the n2p2 programs, an MPI launcher and
``python3`` (no mlds, no numpy).  mlds imports the same module to read results back
(learning curve, best epoch, divergence), so the job and ``mlds.train.finish`` can never
disagree about them.

Environment:
  MLDS_N2P2_BIN      folder holding nnp-scaling and nnp-train (empty: PATH)
  MLDS_MPIRUN        launcher prefix, e.g. "mpirun -np 4" or "srun" (empty: run serially)
  MLDS_THREADS       OpenMP threads per rank (OMP_NUM_THREADS)
  MLDS_RESUME=1      continue an interrupted run from its last saved epoch
  MLDS_MEMORY_LIMIT  bytes the symmetry functions may use (default: MemAvailable here,
                     unchecked under srun where the scheduler owns the memory)

Steps (each in its own folder under ``steps/``, skipped when already done):
  1. scaling-full  nnp-scaling with every generated symmetry function
  2. prune         comment out the functions that are constant over the data (else
                   nnp-train's errors are NaN and it still exits 0), n2p2's memory estimate
  3. scaling       nnp-scaling again with the pruned set: the scaling.data of the potential
  4. train         nnp-train in segments: segment k+1 starts from the last epoch segment k
                   saved (weights every epoch), with the normalisation segment 0 computed
Progress goes to stdout, one line per event; the final state goes to ``mlds-job.json``:
``{"state": "running"|"done"|"failed", "step": ..., "message": ..., ...}``.
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

STATE_FILE = "mlds-job.json"
RUN_FILE = "run.json"
STEPS = ("scaling-full", "prune", "scaling", "train")
CURVE = "learning-curve.out"
# learning-curve.out columns mlds uses (physical units of the training data)
E_TRAIN, E_TEST, F_TRAIN, F_TEST = "RMSEpa_Etrain_pu", "RMSEpa_Etest_pu", "RMSE_Ftrain_pu", "RMSE_Ftest_pu"
_EPOCH_LINE = re.compile(
    r"^epoch (?P<epoch>\d+)/(?P<epochs>\d+)\s+energy RMSE/atom train (?P<e_train>\S+) test (?P<e_test>\S+) eV/atom"
    r"\s+force RMSE train (?P<f_train>\S+) test (?P<f_test>\S+) eV/Å$")


class JobError(Exception):
    """A step failed; the message is the one line users see."""

    def __init__(self, step: str, message: str):
        self.step = step
        super().__init__(message)


# ----------------------------------------------------------------- shared readers (also used by mlds)
def read_curve(path: "str | os.PathLike") -> list[dict[str, float]]:
    """Rows of an n2p2 learning-curve.out, keyed by the column names of its header."""
    names: list[str] = []
    rows: list[dict[str, float]] = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if line.startswith("#"):
                parts = line[1:].split()
                if parts and parts[0] == "epoch":
                    names = parts
                continue
            parts = line.split()
            if not parts or not names or len(parts) != len(names) or not line.endswith("\n"):
                continue  # a row still being written
            row = {}
            for k, v in zip(names, parts):
                try:
                    row[k] = float(v)
                except ValueError:
                    row[k] = math.nan
            rows.append(row)
    return rows


def read_segments(train_dir: Path) -> list[dict]:
    segs = []
    for d in sorted(train_dir.glob("seg*")):
        info = d / "segment.json"
        if info.is_file():
            segs.append({**json.loads(info.read_text()), "dir": d})
    return sorted(segs, key=lambda s: s["index"])


def stitched_curve(train_dir: "str | os.PathLike") -> list[dict[str, float]]:
    """The whole learning curve across resumed segments, with global epoch numbers and ``_seg``."""
    out: list[dict[str, float]] = []
    for seg in read_segments(Path(train_dir)):
        path = seg["dir"] / CURVE
        if not path.is_file():
            continue
        for row in read_curve(path):
            local = int(row["epoch"])
            if seg["index"] > 0 and local == 0:
                continue  # the restart re-evaluates the epoch it started from
            out.append({**row, "epoch": float(seg["offset"] + local), "_seg": float(seg["index"]),
                        "_local": float(local)})
    return out


def divergence(rows: list[dict[str, float]], factor: float) -> str | None:
    """Why the curve shows a failed training (NaN, inf, growth beyond ``factor`` x epoch 0), or None."""
    cols = (E_TRAIN, E_TEST, F_TRAIN, F_TEST)
    first: dict[str, float] = {}
    for row in rows:
        for c in cols:
            if c not in row:
                continue
            v = row[c]
            what = c.replace("RMSEpa_E", "energy RMSE/atom ").replace("RMSE_F", "force RMSE ").replace("_pu", "")
            if not math.isfinite(v):
                hint = (" (a symmetry function constant over the data, or no neighbours within the cutoff?)"
                        if int(row["epoch"]) == 0 else " (try a smaller kalman_eta / learning rate)")
                return f"NaN/inf {what} at epoch {int(row['epoch'])}{hint}"
            if c not in first:
                first[c] = v
            elif factor > 0 and first[c] > 0 and v > factor * first[c]:
                return (f"training diverged at epoch {int(row['epoch'])}: {what} {v:.4g} is more than {factor:g} x "
                        f"its epoch-0 value {first[c]:.4g} (try a smaller kalman_eta / learning rate)")
    return None


def best_epoch(rows: list[dict[str, float]], metric: str = "combined") -> dict[str, float]:
    """The row with the lowest test error (epoch 0, the untrained network, only if alone).

    ``combined`` minimises E_test/E_test(0) + F_test/F_test(0), weighing energy and force
    errors by how far each started; ``energy`` or ``force`` use one of them.
    """
    if not rows:
        raise ValueError("empty learning curve")
    cand = [r for r in rows if int(r["epoch"]) > 0] or rows
    e0 = rows[0].get(E_TEST, 1.0) or 1.0
    f0 = rows[0].get(F_TEST, 1.0) or 1.0

    def score(r: dict[str, float]) -> float:
        if metric == "energy":
            return r[E_TEST]
        if metric == "force":
            return r.get(F_TEST, r[E_TEST])
        return r[E_TEST] / e0 + (r[F_TEST] / f0 if F_TEST in r else 0.0)

    return min(cand, key=lambda r: (score(r), r["epoch"]))


def format_epoch(epoch: int, epochs: int, row: dict[str, float], e_per_ev: float, l_per_a: float) -> str:
    """One progress line (errors converted to eV and eV/Å); :func:`parse_progress` reads it back."""
    f_conv = e_per_ev / l_per_a
    return (f"epoch {epoch}/{epochs}  energy RMSE/atom train {row[E_TRAIN] / e_per_ev:.4e} test "
            f"{row[E_TEST] / e_per_ev:.4e} eV/atom  force RMSE train {row.get(F_TRAIN, math.nan) / f_conv:.4e} "
            f"test {row.get(F_TEST, math.nan) / f_conv:.4e} eV/Å")


def parse_progress(line: str) -> dict | None:
    """The epoch event in a progress line of this job, or None."""
    m = _EPOCH_LINE.match(line.strip())
    if not m:
        return None
    d = m.groupdict()
    return {"epoch": int(d["epoch"]), "epochs": int(d["epochs"]),
            **{k: float(d[k]) for k in ("e_train", "e_test", "f_train", "f_test")}}


def weights_files(folder: Path, numbers: list[int], epoch: int) -> list[Path]:
    return [folder / f"weights.{z:03d}.{epoch:06d}.out" for z in numbers]


def completed_epoch(seg_dir: Path, numbers: list[int]) -> int | None:
    """Last local epoch of a segment with both its learning-curve row and all weights files."""
    path = seg_dir / CURVE
    if not path.is_file():
        return None
    done = None
    for row in read_curve(path):
        e = int(row["epoch"])
        if all(p.is_file() for p in weights_files(seg_dir, numbers, e)):
            done = e
    return done


def scaling_ranges(path: Path) -> dict[tuple[int, int], tuple[float, float]]:
    """(element index, function index) -> (min, max) from an n2p2 scaling.data."""
    out = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            parts = line.split()
            if len(parts) >= 6 and not line.startswith("#"):
                out[(int(parts[0]), int(parts[1]))] = (float(parts[2]), float(parts[3]))
    return out


def symfunc_lines_from_log(log: Path, elements_by_z: list[str]) -> dict[tuple[int, int], int]:
    """(element index, function index) -> 1-based line of input.nn, from n2p2's setup table.

    n2p2 sorts each element's functions internally, so the index in scaling.data is not
    the order in input.nn; its log prints both (columns ``ind`` and ``ln``).
    """
    out: dict[tuple[int, int], int] = {}
    el_index = {e: i + 1 for i, e in enumerate(elements_by_z)}
    current = None
    head = re.compile(r"^Short range atomic symmetry functions element\s+(\S+)\s*:")
    with open(log, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            m = head.match(line)
            if m:
                current = el_index.get(m.group(1))
                continue
            if current is None:
                continue
            parts = line.split()
            if parts and parts[0].isdigit() and parts[-1].isdigit() and len(parts) > 5:
                out[(current, int(parts[0]))] = int(parts[-1])
            elif line.startswith("***"):
                current = None
    return out


def memory_estimate(log: Path) -> int | None:
    """n2p2's estimate (bytes) of training memory with memorize_symfunc_results, from nnp-scaling's log."""
    if not log.is_file():
        return None
    m = re.search(r"Memory for all structures\s*:\s*(\d+) bytes", log.read_text(errors="replace"))
    return int(m.group(1)) if m else None


# ----------------------------------------------------------------- the job
class Job:
    def __init__(self, folder: Path):
        self.dir = folder
        self.run = json.loads((folder / RUN_FILE).read_text(encoding="utf-8"))
        self.cfg = self.run["job"]
        self.numbers = [int(z) for z in self.cfg["numbers"]]          # atomic numbers, ascending
        self.elements = list(self.cfg["elements"])                     # symbols in the same order
        self.bin = os.environ.get("MLDS_N2P2_BIN", "").strip()
        self.launcher = shlex.split(os.environ.get("MLDS_MPIRUN", "").strip())
        self.resume = os.environ.get("MLDS_RESUME", "").strip() in ("1", "yes", "true")
        self.child: subprocess.Popen | None = None
        self.step = "start"
        self.t0 = time.time()

    # --- state and output
    def say(self, text: str) -> None:
        print(text, flush=True)

    def write_state(self, state: str, message: str = "", **extra) -> None:
        data = {"state": state, "step": self.step, "message": message, "host": socket.gethostname(),
                "pid": os.getpid(), "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "seconds": round(time.time() - self.t0, 1), **extra}
        old = self._state()
        if old.get("first_started"):
            data.setdefault("first_started", old["first_started"])
        else:
            data.setdefault("first_started", data["updated"])
        data["attempts"] = old.get("attempts", 0) + (1 if state == "running" and self.step == "start" else 0)
        tmp = self.dir / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, self.dir / STATE_FILE)

    def _state(self) -> dict:
        try:
            return json.loads((self.dir / STATE_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    # --- running programs
    def program(self, name: str) -> str:
        if self.bin:
            path = Path(self.bin) / name
            if not (path.is_file() and os.access(path, os.X_OK)):
                raise JobError(self.step, f"{name} not found in MLDS_N2P2_BIN={self.bin}")
            return str(path)
        found = shutil.which(name)
        if not found:
            raise JobError(self.step, f"{name} not found on PATH; set MLDS_N2P2_BIN to the folder of the n2p2 programs")
        return found

    def env(self) -> dict:
        env = dict(os.environ)
        if os.environ.get("MLDS_THREADS"):
            env["OMP_NUM_THREADS"] = os.environ["MLDS_THREADS"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:  # Open MPI refuses root otherwise
            env.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
            env.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        return env

    def start(self, folder: Path, args: list[str], log_name: str) -> subprocess.Popen:
        cmd = self.launcher + args
        out = open(folder / log_name, "w", encoding="utf-8")
        try:
            self.child = subprocess.Popen(cmd, cwd=folder, stdout=out, stderr=subprocess.STDOUT, env=self.env(),
                                          start_new_session=True)
        except OSError as err:
            raise JobError(self.step, f"cannot start {' '.join(cmd)}: {err.strerror or err}") from None
        finally:
            out.close()
        return self.child

    def stop_child(self) -> None:
        p = self.child
        if p is not None and p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait()
        self.child = None

    def run_program(self, folder: Path, args: list[str], log_name: str) -> None:
        p = self.start(folder, args, log_name)
        rc = p.wait()
        self.child = None
        if rc != 0:
            raise JobError(self.step, f"{Path(args[0]).name} exited with {rc}: {last_line(folder / log_name)}")

    # --- step folders
    def step_dir(self, name: str) -> Path:
        return self.dir / "steps" / name

    def fresh(self, folder: Path) -> Path:
        """An empty step folder; leftovers of an interrupted attempt (ours) are removed."""
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        return folder

    def link_data(self, folder: Path) -> None:
        target = folder / "input.data"
        try:
            os.symlink(os.path.relpath(self.dir / "input.data", folder), target)
        except OSError:
            shutil.copy(self.dir / "input.data", target)

    def done(self, name: str) -> bool:
        return (self.step_dir(name) / ".done").is_file()

    def mark_done(self, name: str) -> None:
        (self.step_dir(name) / ".done").write_text(time.strftime("%Y-%m-%dT%H:%M:%S%z") + "\n")

    # --- steps
    def scaling(self, name: str, input_nn: Path) -> Path:
        folder = self.fresh(self.step_dir(name))
        shutil.copy(input_nn, folder / "input.nn")
        self.link_data(folder)
        self.say(f"step {name}: nnp-scaling on {self.cfg['n_frames']} frames")
        self.run_program(folder, [self.program("nnp-scaling"), str(self.cfg.get("scaling_bins", 100))], "stdout.log")
        if not (folder / "scaling.data").is_file():
            raise JobError(self.step, f"nnp-scaling wrote no scaling.data: {last_line(folder / 'stdout.log')}")
        for junk in list(folder.glob("sf.*.histo")) + [folder / "function.data"]:
            junk.unlink(missing_ok=True)  # per-function histograms and all values: large, unused
        self.mark_done(name)
        return folder

    def prune(self) -> Path:
        src = self.step_dir("scaling-full")
        folder = self.fresh(self.step_dir("prune"))
        ranges = scaling_ranges(src / "scaling.data")
        where = symfunc_lines_from_log(src / "nnp-scaling.log.0000", self.elements)
        threshold = float(self.cfg.get("prune_threshold", 1e-10))
        lines = (src / "input.nn").read_text(encoding="utf-8").splitlines()
        pruned: dict[str, list[str]] = {}
        kept: dict[str, int] = {e: 0 for e in self.elements}
        for (ei, fi), (lo, hi) in sorted(ranges.items()):
            el = self.elements[ei - 1]
            ln = where.get((ei, fi))
            if ln is None:
                raise JobError(self.step, f"cannot match symmetry function {fi} of {el} to a line of input.nn "
                               "(unexpected nnp-scaling log format)")
            if hi - lo <= threshold:
                pruned.setdefault(el, []).append(lines[ln - 1].strip())
                lines[ln - 1] = f"# pruned, constant {lo:.6g} over the data: {lines[ln - 1].strip()}"
            else:
                kept[el] += 1
        empty = [e for e, n in kept.items() if n == 0]
        if empty:
            raise JobError(self.step, f"every symmetry function of {', '.join(empty)} is constant over the data "
                           "(no neighbours within the cutoff?); increase the cutoff or add structures")
        (folder / "input.nn").write_text("\n".join(lines) + "\n", encoding="utf-8")
        n = sum(len(v) for v in pruned.values())
        (folder / "prune.json").write_text(json.dumps({"threshold": threshold, "pruned": pruned, "kept": kept},
                                                      indent=2) + "\n")
        self.say(f"step prune: {n} constant symmetry function(s) removed, kept "
                 + ", ".join(f"{e} {k}" for e, k in kept.items()))
        self.mark_done("prune")
        return folder

    def check_memory(self) -> None:
        need = memory_estimate(self.step_dir("scaling") / "nnp-scaling.log.0000")
        if need is None:
            return
        limit_env = os.environ.get("MLDS_MEMORY_LIMIT", "").strip()
        limit = int(float(limit_env)) if limit_env else int(float(self.cfg.get("memory_limit_gib") or 0) * 2**30)
        if not limit and not any("srun" in Path(t).name for t in self.launcher[:1]):
            limit = mem_available()
        gib = need / 2**30
        self.say(f"step scaling: n2p2 estimates {gib:.2f} GiB to keep symmetry functions in memory")
        if limit and need > limit:
            raise JobError(self.step, f"training needs ~{gib:.2f} GiB for symmetry functions in memory (n2p2's "
                           f"estimate) but only {limit / 2**30:.2f} GiB are available: run with more MPI ranks on "
                           "more nodes, on a machine with more memory, on fewer frames, or set "
                           "n2p2.memorize_symfunc_results = false (slower)")

    def train(self) -> None:
        total = int(self.cfg["epochs"])
        train_dir = self.dir / "steps" / "train"
        train_dir.mkdir(parents=True, exist_ok=True)
        factor = float(self.cfg.get("divergence_factor", 10.0))
        while True:
            segs = read_segments(train_dir)
            while segs and completed_epoch(segs[-1]["dir"], self.numbers) is None:
                shutil.rmtree(segs[-1]["dir"])  # died before its first saved epoch: redo it
                segs.pop()
            if segs:
                last = segs[-1]
                done_epochs = last["offset"] + completed_epoch(last["dir"], self.numbers)
                if done_epochs >= total:
                    return
                seg = self.new_segment(train_dir, len(segs), done_epochs, total, last)
            else:
                seg = self.new_segment(train_dir, 0, 0, total, None)
            self.run_segment(seg, total, factor)

    def new_segment(self, train_dir: Path, index: int, offset: int, total: int, prev: dict | None) -> dict:
        folder = self.fresh(train_dir / f"seg{index:03d}")
        self.link_data(folder)
        shutil.copy(self.step_dir("scaling") / "scaling.data", folder / "scaling.data")
        if prev is None:
            text = (self.step_dir("prune") / "input.nn").read_text(encoding="utf-8")
        else:
            # continue from the normalised settings segment 0 wrote, without normalising again
            text = (prev["dir"] / "input.nn").read_text(encoding="utf-8")
            if "mean_energy" not in text:
                raise JobError(self.step, f"{prev['dir']}/input.nn lacks n2p2's normalisation header; cannot resume")
            text = "\n".join(ln for ln in text.splitlines() if not ln.split()[:1] == ["normalize_data_set"]) + "\n"
            text += "use_old_weights_short\n"
            e = completed_epoch(prev["dir"], self.numbers)
            for z, src in zip(self.numbers, weights_files(prev["dir"], self.numbers, e)):
                shutil.copy(src, folder / f"weights.{z:03d}.data")
            self.say(f"step train: resuming at epoch {offset} from {prev['dir'].name} (optimizer state restarts)")
        text = re.sub(r"(?m)^epochs\s+\S+.*$", f"epochs {total - offset}", text)
        (folder / "input.nn").write_text(text, encoding="utf-8")
        seg = {"index": index, "offset": offset, "epochs": total - offset}
        (folder / "segment.json").write_text(json.dumps(seg) + "\n")
        return {**seg, "dir": folder}

    def run_segment(self, seg: dict, total: int, factor: float) -> None:
        folder = seg["dir"]
        e_per_ev = float(self.cfg["energy_per_eV"])
        l_per_a = float(self.cfg["length_per_angstrom"])
        if seg["index"] == 0:
            self.say(f"step train: nnp-train, {total} epochs")
        p = self.start(folder, [self.program("nnp-train")], "stdout.log")
        seen = 0
        train_dir = folder.parent
        while True:
            finished = p.poll() is not None
            rows = stitched_curve(train_dir)
            for row in rows[seen:]:
                epoch = int(row["epoch"])
                self.say(format_epoch(epoch, total, row, e_per_ev, l_per_a))
            seen = max(seen, len(rows))
            why = divergence(rows, factor)
            if why:
                self.stop_child()
                raise JobError(self.step, why)
            if finished:
                break
            try:
                p.wait(timeout=0.5)  # wakes at once when nnp-train ends
            except subprocess.TimeoutExpired:
                pass
        rc = p.returncode
        self.child = None
        if rc != 0:
            raise JobError(self.step, f"nnp-train exited with {rc}: {last_line(folder / 'stdout.log')}")
        done = completed_epoch(folder, self.numbers)
        if done is None or seg["offset"] + done < total:
            raise JobError(self.step, f"nnp-train stopped at epoch {seg['offset'] + (done or 0)} of {total} without an "
                           f"error code: {last_line(folder / 'stdout.log')}")

    def main(self) -> int:
        prev = self._state()
        if prev.get("state") == "done":
            self.say("already done (mlds-job.json); nothing to run")
            return 0
        started_before = (self.dir / "steps").exists()
        if started_before and not self.resume:
            self.say(f"error: {self.dir}/steps exists from an earlier attempt; set MLDS_RESUME=1 to continue it")
            return 3
        self.step = "start"
        self.write_state("running", "started" if not started_before else "resumed")
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        try:
            for name in STEPS:
                self.step = name
                self.write_state("running", f"step {name}")
                if name in ("scaling-full", "prune", "scaling") and self.done(name):
                    continue
                if name == "scaling-full":
                    self.scaling(name, self.dir / "input.nn")
                elif name == "prune":
                    self.prune()
                elif name == "scaling":
                    self.scaling(name, self.step_dir("prune") / "input.nn")
                    self.check_memory()
                else:
                    self.train()
        except JobError as err:
            self.stop_child()
            self.write_state("failed", str(err))
            self.say(f"error: {err}")
            return 1
        rows = stitched_curve(self.dir / "steps" / "train")
        best = best_epoch(rows, self.cfg.get("best_epoch", "combined"))
        self.step = "train"
        self.write_state("done", f"trained {int(rows[-1]['epoch'])} epochs; best test error at epoch "
                         f"{int(best['epoch'])}", epochs=int(rows[-1]["epoch"]), best_epoch=int(best["epoch"]))
        self.say(f"done: best test error at epoch {int(best['epoch'])} of {int(rows[-1]['epoch'])}")
        return 0

    def _on_signal(self, signum, frame) -> None:
        self.stop_child()
        name = signal.Signals(signum).name
        self.write_state("failed", f"stopped by {name} during step {self.step}; run job.sh again with MLDS_RESUME=1 "
                         "to continue from the last saved epoch", signal=name)
        self.say(f"error: stopped by {name}")
        sys.exit(128 + signum)


def last_line(path: Path) -> str:
    """The most telling line of a program's output: n2p2's ERROR line, a C++ exception, else the last line."""
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "(no output)"
    lines = [ln for ln in lines if not re.match(r"^\[[^\]]+:\d+\]", ln)]  # Open MPI's crash backtrace
    for pattern in (r"^ERROR", r"what\(\):", r"^terminate called", r"error", r"^WARNING"):
        for ln in reversed(lines):
            if re.search(pattern, ln, flags=0 if pattern.startswith("^") else re.IGNORECASE):
                return ln[:300]
    return lines[-1][:300] if lines else "(no output)"


def mem_available() -> int:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def main(argv: list[str] | None = None) -> int:
    folder = Path(os.environ.get("MLDS_RUN_DIR") or Path(__file__).resolve().parent)
    if not (folder / RUN_FILE).is_file():
        print(f"error: {folder}/{RUN_FILE} not found; run this from an mlds training run folder", flush=True)
        return 2
    return Job(folder).main()


if __name__ == "__main__":
    sys.exit(main())
