"""mnistfc: hyperparameter studies of small fully connected networks as SLURM batch jobs.

The Python API (for notebooks) is ``train_model``, ``run_sweep``, ``run_study``, ``status``
and ``load_results``; the command line is ``mnistfc --help``. The types they return are
exported too, for annotations; those that need pandas load on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from mnistfc.api import (
    Executor,
    SweepRun,
    load_results,
    run_study,
    run_sweep,
    status,
    train_model,
)
from mnistfc.errors import ConfigError, DataError, MnistfcError, ShardError
from mnistfc.trial.config import TrialConfig
from mnistfc.version import __version__

if TYPE_CHECKING:
    from mnistfc.folder.plan import Submission
    from mnistfc.folder.result import TrialResult
    from mnistfc.folder.study_record import StudyJobs
    from mnistfc.report.aggregate import Results
    from mnistfc.report.render import Report
    from mnistfc.sweep.progress import SweepStatus


# Return types, imported when first asked for: `import mnistfc` stays free of pandas.
_LAZY = {
    "Report": "mnistfc.report.render",
    "Results": "mnistfc.report.aggregate",
    "StudyJobs": "mnistfc.folder.study_record",
    "Submission": "mnistfc.folder.plan",
    "SweepStatus": "mnistfc.sweep.progress",
    "TrialResult": "mnistfc.folder.result",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mnistfc' has no attribute {name!r}")


__all__ = [
    "ConfigError",
    "DataError",
    "Executor",
    "MnistfcError",
    "Report",
    "Results",
    "ShardError",
    "StudyJobs",
    "Submission",
    "SweepRun",
    "SweepStatus",
    "TrialConfig",
    "TrialResult",
    "__version__",
    "load_results",
    "run_study",
    "run_sweep",
    "status",
    "train_model",
]
