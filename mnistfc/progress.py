"""What a running sweep is doing: shards on disk joined with the scheduler's job states."""

from __future__ import annotations

import logging
import os
import subprocess
from dataclasses import dataclass
from typing import Any

from mnistfc.sweep import SweepStatus, read_states, sweep_status

log = logging.getLogger(__name__)


def job_states(submission: dict[str, Any]) -> dict[str, str]:
    """Return each job's scheduler state for one recorded submission ("" when unknown).

    SLURM states come from sacct (accounting must be enabled); local jobs are processes.
    """
    ids = [str(j) for j in submission.get("job_ids", [])]
    if submission.get("executor") == "slurm" and ids:
        return _sacct_states(ids)
    if submission.get("executor") == "local":
        return {j: "RUNNING" if _pid_alive(j) else "ENDED" for j in ids}
    return {j: "ENDED" for j in ids}


def _sacct_states(ids: list[str]) -> dict[str, str]:
    # squeue knows a job the moment sbatch returns; sacct lags about a second behind and
    # keeps finished jobs. Live states from squeue win; sacct fills in the finished ones.
    arrays = ",".join(sorted({j.split("_")[0] for j in ids}))
    finished = _query(["sacct", "-n", "-P", "-X", "--format=JobID,State", "-j", arrays])
    live = _query(["squeue", "-h", "-r", "-o", "%i|%T", "-j", arrays])
    states = {**finished, **live}
    return {j: states.get(j, "") for j in ids}


def _query(command: list[str]) -> dict[str, str]:
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("%s failed (%s); job states may be incomplete", command[0], exc)
        return {}
    states = {}
    for line in out.splitlines():
        job, _, state = line.partition("|")
        if state:
            states[job.strip()] = state.split()[0]
    return states


def _pid_alive(job_id: str) -> bool:
    try:
        os.kill(int(job_id), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


_ACTIVE = {"RUNNING", "COMPLETING", "CONFIGURING", "REQUEUED", "RESIZING", "SUSPENDED"}
_QUEUED = {"PENDING", "REQUEUE_HOLD", "REQUEUE_FED"}


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
    status = sweep_status(results_dir)
    done = set(read_states(results_dir).status)
    states: dict[str, str] = {}
    live_jobs = 0
    for submission in reversed(status.submissions):  # the latest submission of a trial counts
        jobs = job_states(submission)
        live_jobs += sum(s in _ACTIVE | _QUEUED for s in jobs.values())
        for job_id, trial_ids in zip(submission["job_ids"], submission["chunks"], strict=False):
            for tid in trial_ids:
                if tid not in done:
                    states.setdefault(tid, jobs.get(str(job_id), ""))
    running = sum(s in _ACTIVE for s in states.values())
    queued = sum(s in _QUEUED for s in states.values())
    return Progress(status=status, running=running, queued=queued, live_jobs=live_jobs)
