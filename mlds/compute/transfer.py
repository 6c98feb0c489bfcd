"""Moving a run folder's inputs to a machine, and its results back.

Uploads are content-addressed: every input goes once into
``<workdir>/objects/sha256/ab/cdef...`` (written under a temporary name and
renamed, so a cut-off upload never leaves a partial object) and is then
*copied* on the machine into the job folder.  A re-run with the same data
uploads nothing new - the exported ``input.data`` is usually the only large
file, and it is identical between runs on the same dataset version.  Copies,
not hard links: a job may rewrite an input in place (n2p2's pruning edits
``input.nn``), which must never change the stored object.

Results come back file by file into the local run folder.  A local file is
only replaced when it does not exist, is identical, or was written by an
earlier fetch of the same job (never a file mlds did not create, unless
``force``).
"""

from __future__ import annotations

import fnmatch
import os
import posixpath
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable

from mlds.compute.errors import JobError, MachineError
from mlds.compute.transport import Connection
from mlds.util import atomic_path, sha256_file

OBJECTS = "objects/sha256"
# files dpdispatcher keeps next to the task (named by its 40-hex job or task
# hash), and our own temporaries: never results
_INTERNAL = re.compile(r"^(\.?[0-9a-f]{40}(_[a-z_]+|\.out|\.sub|\.sub\.run|_job\.json)|\..*\.part)$")
# what mlds and the job write that is not an input of the next run
RUN_FILES = ("mlds-job.json", "mlds-job.log", "mlds-scheduler.log")


@dataclass
class InputFile:
    path: str          # relative, POSIX
    sha256: str
    size: int

    def to_dict(self) -> dict:
        return {"path": self.path, "sha256": self.sha256, "size": self.size}


@dataclass
class UploadReport:
    uploaded: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    bytes_uploaded: int = 0

    def to_dict(self) -> dict:
        return {"uploaded": self.uploaded, "reused": self.reused, "bytes_uploaded": self.bytes_uploaded}


def check_relative(path: str, what: str = "input") -> str:
    p = PurePosixPath(str(path).replace(os.sep, "/"))
    if p.is_absolute() or ".." in p.parts or not p.parts or str(p) == ".":
        raise JobError(f"{what} {path!r} must be a path inside the run folder")
    return str(p)


def describe_inputs(run_dir: Path, paths: Iterable[str]) -> list[InputFile]:
    """Hash the inputs; a missing one is a one-line error naming it."""
    out: list[InputFile] = []
    seen: set[str] = set()
    for raw in paths:
        rel = check_relative(raw)
        if rel in seen:
            continue
        seen.add(rel)
        local = run_dir / rel
        if not local.is_file():
            raise JobError(f"{run_dir}: input {rel} does not exist")
        out.append(InputFile(rel, sha256_file(local), local.stat().st_size))
    return out


def default_inputs(run_dir: Path) -> list[str]:
    """Every regular file of a run folder except hidden ones."""
    out = []
    for p in sorted(run_dir.rglob("*")):
        rel = p.relative_to(run_dir)
        if p.is_file() and not any(part.startswith(".") for part in rel.parts) and not _internal(rel.as_posix()):
            out.append(rel.as_posix())
    return out


def _internal(rel: str) -> bool:
    name = posixpath.basename(rel)
    return bool(_INTERNAL.match(name)) or name in RUN_FILES or name.startswith("mlds-job.attempt")


def object_path(workdir: str, sha256: str) -> str:
    return f"{workdir}/{OBJECTS}/{sha256[:2]}/{sha256[2:]}"


def upload_inputs(
    conn: Connection,
    run_dir: Path,
    workdir: str,
    remote_dir: str,
    inputs: list[InputFile],
    *,
    progress: Callable[[int], None] | None = None,
) -> UploadReport:
    """Put every input into ``remote_dir``, uploading only unknown contents.

    Existence checks go over SFTP (no shell start-up per file); the checksum
    of new objects and the copies into the job folder are one command."""
    report = UploadReport()
    present = existing_objects(conn, workdir, {i.sha256 for i in inputs})
    new: list[InputFile] = []
    for item in inputs:
        if item.sha256 in present:
            report.reused.append(item.path)
            continue
        local = run_dir / item.path
        if sha256_file(local) != item.sha256:
            raise JobError(f"{local} changed while the job was being submitted; submit again")
        conn.put(local, object_path(workdir, item.sha256), callback=progress)
        present.add(item.sha256)
        new.append(item)
        report.uploaded.append(item.path)
        report.bytes_uploaded += item.size
    _verify_and_materialize(conn, workdir, remote_dir, inputs, new)
    return report


