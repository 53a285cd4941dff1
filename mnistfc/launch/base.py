"""The launcher interface every backend implements, and the plan it is handed.

A submission is decided whole on the submitting host (``sweep.plan_submission``): which
trials run, in which packs and tasks, with which resources. A backend turns that plan into
jobs and reports on them; it never changes the packs.
"""

from __future__ import annotations

import math
import os
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnistfc.launch.profile import ClusterProfile
from mnistfc.launch.worker import TaskSpec
from mnistfc.trial.packs import Pack, Task
from mnistfc.trial.search import PlannedTrial
from mnistfc.trial.spec import SweepSpec

SUBMITIT_DIR = "submitit"
Progress = Callable[[int, int], None]
UNKNOWN = "UNKNOWN"  # the scheduler could not say (it is unreachable, or its accounting is)


@dataclass(frozen=True)
class JobStates:
    """Each job's scheduler state (``UNKNOWN`` where it could not say) and why not."""

    states: dict[str, str]
    problem: str = ""  # what did not answer, e.g. "sacct: Connection refused"; "" = all did


@dataclass(frozen=True)
class Request:
    """What a sweep asks of a backend, before any work is split."""

    profile: ClusterProfile
    spec_name: str
    packed: bool
    max_parallel: int | None = None  # --max-parallel
    size: int = 0  # trials per task (--chunk, profile chunk); 0: the backend's policy
    binds: tuple[str, ...] = ()  # folders a container must see (results, data)


@dataclass(frozen=True)
class Work:
    """The unfinished trials: recorded packs to resume whole, and trials to pack afresh."""

    reused: list[Pack]
    new: list[Any]
    parallel: int
    settings: Any = None  # the backend's own, as its ``resources`` decided them


@dataclass(frozen=True)
class Resources:
    """What a backend decided for a submission: parallelism, threads and its own settings."""

    parallel: int
    threads: int = 0
    settings: Any = None  # the backend's own (sbatch parameters, GPUs), read back by it
    note: str = ""  # for the plan summary, e.g. "on GPUs 0,1"


@dataclass(frozen=True)
class SubmissionPlan:
    """What a sweep call will do: every decision made, nothing submitted yet."""

    spec: SweepSpec
    profile: ClusterProfile
    results_dir: Path
    data_dir: str
    total: int
    skipped: int
    tasks: list[Task]
    resources: Resources
    packed: bool = True
    reused: int = 0  # recorded packs resumed whole

    @property
    def n_trials(self) -> int:
        """Return how many trials this submission runs."""
        return sum(task.n_trials for task in self.tasks)

    @property
    def submitit_dir(self) -> Path:
        """Return where submitit keeps this sweep's pickles and job logs."""
        return self.results_dir / SUBMITIT_DIR

    @property
    def task_trials(self) -> list[list[PlannedTrial]]:
        """Return each task's trials (its packs' trials, in order)."""
        return [[t for pack in task.packs for t in pack.trials] for task in self.tasks]

    @property
    def packs(self) -> list[Pack]:
        """Return every pack of the submission, in task order."""
        return [p for task in self.tasks for p in task.packs]


PROGRESS_S = 2.0  # seconds between progress reports while waiting


class Backend(ABC):
    """One executor: how it checks its settings, splits work, submits, waits and reports."""

    waits_by_default = True  # the jobs are this process's children
    poll_s = 1.0  # seconds between looks at the jobs while waiting

    def problems(self, profile: ClusterProfile) -> list[str]:
        """Return what is wrong with the profile's settings for this backend."""
        return []

    @abstractmethod
    def resources(self, request: Request) -> Resources:
        """Decide parallelism, threads and the backend's own settings (fail before queueing)."""

    @abstractmethod
    def group(self, request: Request, work: Work) -> list[Task]:
        """Split the packs to resume and the new trials into tasks."""

    def check_ready(self) -> None:  # noqa: B027 - most backends can always submit
        """Raise ConfigError when this host cannot submit (checked before anything is written)."""

    @abstractmethod
    def submit(self, plan: SubmissionPlan, tasks: list[TaskSpec], on: Progress | None) -> list[Any]:
        """Hand the tasks to the executor; return its jobs (with ``job_id``).

        submitit keeps its files (pickles, logs) under ``plan.submitit_dir``.
        """

    def wait(self, jobs: list[Any], on_progress: Progress | None) -> list[str]:
        """Wait for every job; return the ids of those that failed."""
        shown = -math.inf
        while not all(job.done() for job in jobs):
            # The progress bar reads every shard: at most every PROGRESS_S, not every look.
            if on_progress and time.monotonic() - shown >= PROGRESS_S:
                on_progress(sum(job.done() for job in jobs), len(jobs))
                shown = time.monotonic()
            time.sleep(self.poll_s)
        if on_progress:
            on_progress(len(jobs), len(jobs))
        return [str(job.job_id) for job in jobs if job.exception() is not None]

    def submit_call(
        self,
        folder: Path,
        name: str,
        profile: ClusterProfile,
        binds: tuple[str, ...],
        call: Callable[..., Any],
        *args: Any,
        after: tuple[str, ...] | list[str] = (),
    ) -> Any:
        """Submit one call as a job that starts after the jobs ``after`` ended (any state).

        Only schedulers whose jobs outlive this process need it: a local study runs its
        parts itself.
        """
        raise NotImplementedError(f"{type(self).__name__} runs a study in this process")

    def dry_run(self, plan: SubmissionPlan) -> list[str]:
        """Return what the executor would be given, beyond the trials (e.g. the sbatch script)."""
        return []

    def job_states(self, job_ids: list[str]) -> JobStates:
        """Return each job's state."""
        return JobStates({j: "ENDED" for j in job_ids})


def import_submitit() -> Any:
    """Import submitit without letting it configure this process's logging.

    On import, submitit runs ``logging.config.dictConfig``, which closes every handler the
    process already has; ``SUBMITIT_LOG_LEVEL=NOCONFIG`` (its documented switch) prevents
    that. It is set only for the import, so the jobs this process starts keep submitit's
    default logging.
    """
    if "submitit" not in sys.modules:
        previous = os.environ.get("SUBMITIT_LOG_LEVEL")
        os.environ["SUBMITIT_LOG_LEVEL"] = "NOCONFIG"
        try:
            import submitit  # noqa: F401
        finally:
            if previous is None:
                del os.environ["SUBMITIT_LOG_LEVEL"]
            else:
                os.environ["SUBMITIT_LOG_LEVEL"] = previous
    return sys.modules["submitit"]
