"""The read/write functions ASE calls for the ``mlds`` format."""

from __future__ import annotations

from typing import Any, Iterator


def read_mlds(filename: Any, index: Any = -1) -> Iterator[Any]:
    import mlds

    name = getattr(filename, "name", filename)
    with mlds.open(name) as ds:
        if isinstance(index, int):
            yield ds.frame(index).to_atoms()
            return
        n = len(ds)
        if isinstance(index, slice):
            rng = range(*index.indices(n))
        else:
            rng = range(n)
        if isinstance(index, slice) and (index.step in (None, 1)):
            for frame in ds.iter_frames(rng.start, rng.stop):
                yield frame.to_atoms()
        else:
            for i in rng:
                yield ds.frame(i).to_atoms()


def write_mlds(filename: Any, images: Any, **kwargs: Any) -> None:
    import mlds
    from mlds.format.frame import Frame

    if hasattr(images, "get_positions"):
        images = [images]
    name = getattr(filename, "name", filename)
    mlds.write(name, (Frame.from_atoms(a) for a in images), kwargs.get("metadata"))
