"""Where a sweep stands: shards on disk against the plan, joined with the jobs still running."""

from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import dataclass, field

from mnistfc.errors import ShardError
from mnistfc.launch import job_states
from mnistfc.plan import Submission, load_plan
from mnistfc.records import Status, list_shards, read_result

log = logging.getLogger(__name__)

_ACTIVE = {"RUNNING", "COMPLETING", "CONFIGURING", "REQUEUED", "RESIZING", "SUSPENDED"}
_QUEUED = {"PENDING", "REQUEUE_HOLD", "REQUEUE_FED"}


@dataclass
class ShardStates:
    """The status of each trial with a readable shard, and the shards that are not readable."""

    status: dict[str, Status] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    invalid: dict[str, str] = field(default_factory=dict)

    def pending(self, trial_ids: list[str], *, rerun_failed: bool = False) -> list[str]:
        """Return the trials still to run: no final shard (see ``Status.is_final``)."""
        return [
            t
            for t in trial_ids
            if t not in self.status or not self.status[t].is_final(rerun_failed=rerun_failed)
        ]


def read_states(results_dir: str | os.PathLike[str]) -> ShardStates:
    """Read every shard's status; an invalid shard is named, and its trial counts as missing."""
    states = ShardStates()
    for path in list_shards(results_dir):
        try:
            result = read_result(path)
        except ShardError as exc:
            states.invalid[path.name] = str(exc)
            continue
        states.status[result.trial_id] = result.status
        if result.error:
            states.errors[result.trial_id] = result.last_error_line()
    return states


@dataclass(frozen=True)
class SweepStatus:
    """Counts of a sweep's trials by outcome, against its plan."""

    name: str
    total: int
    counts: dict[str, int]
    failed: dict[str, str]
    invalid: dict[str, str]
    submissions: tuple[Submission, ...]

    @property
    def finished(self) -> int:
        """Return how many trials have a final shard (completed, diverged or failed)."""
        return sum(self.counts.get(s.value, 0) for s in Status)


def sweep_status(
    results_dir: str | os.PathLike[str], states: ShardStates | None = None
) -> SweepStatus:
    """Compare the shards on disk (read now unless given) with the plan."""
    plan = load_plan(results_dir)
    states = states or read_states(results_dir)
    planned = plan.trial_ids
    counts = Counter(states.status[t].value if t in states.status else "missing" for t in planned)
    failed = {t: states.errors.get(t, "") for t in planned if states.status.get(t) is Status.FAILED}
    return SweepStatus(
        name=plan.spec.name,
        total=len(planned),
        counts=dict(counts),
        failed=failed,
        invalid=states.invalid,
        submissions=plan.submissions,
    )


@dataclass(frozen=True)
class Progress:
    """A sweep's shard counts plus, for trials without a shard, what their job is doing."""

    status: SweepStatus
    running: int
    queued: int
    live_jobs: int = 0

    @property
    def active(self) -> bool:
        """Return whether any job of the sweep is still queued or running."""
        return self.running + self.queued + self.live_jobs > 0

    @property
    def lost(self) -> int:
        """Return trials with no shard and no live job: the next sweep reruns them."""
        return self.status.counts.get("missing", 0) - self.running - self.queued


def sweep_progress(results_dir: str | os.PathLike[str]) -> Progress:
    """Combine shards on disk with the scheduler's view of the jobs still holding trials."""
    shards = read_states(results_dir)
    status = sweep_status(results_dir, shards)
    done = set(shards.status)
    states: dict[str, str] = {}
    live_jobs = 0
    for submission in reversed(status.submissions):  # the latest submission of a trial counts
        jobs = job_states(submission.executor, list(submission.job_ids))
        live_jobs += sum(s in _ACTIVE | _QUEUED for s in jobs.values())
        for job_id, trial_ids in submission.task_trials():
            for tid in trial_ids:
                if tid not in done:
                    states.setdefault(tid, jobs.get(job_id, ""))
    running = sum(s in _ACTIVE for s in states.values())
    queued = sum(s in _QUEUED for s in states.values())
    return Progress(status=status, running=running, queued=queued, live_jobs=live_jobs)
