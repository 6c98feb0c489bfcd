"""Building n2p2 (CompPhysVienna/n2p2) from its upstream release tarball.

We drive n2p2's own ``src/makefile`` (``COMP=gnu``, ``MODE=static``) and build only the
libraries and the four programs training needs (``nnp-scaling``, ``nnp-train``,
``nnp-predict``, ``nnp-dataset``), which saves most of the full build's time.  The only
change to upstream's flags: ``-march=native`` is dropped unless asked for, so the
binaries also run on other CPUs of a cluster (``PROJECT_CFLAGS=-O3 -std=c++11``).

Missing system packages are named in one line before anything is compiled (Debian
names; the same libraries exist under other names elsewhere).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import platform
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator

from mlds.codes.registry import BuildResult, CodeError, CodeSpec, cache_dir, register, set_configured_prefix
from mlds.util import sha256_file

VERSION = "2.3.0"
UPSTREAM_URL = f"https://github.com/CompPhysVienna/n2p2/archive/refs/tags/v{VERSION}.tar.gz"
PROGRAMS = ("nnp-scaling", "nnp-train", "nnp-predict", "nnp-dataset")
PORTABLE_CFLAGS = "-O3 -std=c++11"                  # upstream's makefile.gnu minus -march=native
NATIVE_CFLAGS = "-O3 -march=native -std=c++11"      # upstream's default


def _version_of(bin_dir: Path) -> str | None:
    info = bin_dir.parent / "build.json"
    if info.is_file():
        with contextlib.suppress(OSError, ValueError):
            return json.loads(info.read_text(encoding="utf-8")).get("version")
    return None


# ----------------------------------------------------------------- system check
def _lib_dirs() -> list[Path]:
    dirs: list[Path] = []
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["g++", "-print-search-dirs"], capture_output=True, text=True, timeout=30).stdout
        for line in out.splitlines():
            if line.startswith("libraries:"):
                dirs += [Path(p) for p in line.split("=", 1)[1].split(":") if p]
    for extra in os.environ.get("LIBRARY_PATH", "").split(":") + ["/usr/lib", "/usr/local/lib",
                                                                  "/usr/lib/x86_64-linux-gnu"]:
        if extra:
            dirs.append(Path(extra))
    return dirs


def _include_dirs() -> list[Path]:
    dirs = [Path(p) for p in (os.environ.get("CPATH", "") + ":" + os.environ.get("CPLUS_INCLUDE_PATH", "")).split(":") if p]
    return dirs + [Path("/usr/include"), Path("/usr/local/include")]


def _has_lib(name: str, lib_dirs: list[Path]) -> bool:
    return any((d / f"lib{name}.so").exists() or (d / f"lib{name}.a").exists() for d in lib_dirs)


def _mpi_header() -> bool:
    try:
        out = subprocess.run(["mpic++", "--showme:incdirs"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return any((Path(d) / "mpi.h").is_file() for d in out.split())


def eigen_dir() -> Path | None:
    for d in _include_dirs():
        if (d / "eigen3" / "Eigen" / "Core").is_file():
            return d / "eigen3"
        if (d / "Eigen" / "Core").is_file():
            return d
    return None


def missing_packages() -> list[str]:
    """Debian packages whose files the n2p2 build needs and cannot find (empty: all there)."""
    missing: list[str] = []

    def need(ok: bool, pkg: str) -> None:
        if not ok and pkg not in missing:
            missing.append(pkg)

    need(shutil.which("make") is not None, "make")
    need(shutil.which("g++") is not None, "g++")
    need(shutil.which("mpic++") is not None, "openmpi-bin")
    need(shutil.which("mpic++") is not None and _mpi_header(), "libopenmpi-dev")
    libs = _lib_dirs()
    need(any((d / "gsl" / "gsl_rng.h").is_file() for d in _include_dirs()) and _has_lib("gsl", libs), "libgsl-dev")
    need(_has_lib("blas", libs), "libblas-dev")
    need(eigen_dir() is not None, "libeigen3-dev")
    return missing


def check_system() -> None:
    """Raise one line naming every missing package, before any compiling starts."""
    missing = missing_packages()
    if missing:
        raise CodeError(f"cannot build n2p2: missing system packages {', '.join(missing)} "
                        f"(Debian/Ubuntu: sudo apt-get install {' '.join(missing)})")


# ----------------------------------------------------------------- source
def _fetch(source: str, on_line: Callable[[str], None] | None) -> Path:
    """A local tarball for ``source`` (a path, or an http(s) URL downloaded into the cache)."""
    if re.match(r"^https?://", source):
        import httpx

        downloads = cache_dir() / "downloads"
        downloads.mkdir(parents=True, exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9._-]", "_", source.rstrip("/").rsplit("/", 1)[-1]) or "source.tar.gz"
        target = downloads / f"n2p2-{name}"
        if target.is_file():
            return target
        if on_line:
            on_line(f"downloading {source}")
        fd, tmp = tempfile.mkstemp(dir=downloads, suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out, httpx.stream("GET", source, follow_redirects=True, timeout=60) as r:
                if r.status_code != 200:
                    raise CodeError(f"cannot download {source}: HTTP {r.status_code}")
                for block in r.iter_bytes(1 << 20):
                    out.write(block)
            os.replace(tmp, target)
        except httpx.HTTPError as err:
            raise CodeError(f"cannot download {source}: {err}") from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        return target
    path = Path(source).expanduser()
    if not path.is_file():
        raise CodeError(f"n2p2 source {source}: no such file (give a release .tar.gz or its URL)")
    return path


def _extract(tarball: Path, dest: Path) -> Path:
    """Unpack and return the folder that holds ``src/makefile``."""
    try:
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}  # Python >= 3.11.4: no escaping paths
        with tarfile.open(tarball) as tf:
            tf.extractall(dest, **safe)
    except (tarfile.TarError, OSError) as err:
        raise CodeError(f"{tarball}: not a readable source tarball ({err})") from None
    for mk in sorted(dest.glob("*/src/makefile")) + sorted(dest.glob("src/makefile")):
        return mk.parent.parent
    raise CodeError(f"{tarball}: no src/makefile inside; is this an n2p2 release?")


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    """One build per key at a time (several shells or test sessions may share the cache)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def default_jobs() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


