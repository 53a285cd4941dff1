"""Executors behind one seam: the registry below is the only place that names them.

Each backend (``slurm``, ``local``, ``debug``) lives in its own module and owns its settings'
checks, its task policy, submission, waiting, dry-run text and job states; the rest of
mnistfc asks ``backend(name)``, and ``load_profile`` checks a profile with both the common
rules and its backend's. Backend modules import submitit lazily.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from mnistfc.errors import ConfigError, format_problems
from mnistfc.launch.profile import ClusterProfile, common_problems
from mnistfc.trial.spec import apply_overrides, read_toml

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


def load_profile(path: str | Path | None, overrides: Sequence[str] = ()) -> ClusterProfile:
    """Load a cluster profile (None: the local defaults); report every problem at once."""
    data = read_toml(path, overrides) if path is not None else apply_overrides({}, overrides)
    where = str(path) if path is not None else "default profile"
    problems: list[str] = []
    valid = {f.name for f in dataclasses.fields(ClusterProfile)}
    unknown = sorted(set(data) - valid)
    if unknown:
        problems.append(f"unknown key(s) {unknown}; valid: {sorted(valid)}")
    values = {k: v for k, v in data.items() if k in valid}
    for key in ("partition", "account", "qos", "container"):
        if values.get(key) == "":
            values[key] = None  # TOML has no null: an empty string means unset
    for key in ("container_binds", "setup"):
        if key in values:
            if not isinstance(values[key], list) or not all(
                isinstance(s, str) for s in values[key]
            ):
                problems.append(f"{key}: must be a list of strings, got {values[key]!r}")
            else:
                values[key] = tuple(values[key])
    if "sbatch" in values and not isinstance(values["sbatch"], dict):
        problems.append(
            f"sbatch: must be a table of extra sbatch parameters, got {values['sbatch']!r}"
        )
    profile = ClusterProfile()
    try:
        profile = ClusterProfile(**values)
    except TypeError as exc:
        problems.append(str(exc))
    problems += common_problems(profile)
    if profile.executor not in EXECUTORS:
        problems.append(f"executor: {profile.executor!r} is not one of {', '.join(EXECUTORS)}")
    else:
        problems += backend(profile.executor).problems(profile)
    if problems:
        raise ConfigError(format_problems(where, problems))
    return profile
