"""The top-level library API (``mlds.open``, ``mlds.create``, ...), which the CLI calls."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Iterable

from mlds.errors import FormatError
from mlds.format.concat import ConcatDataset
from mlds.format.dataset import Dataset
from mlds.format.frame import Frame
from mlds.format.writer import DatasetWriter, create, write

_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(@[A-Za-z0-9._-]+)?$")


def looks_like_ref(text: str) -> bool:
    """True if ``text`` can name a store version ``NAME[@TAG]`` (and is not a dataset file name)."""
    return bool(_REF.match(text)) and Path(text).suffix not in (".h5", ".hdf5", ".zarr", ".zip")


def open(target: str | os.PathLike, **options: Any) -> Dataset | ConcatDataset:  # noqa: A001 - mirrors zarr.open / h5py.File
    """Open a dataset file (``.h5``, ``.zarr``, ``.zarr.zip``) or a store version ``NAME[@TAG]``.

    Returns a :class:`~mlds.format.dataset.Dataset` (a file) or a
    :class:`~mlds.format.concat.ConcatDataset` (a store version's shards, read
    in place); both offer ``ds[i]``, ``ds.batch(indices)``, ``ds.array(name)``,
    ``ds.select(...)`` and ``ds.subset(...)``.  ``options``: ``cache_bytes``.
    """
    path = Path(target)
    if path.exists():
        return Dataset(path, **options)
    text = os.fspath(target)
    if looks_like_ref(text):
        from mlds.store import open_ref

        return open_ref(text, **options)
    raise FormatError(path, "no such file or directory")


def read_frames(path: str | os.PathLike, fmt: str | None = None, **options: Any) -> Iterable[Frame]:
    """Frames from any supported input file (VASP, QE, extxyz, n2p2, aenet, ...)."""
    from mlds.io.registry import open_reader

    return open_reader(path, fmt, **options)


__all__ = ["Dataset", "DatasetWriter", "Frame", "create", "open", "read_frames", "write"]
