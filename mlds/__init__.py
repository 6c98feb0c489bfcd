"""mlds: versioned, shareable DFT training data for machine-learning interatomic potentials.

>>> import mlds
>>> with mlds.create("si.mlds.h5", {"name": "si"}) as w:
...     w.append(frames)
>>> ds = mlds.open("si.mlds.h5")
>>> ds[0].positions, ds.array("forces"), ds.get_atoms(0)
"""

import os as _os
import sys as _sys

# `mlds convert|export|import FILE...` is a short process whose array work is small (tables of a few
# hundred rows, kept on one BLAS thread anyway): OpenBLAS then starts with one thread.  It must be
# said before numpy is first imported (just below); its thread pool costs every process ~0.03 s of
# CPU (issue 12).  Only for these commands run as `mlds ...` or `python -m mlds ...`; a value already
# in the environment is kept.
if _sys.argv[1:2] in (["convert"], ["export"], ["import"]) and (
        _sys.argv[0] == "-m" or _os.path.basename(_sys.argv[0]) in ("mlds", "mlds.exe", "__main__.py")):
    _os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from mlds.api import Dataset, DatasetWriter, create, open, read_frames, write
from mlds.errors import MldsError
from mlds.format.batch import Batch
from mlds.format.concat import ConcatDataset
from mlds.format.frame import Frame
from mlds.format.view import DatasetView

__version__ = "0.1.0.dev0"

__all__ = ["Batch", "ConcatDataset", "Dataset", "DatasetView", "DatasetWriter", "Frame", "MldsError", "__version__",
           "create", "open", "read_frames", "write"]
