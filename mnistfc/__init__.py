"""mnistfc: hyperparameter studies of small fully connected networks as SLURM batch jobs.

The Python API (for notebooks) is ``train_model``, ``run_sweep`` and ``load_results``;
the command line is ``mnistfc --help``.
"""

from __future__ import annotations

from mnistfc.api import load_results, run_sweep, train_model
from mnistfc.config import TrialConfig
from mnistfc.errors import ConfigError, DataError, MnistfcError, ShardError

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "DataError",
    "MnistfcError",
    "ShardError",
    "TrialConfig",
    "__version__",
    "load_results",
    "run_sweep",
    "train_model",
]