def existing_objects(conn: Connection, workdir: str, hashes: set[str]) -> set[str]:
    return {h for h in hashes if conn.exists(object_path(workdir, h))}


def _verify_and_materialize(conn: Connection, workdir: str, remote_dir: str, inputs: list[InputFile], new: list[InputFile]) -> None:
    """Check new objects' sha256 on the machine (where sha256sum exists), then
    copy every input into the job folder.

    Copies, not links, and an input already in the folder is kept: on a
    resubmission the job may have changed it on purpose."""
    lines = []
    if new:
        paths = " ".join(shlex.quote(object_path(workdir, i.sha256)) for i in new)
        lines.append(f"if command -v sha256sum >/dev/null 2>&1; then sha256sum {paths} || exit 3; fi")
    lines.append(f"mkdir -p {shlex.quote(remote_dir)} || exit 4")
    for item in inputs:
        dest = posixpath.join(remote_dir, item.path)
        lines.append(
            f"mkdir -p {shlex.quote(posixpath.dirname(dest))} && "
            f"{{ test -e {shlex.quote(dest)} || cp {shlex.quote(object_path(workdir, item.sha256))} {shlex.quote(dest)}; }} || exit 4"
        )
    result = conn.run("\n".join(lines))
    if result.rc == 3:
        raise MachineError(conn.machine.name, f"cannot verify uploaded objects: {result.first_error_line()}")
    if not result.ok:
        raise MachineError(conn.machine.name, f"cannot set up the job folder {remote_dir}: {result.first_error_line()}")
    sums = {}
    for line in result.out.splitlines():
        parts = line.split(None, 1)
        if len(parts) == 2:
            sums[parts[1].strip().lstrip("*")] = parts[0]
    for item in new if sums else []:
        path = object_path(workdir, item.sha256)
        if sums.get(path) != item.sha256:
            conn.run(f"rm -f {shlex.quote(path)} {shlex.quote(posixpath.join(remote_dir, item.path))}")
            raise MachineError(conn.machine.name, f"upload of {item.path} arrived corrupted (sha256 mismatch); submit again")


# -- results ----------------------------------------------------------------------

def list_remote_files(conn: Connection, remote_dir: str) -> list[str]:
    result = conn.run(f"cd {shlex.quote(remote_dir)} && find . -type f")
    if not result.ok:
        raise MachineError(conn.machine.name, f"job folder {remote_dir} is missing or unreadable: {result.first_error_line()}")
    files = []
    for line in result.out.splitlines():
        rel = line.strip()
        if rel.startswith("./"):
            rel = rel[2:]
        if rel and not _INTERNAL.match(posixpath.basename(rel)):
            files.append(rel)
    return sorted(files)


def match_outputs(files: list[str], patterns: list[str]) -> tuple[list[str], list[str]]:
    """``(matched files, patterns that matched nothing)``."""
    matched: list[str] = []
    missing: list[str] = []
    for pattern in patterns:
        hits = [f for f in files if fnmatch.fnmatchcase(f, pattern)]
        if not hits:
            missing.append(pattern)
        matched.extend(h for h in hits if h not in matched)
    return matched, missing


def fetch_files(
    conn: Connection,
    remote_dir: str,
    run_dir: Path,
    files: list[str],
    *,
    previously: dict[str, str],
    force: bool = False,
) -> dict[str, str]:
    """Download ``files`` into ``run_dir``; returns ``{path: sha256}``."""
    got: dict[str, str] = {}
    for rel in files:
        check_relative(rel, "result")
        local = run_dir / rel
        with atomic_path(local) as tmp:
            conn.get(posixpath.join(remote_dir, rel), tmp)
            digest = sha256_file(tmp)
            if local.exists() and not force:
                current = sha256_file(local)
                if current != digest and previously.get(rel) != current:
                    raise JobError(
                        f"{local} exists and was not written by this job; move it away or fetch with --force"
                    )
        got[rel] = digest
    return got

