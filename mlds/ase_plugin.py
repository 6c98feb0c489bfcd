"""mlds as an ASE I/O format: ``ase.io.read("x.h5", ":")``, ``ase.io.read("x.zarr")``, ``ase.io.write``.

Registered through ASE's ``ase.ioformats`` entry point (see pyproject.toml).
ASE picks a reader by file-name glob, then by the file's first bytes:

* names ``*.mlds.h5``, ``*.mlds.zarr``, ``*.mlds.zarr.zip`` are claimed outright;
* any other HDF5 file is claimed by content when its first 2000 bytes name the
  ``mlds_format`` root attribute (mlds writes it first, so it lands there), and
  a ``.zarr.zip`` when its first entry is a ``zarr.json`` saying ``mlds-dataset``;
  other HDF5 files stay with their own readers.
* Directories never reach a glob or content check: ASE's ``filetype`` calls
  every directory a BundleTrajectory.  So the ``bundletrajectory`` entry is
  pointed at :mod:`mlds.ase_io`, whose functions read/write an mlds Zarr
  directory and hand every other directory to ASE's own BundleTrajectory code
  unchanged.  This is the one hook ASE leaves for it: the entry point is loaded
  while ``ase.io.formats`` is still importing, before ``filetype`` exists.
"""

from __future__ import annotations

import sys

from ase.utils.plugins import ExternalIOFormat

MAGIC = rb'(?:\x89HDF\r\n\x1a\n.*mlds_format)|(?:PK\x03\x04.{26}zarr\.json.*"mlds-dataset")'

mlds_format = ExternalIOFormat(
    desc="mlds dataset (HDF5 or Zarr)",
    code="+S",
    module="mlds.ase_io",
    glob=["*.mlds.h5", "*.mlds.zarr", "*.mlds.zarr.zip"],
    ext="mlds.h5",
    magic_regex=MAGIC,
)


def _route_directories() -> None:
    formats = sys.modules.get("ase.io.formats")
    bundle = getattr(formats, "ioformats", {}).get("bundletrajectory")
    if bundle is not None and bundle.module_name == "ase.io.bundletrajectory":
        bundle.module_name = "mlds.ase_io"


_route_directories()
