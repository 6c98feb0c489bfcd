"""Training machine-learning potentials on mlds datasets (n2p2), and potentials as store objects.

>>> from mlds import train
>>> run = train.prepare("cu2s@v1", workdir="runs/cu2s")     # run folder: input.data, input.nn, job.sh
>>> train.run_local(run, on_line=print)                     # or mlds.compute.submit(run.path, machine, ...)
>>> pot = train.finish(run.path, name="cu2s-nnp")            # checks, best epoch, assembly, registration
>>> pot.lammps()["pair_style"]
>>> train.get("cu2s-nnp@v1", "hdnnp/")                       # files for LAMMPS pair_style hdnnp

``train.train(ref, ...)`` does all three steps here.
"""

from mlds.train.predict import Evaluation, parity_plot
from mlds.train.finish import finish
from mlds.train.pipeline import evaluate, train
from mlds.train.potential import Potential, get, lammps_lines, ls, search, show, trained_on
from mlds.train.run import TrainError, TrainRun, load_run, prepare, run_local
from mlds.train.settings import PRESETS, SettingsError

__all__ = ["PRESETS", "Evaluation", "Potential", "SettingsError", "TrainError", "TrainRun", "evaluate", "finish",
           "get", "lammps_lines", "load_run", "ls", "parity_plot", "prepare", "run_local", "search", "show", "train",
           "trained_on"]
