"""What a pipeline reads: files, folders, globs, mlds datasets and store versions, one source per run."""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from mlds.errors import FormatError, MldsError, UnknownFormatError
from mlds.io.registry import detect
from mlds.pipeline.outputs import MLDS_SUFFIXES
from mlds.util import is_mlds_zarr_dir


@dataclass
class InputItem:
    kind: str          # "file" (a reader), "dataset" (an mlds file or folder), "ref" (a store version)
    target: Any        # Path, or the ref text
    fmt: str | None = None


def _is_mlds_path(path: Path) -> bool:
    name = path.name.lower()
    if not name.endswith(MLDS_SUFFIXES):
        return False
    if path.is_dir():
        return is_mlds_zarr_dir(path)
    try:
        from mlds.format.dataset import Dataset

        Dataset(path).close()
        return True
    except (MldsError, OSError):
        return False


def _walk(folder: Path) -> Iterator[Path]:
    """Files below ``folder`` in sorted order; a Zarr dataset folder is one item, hidden entries skipped."""
    for root, dirs, files in os.walk(folder):
        here = Path(root)
        keep = []
        for d in sorted(dirs):
            if d.startswith("."):
                continue
            if (here / d / "zarr.json").is_file():
                yield here / d
            else:
                keep.append(d)
        dirs[:] = keep
        for f in sorted(files):
            if not f.startswith("."):
                yield here / f


def expand_inputs(inputs: Iterable[str | os.PathLike], *, from_fmt: str | None = None,
                  ) -> tuple[list[InputItem], list[tuple[str, str]]]:
    """Inputs to read, and ``(path, why)`` for files found in folders but not read.

    Named files are read as given (format by content unless ``from_fmt``);
    inside folders only files whose format is recognised are taken; mlds
    datasets are read as datasets; a name that is not a file is tried as a
    store version ``NAME[@TAG]``.  Files of one calculation are read once.
    """
    items: list[InputItem] = []
    skipped: list[tuple[str, str]] = []
    for item in inputs:
        text = os.fspath(item)
        matches = sorted(glob.glob(text, recursive=True)) if glob.has_magic(text) else [text]
        if not matches:
            raise FormatError(text, "no file matches this pattern")
        for m in matches:
            p = Path(m)
            if _is_mlds_path(p):
                items.append(InputItem("dataset", p))
            elif p.is_dir():
                for child in _walk(p):
                    if _is_mlds_path(child):
                        items.append(InputItem("dataset", child))
                    elif child.is_dir():
                        skipped.append((str(child), "a Zarr folder that is not an mlds dataset"))
                    elif from_fmt:
                        items.append(InputItem("file", child, from_fmt))
                    else:
                        try:
                            items.append(InputItem("file", child, detect(child).name))
                        except (UnknownFormatError, OSError):
                            skipped.append((str(child), "format not recognised"))
            elif p.exists():
                items.append(InputItem("file", p, from_fmt))
            elif _looks_like_ref(text):
                items.append(InputItem("ref", text))
            else:
                raise FormatError(p, "no such file, folder or store dataset")
    return _one_source_per_run(items, skipped)


def _looks_like_ref(text: str) -> bool:
    from mlds.api import looks_like_ref

    return looks_like_ref(text)


def _one_source_per_run(items: list[InputItem], skipped: list[tuple[str, str]]) -> tuple[list[InputItem], list[tuple[str, str]]]:
    from mlds.io.runs import pick_sources

    files = [it for it in items if it.kind == "file"]
    if len(files) < 2:
        return items, skipped
    formats = {it.target: it.fmt for it in files if it.fmt}
    chosen, left_out = pick_sources([it.target for it in files], formats)
    keep = set(chosen)
    out = [it for it in items if it.kind != "file" or it.target in keep]
    return out, skipped + [(str(p), why) for p, why in left_out]
