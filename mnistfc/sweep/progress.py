"""Where a sweep stands: shards on disk against the plan, the running packs' heartbeats, and
the jobs still queued or running (or the scheduler's silence)."""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from dataclasses import dataclass, field

from mnistfc.engine.pack.planner import trial_cost
from mnistfc.errors import ShardError
from mnistfc.folder.heartbeat import Heartbeat, read_heartbeats
from mnistfc.folder.plan import Plan, Submission, load_plan
from mnistfc.folder.schema import Status
from mnistfc.folder.shards import list_shards, read_result
from mnistfc.launch import job_states
from mnistfc.launch.base import UNKNOWN
from mnistfc.trial.config import TrialConfig

log = logging.getLogger(__name__)

_ACTIVE = {"RUNNING", "COMPLETING", "CONFIGURING", "REQUEUED", "RESIZING", "SUSPENDED"}
_QUEUED = {"PENDING", "REQUEUE_HOLD", "REQUEUE_FED"}
# Job states that may still make shards (UNKNOWN: the scheduler could not say).
LIVE_STATES = frozenset(_ACTIVE | _QUEUED | {UNKNOWN})


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
    results_dir: str | os.PathLike[str],
    states: ShardStates | None = None,
    plan: Plan | None = None,
) -> SweepStatus:
    """Compare the shards on disk (read now unless given) with the plan."""
    plan = plan or load_plan(results_dir)
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
class PackPulse:
    """A pack that is training now, as its heartbeat tells: epochs done, pace, time left."""

    beat: Heartbeat

    def describe(self) -> str:
        """Return one status line for it."""
        b = self.beat
        pace = f"{b.mean_epoch_s:.1f} s/epoch" if b.mean_epoch_s else "first epoch"
        left = f", ~{format_duration(b.remaining_s)} left" if b.remaining_s is not None else ""
        where = " ".join(x for x in (b.host, f"job {b.job_id}" if b.job_id else "") if x)
        return (f"pack {b.pack_id}: epoch {b.epoch}/{b.epochs} ({len(b.trials)} trials, "
                f"{pace}{left}){' on ' + where if where else ''}")  # fmt: skip


@dataclass(frozen=True)
class Progress:
    """A sweep's shard counts plus, for trials without a shard, what their job is doing."""

    status: SweepStatus
    running: int
    queued: int
    live_jobs: int = 0
    unknown: int = 0  # trials whose job the scheduler could not report on
    scheduler_problem: str = ""  # what did not answer ("" = the scheduler answered)
    packs: tuple[PackPulse, ...] = ()
    epochs_done: float = 0.0  # trial-epochs: a finished trial counts all its epochs
    epochs_total: float = 0.0
    eta_s: float | None = None

    @property
    def active(self) -> bool:
        """Return whether any job may still be queued or running (unknown ones may)."""
        return self.running + self.queued + self.live_jobs + self.unknown > 0

    @property
    def lost(self) -> int:
        """Return trials with no shard whose job has ended: the next sweep reruns them."""
        missing = self.status.counts.get("missing", 0)
        return missing - self.running - self.queued - self.unknown


def sweep_progress(results_dir: str | os.PathLike[str], *, jobs: bool = True) -> Progress:
    """Combine shards on disk, running packs' heartbeats and the scheduler's view of the jobs.

    With ``jobs=False`` the scheduler is not asked (the progress bar of a sweep this process
    waits for knows its jobs are live).
    """
    plan = load_plan(results_dir)
    shards = read_states(results_dir)
    status = sweep_status(results_dir, shards, plan)
    done = set(shards.status)
    states: dict[str, str] = {}
    live_jobs, problems = 0, []
    for submission in reversed(status.submissions) if jobs else ():  # the latest one counts
        answer = job_states(submission.executor, list(submission.job_ids))
        if answer.problem:
            problems.append(answer.problem)
        live_jobs += sum(s in _ACTIVE | _QUEUED for s in answer.states.values())
        for job_id, trial_ids in submission.task_trials():
            for tid in trial_ids:
                if tid not in done:
                    states.setdefault(tid, answer.states.get(job_id, ""))
    configs = plan.configs()
    packs = _pulses(results_dir, done)
    epochs_done, epochs_total, eta_s = _epochs(configs, set(shards.status), packs)
    return Progress(
        status=status,
        running=sum(s in _ACTIVE for s in states.values()),
        queued=sum(s in _QUEUED for s in states.values()),
        live_jobs=live_jobs,
        unknown=sum(s == UNKNOWN for s in states.values()),
        scheduler_problem="; ".join(dict.fromkeys(problems)),
        packs=packs,
        epochs_done=epochs_done,
        epochs_total=epochs_total,
        eta_s=eta_s,
    )


def _pulses(results_dir: str | os.PathLike[str], done: set[str]) -> tuple[PackPulse, ...]:
    # A pack whose trials all have shards has ended (its heartbeat is about to go).
    return tuple(PackPulse(b) for b in read_heartbeats(results_dir) if set(b.trials) - done)


def _epochs(
    configs: dict[str, TrialConfig], finished: set[str], packs: tuple[PackPulse, ...]
) -> tuple[float, float, float | None]:
    """Trial-epochs done and planned, and an ETA at the pace the running packs measure.

    The pace is work per second (each pack's compute cost per measured epoch second, summed
    over packs that beat recently); the ETA divides the work left by it, so queued trials
    count as if the same parallelism carries on. None until a pack has finished an epoch.
    """
    total = float(sum(c.epochs for c in configs.values()))
    done = float(sum(configs[t].epochs for t in finished if t in configs))
    left_cost = sum(trial_cost(c) for t, c in configs.items() if t not in finished)
    pace = 0.0
    now = time.time()
    for pulse in packs:
        b = pulse.beat
        done += b.epoch * sum(t in configs and t not in finished for t in b.trials)
        trials = [configs[t] for t in b.trials if t in configs]
        mean_s = b.mean_epoch_s
        if trials and mean_s and b.epoch:
            left_cost -= b.epoch / b.epochs * sum(trial_cost(c) for c in trials)
            if now - b.updated < max(3 * mean_s, 120.0):  # still beating
                pace += sum(trial_cost(c) for c in trials) / b.epochs / mean_s
    eta = max(left_cost, 0.0) / pace if pace > 0 else None
    return done, total, eta


def format_duration(seconds: float | None) -> str:
    """Return e.g. "45 s", "12 min", "3.5 h" ("?" when unknown)."""
    if seconds is None:
        return "?"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