# ----------------------------------------------------------------- build
def build(source: str | os.PathLike | None = None, *, prefix: Path | None = None, native: bool = False,
          jobs: int | None = None, force: bool = False,
          on_line: Callable[[str], None] | None = None) -> BuildResult:
    """Build (or reuse from the cache) n2p2 from ``source`` (default: the upstream v2.3.0 release)."""
    src = os.fspath(source) if source is not None else os.environ.get("MLDS_N2P2_SOURCE") or UPSTREAM_URL
    tarball = _fetch(src, on_line)
    digest = sha256_file(tarball)
    key = f"{digest[:16]}-{'native' if native else 'portable'}"
    root = cache_dir() / "n2p2"
    final = root / key
    with _lock(root / f".{key}.lock"):
        cached = (final / "build.json").is_file() and not force
        if not cached:
            check_system()
            _build_into(tarball, digest, final, native=native, jobs=jobs or default_jobs(), on_line=on_line)
        info = json.loads((final / "build.json").read_text(encoding="utf-8"))
    bin_dir = final / "bin"
    if prefix is not None:
        bin_dir = _install(final, prefix)
        info = {**info, "installed_to": str(bin_dir)}
    return BuildResult("n2p2", bin_dir, digest, cached, info)


def _build_into(tarball: Path, digest: str, final: Path, *, native: bool, jobs: int,
                on_line: Callable[[str], None] | None) -> None:
    final.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".build", dir=final.parent))
    try:
        tree = _extract(tarball, work / "src")
        for d in ("bin", "lib", "include"):
            (tree / d).mkdir(exist_ok=True)
        cflags = NATIVE_CFLAGS if native else PORTABLE_CFLAGS
        eigen = eigen_dir()
        # run in src/ (not `make -C`): -C turns on --print-directory, whose "Entering directory" lines
        # end up inside the makefile's $(shell make list-...) target lists and break them
        cmd = ["make", "--no-print-directory", f"-j{jobs}", "COMP=gnu", "MODE=static",
               f"PROJECT_CFLAGS={cflags}", *([f"PROJECT_EIGEN={eigen}/"] if eigen else []), *PROGRAMS]
        env = dict(os.environ)
        # the makefile stamps `git describe` into version.h: never describe an unrelated outer repository
        env.update(GIT_DIR=str(work / "no-git"), GIT_CEILING_DIRECTORIES=str(work), LC_ALL="C")
        log_path = work / "build.log"
        t0 = time.monotonic()
        if on_line:
            on_line(f"building n2p2 ({' '.join(cmd[2:5])} {cflags}) in {work}")
        with open(log_path, "w", encoding="utf-8") as log:
            log.write(" ".join(cmd) + "\n")
            log.flush()
            proc = subprocess.Popen(cmd, cwd=tree / "src", stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    text=True, errors="replace", env=env)
            assert proc.stdout is not None
            last = ""
            for line in proc.stdout:
                log.write(line)
                if line.strip():
                    last = line.strip()
                if on_line and re.search(r"\s-o\s+\S+\.(o|a)\b|\bcp\s", line):
                    m = re.search(r"-o\s+(\S+)", line)
                    on_line(f"  {m.group(1) if m else line.strip()[:80]}")
            rc = proc.wait()
        if rc != 0:
            kept = final.parent / f"{final.name}.failed.log"
            shutil.copy(log_path, kept)
            raise CodeError(f"n2p2 build failed (make exit {rc}): {last[:200]} — full log {kept}")
        stage = work / "result"
        (stage / "bin").mkdir(parents=True)
        for prog in PROGRAMS:
            shutil.copy2(tree / "bin" / prog, stage / "bin" / prog)
        shutil.copy(log_path, stage / "build.log")
        info = {
            "code": "n2p2",
            "version": _tree_version(tree) or VERSION,
            "source": str(tarball),
            "source_sha256": digest,
            "cflags": cflags,
            "programs": list(PROGRAMS),
            "jobs": jobs,
            "seconds": round(time.monotonic() - t0, 1),
            "built": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "host": platform.node(),
            "machine": platform.machine(),
        }
        (stage / "build.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        if final.exists():  # --force rebuild: replace our own earlier build
            shutil.rmtree(final)
        os.replace(stage, final)
        (final.parent / f"{final.name}.failed.log").unlink(missing_ok=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _tree_version(tree: Path) -> str | None:
    with contextlib.suppress(OSError):
        m = re.search(r'N2P2_VERSION\s+"v?([^"]+)"', (tree / "src" / "libnnp" / "version.h").read_text())
        if m:
            return m.group(1)
    return None


def _install(build_dir: Path, prefix: Path) -> Path:
    """Copy the programs to ``prefix/bin`` (refusing to overwrite different files) and record the prefix."""
    target = prefix.expanduser().resolve() / "bin"
    target.mkdir(parents=True, exist_ok=True)
    for prog in PROGRAMS:
        src, dst = build_dir / "bin" / prog, target / prog
        if dst.exists() and sha256_file(dst) != sha256_file(src):
            raise CodeError(f"{dst} exists and differs from this build; remove it or choose another --prefix")
    for prog in PROGRAMS:
        shutil.copy2(build_dir / "bin" / prog, target / prog)
    shutil.copy2(build_dir / "build.json", target.parent / "build.json")
    set_configured_prefix("n2p2", target.parent)
    return target


SPEC = register(CodeSpec(
    name="n2p2",
    programs=PROGRAMS,
    description="n2p2 high-dimensional neural network potentials (Behler-Parrinello), GPL-3.0",
    default_source=UPSTREAM_URL,
    builder=build,
    version_of=_version_of,
))
