"""The read/write functions ASE calls for the ``mlds`` format (and for directories, see ``mlds.ase_plugin``)."""

from __future__ import annotations

import json
import os
from typing import Any, Iterator


def read_mlds(filename: Any, index: Any = -1) -> Iterator[Any]:
    """``ase.Atoms`` for ``index`` (int or slice) of an mlds dataset, results on a SinglePointCalculator."""
    import mlds

    name = getattr(filename, "name", filename)
    with mlds.open(name) as ds:
        n = len(ds)
        if isinstance(index, int):
            yield ds.frame(index).to_atoms()
            return
        rng = range(*index.indices(n)) if isinstance(index, slice) else range(n)
        if rng.step == 1:
            for frame in ds.iter_frames(rng.start, rng.stop):
                yield frame.to_atoms()
        else:
            for i in rng:
                yield ds.frame(i).to_atoms()


def write_mlds(filename: Any, images: Any, **kwargs: Any) -> None:
    """Write ``images`` (Atoms or a list) as a new mlds dataset; ``metadata=`` is passed on."""
    import mlds
    from mlds.format.frame import Frame

    if hasattr(images, "get_positions"):
        images = [images]
    name = getattr(filename, "name", filename)
    mlds.write(name, (Frame.from_atoms(a) for a in images), kwargs.get("metadata"))


def is_mlds_zarr_dir(path: Any) -> bool:
    """A directory holding a Zarr v3 group whose attributes say ``mlds-dataset``."""
    root = os.path.join(os.fspath(path), "zarr.json")
    try:
        with open(root, "rb") as fh:
            doc = json.loads(fh.read())
    except (OSError, ValueError):
        return False
    attrs = doc.get("attributes") if isinstance(doc, dict) else None
    return isinstance(attrs, dict) and attrs.get("mlds_format") == "mlds-dataset"


def read_bundletrajectory(filename: Any, index: Any = -1) -> Iterator[Any]:
    """ASE routes every directory here: mlds Zarr stores are read as mlds, the rest by ASE."""
    if is_mlds_zarr_dir(filename):
        yield from read_mlds(filename, index)
        return
    from ase.io.bundletrajectory import read_bundletrajectory as ase_read

    yield from ase_read(filename, index)


def write_bundletrajectory(filename: Any, images: Any, **kwargs: Any) -> Any:
    """ASE routes writes to an existing directory here: mlds Zarr stores as mlds, the rest to ASE."""
    if is_mlds_zarr_dir(filename):
        return write_mlds(filename, images, **kwargs)
    from ase.io.bundletrajectory import write_bundletrajectory as ase_write

    return ase_write(filename, images, **kwargs)
