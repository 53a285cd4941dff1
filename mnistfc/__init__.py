"""mnistfc: hyperparameter studies of small fully connected networks as SLURM batch jobs."""

from __future__ import annotations

from mnistfc.config import TrialConfig
from mnistfc.errors import ConfigError, DataError, MnistfcError, ShardError

__version__ = "0.1.0"

__all__ = ["ConfigError", "DataError", "MnistfcError", "ShardError", "TrialConfig", "__version__"]
