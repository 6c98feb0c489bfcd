"""mlds as an ASE I/O format: ``ase.io.read("x.mlds.h5", ":")`` and ``ase.io.write``.

Registered through ASE's ``ase.ioformats`` entry point (see pyproject.toml).
ASE matches formats by file-name glob; we claim ``*.mlds.h5``, ``*.mlds.zarr``
and ``*.mlds.zarr.zip`` so other HDF5 files are left to their readers.
"""

from __future__ import annotations

from ase.io.formats import ExternalIOFormat

mlds_format = ExternalIOFormat(
    desc="mlds dataset (HDF5 or Zarr)",
    code="+B",
    module="mlds.ase_io",
    glob=["*.mlds.h5", "*.mlds.zarr", "*.mlds.zarr.zip"],
    ext="mlds.h5",
)
