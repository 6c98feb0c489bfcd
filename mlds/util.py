"""Small helpers shared across packages."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterator

CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def is_mlds_zarr_dir(path: str | os.PathLike) -> bool:
    """True if ``path`` is a folder holding a Zarr mlds dataset (something mlds wrote)."""
    import json

    meta = Path(path) / "zarr.json"
    try:
        attrs = json.loads(meta.read_text(encoding="utf-8")).get("attributes", {})
    except (OSError, ValueError, AttributeError):
        return False
    return isinstance(attrs, dict) and attrs.get("mlds_format") == "mlds-dataset"


def move_into_place(built: str | os.PathLike, target: str | os.PathLike, *,
                    replace_dir: Callable[[Path], bool] | None = None) -> None:
    """``os.replace(built, target)``, never deleting a folder it was not told it may delete.

    An existing file at ``target`` is replaced (atomically).  An existing
    *folder* is replaced only when it is empty, or when ``replace_dir(target)``
    says it is ours to replace (e.g. an mlds ``.zarr`` dataset the caller was
    asked to overwrite); it is moved aside first and removed only after the new
    content is in place.  Anything else raises :class:`~mlds.errors.OutputExistsError`
    and leaves ``target`` untouched.
    """
    built, target = Path(built), Path(target)
    if target.is_dir() and not target.is_symlink():
        if built.is_dir() and not any(target.iterdir()):
            target.rmdir()  # an empty folder replaced by a folder: nothing of anyone's is lost
        elif replace_dir is not None and replace_dir(target):
            aside = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
            old = aside / target.name
            os.replace(target, old)
            try:
                os.replace(built, target)
            except BaseException:
                os.replace(old, target)  # put it back
                raise
            finally:
                shutil.rmtree(aside, ignore_errors=True)
            return
        else:
            from mlds.errors import OutputExistsError

            raise OutputExistsError(f"{target} is a folder that mlds did not create; not replacing it")
    os.replace(built, target)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, is_dir: bool = False,
                replace_dir: Callable[[Path], bool] | None = None) -> Iterator[Path]:
    """Yield a temporary sibling path that replaces ``path`` only on success.

    Any exception leaves ``path`` untouched and removes the temporary, so a
    failed conversion never leaves a half-written output behind.  An existing
    file at ``path`` is replaced.  A folder output (``is_dir``) written where a
    folder already exists is merged into it: the files written replace their
    namesakes, the folder's other files stay.  A folder is never removed unless
    ``replace_dir`` accepts it (see :func:`move_into_place`); callers that
    must not overwrite decide that (``--force``) before writing.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    tmp = Path(tmp_dir) / target.name
    try:
        if is_dir:
            tmp.mkdir()
        yield tmp
        if is_dir and target.is_dir() and not target.is_symlink() and not (replace_dir and replace_dir(target)):
            for child in sorted(tmp.iterdir()):
                move_into_place(child, target / child.name)
        else:
            move_into_place(tmp, target, replace_dir=replace_dir)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
