"""mlds: versioned, shareable DFT training data for machine-learning interatomic potentials.

>>> import mlds
>>> with mlds.create("si.mlds.h5", {"name": "si"}) as w:
...     w.append(frames)
>>> ds = mlds.open("si.mlds.h5")
>>> ds[0].positions, ds.array("forces"), ds.get_atoms(0)
"""

from mlds.api import Dataset, DatasetWriter, create, open, read_frames, write
from mlds.errors import MldsError
from mlds.format.batch import Batch
from mlds.format.concat import ConcatDataset
from mlds.format.frame import Frame
from mlds.format.view import DatasetView

__version__ = "0.1.0.dev0"

__all__ = ["Batch", "ConcatDataset", "Dataset", "DatasetView", "DatasetWriter", "Frame", "MldsError", "__version__",
           "create", "open", "read_frames", "write"]
