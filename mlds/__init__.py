"""mlds: versioned, shareable DFT training data for machine-learning interatomic potentials."""

from mlds.errors import MldsError
from mlds.format.frame import Frame

__version__ = "0.1.0.dev0"

__all__ = ["Frame", "MldsError", "__version__"]
