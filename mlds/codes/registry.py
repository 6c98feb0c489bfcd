"""Registry of external training codes: where their programs are and how to build them.

Each code (n2p2 today, aenet later) is a :class:`CodeSpec` registered here.  Finding a
code's programs follows one order for every code, so users can always tell which binary
ran: ``MLDS_<CODE>_BIN`` (a folder), the ``prefix`` configured under ``[codes.<code>]``
in the mlds config (project over user), ``PATH``, then builds in the cache
(:func:`cache_dir`, newest first).

Builds are cached outside any checkout, keyed by the source tarball's sha256, under
``$MLDS_CODES_CACHE`` or ``$XDG_CACHE_HOME/mlds/codes`` (``~/.cache/mlds/codes``): building
n2p2 takes minutes, so a machine that built a release once never builds it again.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from mlds.errors import MldsError


class CodeError(MldsError):
    """A code's programs are missing, or it cannot be built here."""


@dataclass(frozen=True)
class CodeSpec:
    """One external code: its programs and how to build it."""

    name: str
    programs: tuple[str, ...]                   # the programs mlds needs from it
    description: str = ""
    default_source: str = ""                    # release URL used when no --source is given
    builder: Callable[..., "BuildResult"] | None = None
    version_of: Callable[[Path], str | None] | None = None
    aliases: tuple[str, ...] = field(default_factory=tuple)

    @property
    def env_var(self) -> str:
        return f"MLDS_{self.name.upper()}_BIN"


@dataclass
class BuildResult:
    code: str
    bin_dir: Path
    source_sha256: str
    cached: bool                                # True: an earlier build was reused
    info: dict[str, Any]


_CODES: dict[str, CodeSpec] = {}


def register(spec: CodeSpec) -> CodeSpec:
    _CODES[spec.name] = spec
    return spec


def get(name: str) -> CodeSpec:
    _load_builtin()
    key = name.strip().lower()
    for spec in _CODES.values():
        if key == spec.name or key in spec.aliases:
            return spec
    raise CodeError(f"unknown code {name!r} (known: {', '.join(sorted(_CODES))})")


def codes() -> list[CodeSpec]:
    _load_builtin()
    return [_CODES[k] for k in sorted(_CODES)]


def _load_builtin() -> None:
    if "n2p2" not in _CODES:
        import mlds.codes.n2p2  # noqa: F401  (registers itself)


# ----------------------------------------------------------------- cache
def cache_dir() -> Path:
    """Root of cached builds (not inside XDG_DATA_HOME: tests isolate that per test)."""
    env = os.environ.get("MLDS_CODES_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "mlds" / "codes"


def cached_builds(code: str) -> list[Path]:
    """Completed builds of ``code`` in the cache (folders with build.json), newest first."""
    root = cache_dir() / code
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if (p / "build.json").is_file() and (p / "bin").is_dir()]
    return sorted(found, key=lambda p: (p / "build.json").stat().st_mtime, reverse=True)


def read_build_info(build: Path) -> dict[str, Any]:
    try:
        return json.loads((build / "build.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


# ----------------------------------------------------------------- configuration
def configured_prefix(code: str) -> Path | None:
    """``[codes.<code>] prefix`` from the project config, else the user config."""
    from mlds.remotes.config import project_config_path, read_config, user_config_path

    for path in (project_config_path(), user_config_path()):
        if path is None:
            continue
        table = read_config(path).get("codes", {})
        entry = table.get(code) if isinstance(table, dict) else None
        if isinstance(entry, dict) and isinstance(entry.get("prefix"), str) and entry["prefix"]:
            return Path(entry["prefix"]).expanduser()
    return None


def set_configured_prefix(code: str, prefix: Path) -> Path:
    """Record ``[codes.<code>] prefix`` in the user config; returns the config file."""
    from mlds.remotes.config import read_config, user_config_path, write_config

    path = user_config_path()
    data = read_config(path)
    data.setdefault("codes", {}).setdefault(code, {})["prefix"] = str(Path(prefix).expanduser().resolve())
    write_config(path, data)
    return path


# ----------------------------------------------------------------- finding programs
@dataclass
class Located:
    code: str
    bin_dir: Path | None                         # None: programs found on PATH in different folders
    programs: dict[str, Path]
    origin: str                                  # "env", "config", "PATH", "cache"
    version: str | None = None


def _prefix_bin(prefix: Path) -> Path:
    return prefix / "bin" if (prefix / "bin").is_dir() else prefix


def _complete(folder: Path, programs: tuple[str, ...]) -> dict[str, Path] | None:
    out = {}
    for prog in programs:
        p = folder / prog
        if not (p.is_file() and os.access(p, os.X_OK)):
            return None
        out[prog] = p
    return out


def locate(code: str, programs: tuple[str, ...] | None = None) -> Located:
    """Where ``code``'s programs are; :class:`CodeError` in one line when any is missing."""
    spec = get(code)
    need = tuple(programs or spec.programs)
    env = os.environ.get(spec.env_var, "").strip()
    if env:
        folder = Path(env).expanduser()
        found = _complete(folder, need)
        if found is None:
            missing = [p for p in need if not (folder / p).is_file()]
            raise CodeError(f"{spec.env_var}={env} lacks {', '.join(missing) or 'executable ' + need[0]}; "
                            f"point it at a folder with the {spec.name} programs or unset it")
        return _located(spec, folder, found, "env")
    prefix = configured_prefix(spec.name)
    if prefix is not None:
        folder = _prefix_bin(prefix)
        found = _complete(folder, need)
        if found is not None:
            return _located(spec, folder, found, "config")
    on_path = {p: shutil.which(p) for p in need}
    if all(on_path.values()):
        progs = {k: Path(v) for k, v in on_path.items() if v}
        folders = {p.parent for p in progs.values()}
        return _located(spec, folders.pop() if len(folders) == 1 else None, progs, "PATH")
    for build in cached_builds(spec.name):
        found = _complete(build / "bin", need)
        if found is not None:
            return _located(spec, build / "bin", found, "cache")
    missing = [p for p, v in on_path.items() if not v]
    where = f"configured prefix {prefix}, " if prefix is not None else ""
    raise CodeError(f"{spec.name} program {missing[0]} not found ({spec.env_var}, {where}PATH, build cache "
                    f"{cache_dir() / spec.name}); run 'mlds codes build {spec.name}' or set {spec.env_var}")


def _located(spec: CodeSpec, folder: Path | None, programs: dict[str, Path], origin: str) -> Located:
    version = None
    if folder is not None and spec.version_of is not None:
        version = spec.version_of(folder)
    return Located(spec.name, folder, programs, origin, version)


def build(code: str, source: str | os.PathLike | None = None, *, prefix: str | os.PathLike | None = None,
          native: bool = False, jobs: int | None = None, force: bool = False,
          on_line: Callable[[str], None] | None = None) -> BuildResult:
    """Build ``code`` from a release tarball (path or URL) into the cache; optionally install to ``prefix``."""
    spec = get(code)
    if spec.builder is None:
        raise CodeError(f"mlds cannot build {spec.name} yet; install it and set {spec.env_var}")
    return spec.builder(source, prefix=None if prefix is None else Path(prefix), native=native, jobs=jobs,
                        force=force, on_line=on_line)
