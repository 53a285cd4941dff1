"""Executors behind one seam: the registry below is the only place that names them.

Each backend (``slurm``, ``local``, ``debug``) lives in its own module and owns its settings'
checks, its task policy, submission, waiting, dry-run text and job states; the rest of
mnistfc asks ``backend(name)``. Backend modules import submitit lazily.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mnistfc.launch.base import Backend, JobStates

_MODULES = {
    "slurm": "mnistfc.launch.slurm",
    "local": "mnistfc.launch.local",
    "debug": "mnistfc.launch.debug",
}
EXECUTORS = tuple(_MODULES)


def backend(name: str) -> Backend:
    """Return the backend registered as ``name`` (a validated executor name)."""
    module = importlib.import_module(_MODULES[name])
    return module.BACKEND  # type: ignore[no-any-return]


def job_states(executor: str, job_ids: list[str]) -> JobStates:
    """Return each job's scheduler state; tasks with no backend have ended."""
    from mnistfc.launch.base import JobStates

    if executor not in _MODULES or not job_ids:
        return JobStates({j: "ENDED" for j in job_ids})
    return backend(executor).job_states(job_ids)
