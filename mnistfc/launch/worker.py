"""What one array task runs: the packs its plan gave it, in one process, data loaded once.

``run_task`` is pickled by reference by submitit and called on the compute node (or in a
container there), so it takes only plain data and imports TensorFlow only when it runs. It
never re-plans: each pack runs exactly as the submitter planned it, so a rerun finds the
checkpoints of the packs it interrupted.
"""

from __future__ import annotations

import logging
import os
import time
import traceback
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from mnistfc.engine import runtime
from mnistfc.errors import Interrupted, TaskFailed
from mnistfc.folder.checkpoints import checkpoint_path
from mnistfc.folder.claims import Claims
from mnistfc.folder.result import SweepRef, TrialResult
from mnistfc.folder.shards import final_result, write_failed
from mnistfc.provenance import environment, utc_now
from mnistfc.trial.config import TrialConfig
from mnistfc.trial.packs import Pack, Task

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TaskSpec:
    """One array task as pickled to its job: the planned ``Task`` (its packs, in order),
    where its results go and how to run it."""

    results_dir: str
    data_dir: str | None
    sweep: SweepRef
    task: Task
    packed: bool = True  # the packed engine; False: Keras, one trial at a time
    threads: int = 0  # TensorFlow threads for this process; 0 = TensorFlow's default
    devices: str | None = None  # CUDA_VISIBLE_DEVICES for this task (None: as inherited)
    epoch_train_metrics: bool = False  # the per-epoch pass over the training set (trial/spec.py)
    checkpoint_s: float = runtime.CHECKPOINT_S  # a pack's save interval (engine)

    @property
    def packs(self) -> tuple[Pack, ...]:
        """Return the task's packs, as planned."""
        return self.task.packs

    @property
    def n_trials(self) -> int:
        """Return how many trials the task holds."""
        return self.task.n_trials


def run_task(task: TaskSpec) -> list[tuple[str, str]]:
    """Run each pack's unfinished trials; return (trial id, outcome) for every trial.

    Each trial is claimed first (``folder/claims.py``), so two sweeps on one results folder never
    write a trial twice. A pack runs only as planned: if another live worker holds any of
    its trials, the pack is put off until this task's other packs are done, then its claims
    are awaited. What the holder finished is left to it: the pack resumes its checkpoint
    whole if it has one (those trials train along, shard-less), else the rest trains.
    Trials of several packs are never mixed. A failing pack does not stop the others; if
    any failed, TaskFailed is raised at the end, so the array task is reported as failed by
    submitit and SLURM.
    """
    if task.devices is not None:  # before TensorFlow starts: it reads the variable once
        os.environ["CUDA_VISIBLE_DEVICES"] = task.devices
    before, started = runtime.process_age_s(), time.perf_counter()
    datasets = _Datasets(task.data_dir)
    # The first trial without a result: its data (numpy work: unzip, scale) loads while
    # TensorFlow imports. One look per finished trial before it, no more.
    configs = (c for pack in task.packs for c in pack.configs)
    first = next((c for c in configs if not _has_result(task, c)), None)
    if first is not None:
        datasets.prefetch(first)
    runtime.load_tensorflow()
    runtime.limit_threads(task.threads)
    clock = {"tensorflow": time.perf_counter() - started, "data": 0.0, "packs": 0.0}
    outcome: list[tuple[str, str]] = []
    failures: list[str] = []
    claims = Claims(task.results_dir)
    try:
        put_off: list[Pack] = []
        for pack in task.packs:
            finished = _claim_pack(task, claims, pack)
            if finished is None:
                put_off.append(pack)
                continue
            outcome += [(i, "skipped") for i in finished]
            failures += _run_pack(task, pack, finished, claims, datasets, outcome, clock)
        # Packs with a trial held elsewhere: wait for the holder (it may die, or finish only
        # part of a pack it planned otherwise), so this task ends only when all are done.
        for pack in put_off:
            finished = _await_pack(task, claims, pack)
            outcome += [(i, "done elsewhere") for i in finished]
            failures += _run_pack(task, pack, finished, claims, datasets, outcome, clock)
    finally:
        claims.release_all()
        datasets.close()
    # Where a lane's time went, for benchmarks/bench_grid.py (and anyone reading the log).
    log.info("task timing: process start %s s, TensorFlow %.1f s, data %.1f s, packs %.1f s, "
             "task %.1f s", "?" if before is None else f"{before:.1f}", clock["tensorflow"],
             clock["data"], clock["packs"], time.perf_counter() - started)  # fmt: skip
    if failures:
        raise TaskFailed(
            f"{len(failures)} of {task.n_trials} trials failed (tracebacks in their shards): "
            + "; ".join(failures)
        )
    return outcome


def _has_result(task: TaskSpec, config: TrialConfig) -> bool:
    # A failed shard in a task is one the submitter chose to rerun (--rerun-failed): only a
    # result (completed or diverged) means the trial is done.
    return final_result(task.results_dir, config.trial_id, rerun_failed=True) is not None


def _claim_pack(task: TaskSpec, claims: Claims, pack: Pack) -> list[str] | None:
    """Claim a pack's unfinished trials and return the ids of its finished ones; None
    (nothing held) if another worker holds one of its trials."""
    todo: list[TrialConfig] = []
    finished: list[str] = []
    for config in pack.configs:
        # The first look saves a lock file per finished trial; the second closes the race
        # of a trial finishing between that look and the claim.
        if _has_result(task, config):
            finished.append(config.trial_id)
            continue
        if not claims.claim(config.trial_id):
            log.info("trial %s is claimed by another worker; its pack of %d waits for it",
                     config.trial_id, len(pack))  # fmt: skip
            for mine in todo:
                claims.release(mine.trial_id)
            return None
        if _has_result(task, config):
            claims.release(config.trial_id)
            finished.append(config.trial_id)
            continue
        todo.append(config)
    return finished


def _await_pack(task: TaskSpec, claims: Claims, pack: Pack) -> list[str]:
    """Wait for every claim of a pack, then return the ids of its trials that have a result.

    Claims are taken in trial-id order, the same in every worker, so two workers waiting on
    each other's trials cannot deadlock.
    """
    done = []
    for config in sorted(pack.configs, key=lambda c: c.trial_id):
        claims.claim(config.trial_id, wait=True)
        if _has_result(task, config):
            claims.release(config.trial_id)
            done.append(config.trial_id)
    return done


def _to_train(task: TaskSpec, pack: Pack, finished: list[str]) -> tuple[Pack | None, set[str]]:
    """Return what to train of a planned pack some of whose trials have results, and which
    of those train along without a shard.

    With the pack's checkpoint on disk, the whole pack trains (same id, so it resumes there)
    and the finished trials' shards are left alone; without one, the rest trains as a pack
    of its own. Either way no trial of another pack joins it.
    """
    if not finished:
        return pack, set()
    if task.packed and checkpoint_path(task.results_dir, pack.id).exists():
        log.info("pack %s resumes whole: %d of its trials were finished elsewhere",
                 pack.id, len(finished))  # fmt: skip
        return pack, set(finished)
    return pack.without(finished), set()


def _run_pack(
    task: TaskSpec,
    planned: Pack,
    finished: list[str],
    claims: Claims,
    datasets: _Datasets,
    outcome: list[tuple[str, str]],
    clock: dict[str, float],
) -> list[str]:
    """Run one pack (packed) or its trials one by one (Keras); return failure lines."""
    pack, elsewhere = _to_train(task, planned, finished)
    if pack is None:
        return []
    configs = list(pack.configs)
    mine = [c for c in configs if c.trial_id not in elsewhere]
    started = time.perf_counter()
    try:
        dataset = datasets.get(configs[0])
    except Exception as exc:  # record it per trial: status must show why each one failed
        now = utc_now()
        env = {**environment(), "started_at": now, "finished_at": now}
        write_failed(task.results_dir, mine, traceback.format_exc(), env=env, sweep=task.sweep)
        outcome += [(c.trial_id, "failed") for c in mine]
        return [f"{c.trial_id}: {exc}" for c in mine]
    load_s = time.perf_counter() - started
    clock["data"] += load_s
    groups = [configs] if task.packed else [[c] for c in configs]
    failures = []
    for group in groups:
        started = time.perf_counter()
        try:
            results = _train(task, group, dataset, load_s, elsewhere)
        except Interrupted:
            raise  # state saved; the requeued or rerun task resumes it
        except Exception as exc:  # the engines write failed shards; go on with the task
            lost = [c for c in group if c.trial_id not in elsewhere]
            failures += [f"{c.trial_id}: {type(exc).__name__}: {exc}" for c in lost]
            outcome += [(c.trial_id, "failed") for c in lost]
            continue
        finally:
            clock["packs"] += time.perf_counter() - started
        outcome += [(r.trial_id, r.status.value) for r in results]
        for config in group:
            claims.release(config.trial_id)
    return failures


def _train(
    task: TaskSpec, group: list[TrialConfig], dataset: Any, load_s: float, elsewhere: set[str]
) -> list[TrialResult]:
    if task.packed:
        from mnistfc.engine.pack.loop import run_pack

        log.info("pack of %d trial(s): %s", len(group), ", ".join(c.trial_id for c in group))
        return run_pack(group, dataset, task.results_dir, sweep=task.sweep, load_s=load_s,
                        epoch_train_metrics=task.epoch_train_metrics,
                        checkpoint_s=task.checkpoint_s, finished_elsewhere=elsewhere)  # fmt: skip
    from mnistfc.engine.train import run_trial

    log.info("trial %s: %s", group[0].trial_id, group[0])
    return [
        run_trial(
            group[0],
            dataset,
            task.results_dir,
            sweep=task.sweep,
            load_s=load_s,
            verbose=2,
            epoch_train_metrics=task.epoch_train_metrics,
        )  # fmt: skip
    ]


class _Datasets:
    """The datasets a task's packs ask for, each loaded once, in a thread of its own: the
    first one while TensorFlow imports (a lane's start-up is both)."""

    def __init__(self, data_dir: str | None) -> None:
        self._data_dir = data_dir
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mnistfc-data")
        self._loads: dict[tuple[str, int, str], Future[Any]] = {}

    def prefetch(self, config: TrialConfig) -> Future[Any]:
        """Start loading what ``config`` trains on, unless that is under way or done."""
        from mnistfc.data.dataset import dataset_for

        key = (config.dataset, config.valid_size, config.valid_split)
        if key not in self._loads:
            self._loads[key] = self._pool.submit(dataset_for, config, self._data_dir)
        return self._loads[key]

    def get(self, config: TrialConfig) -> Any:
        """Return the dataset; a load that failed raises its error here, for every pack."""
        return self.prefetch(config).result()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class TaskRunner:
    """``run_task`` as a callable submitit can checkpoint: preempted or timed out, requeue.

    SLURM signals the task before killing it (preemption, or ``--signal`` before the time
    limit); submitit then calls ``checkpoint`` and requeues the same task. Nothing needs
    saving at that moment: shards and each pack's per-epoch state are already on disk, so the
    requeued task skips finished trials and resumes its packs after their last saved epoch.
    """

    def __call__(self, task: TaskSpec) -> list[tuple[str, str]]:
        runtime.log_job_to_stderr()
        return run_task(task)

    def checkpoint(self, task: TaskSpec) -> Any:
        """Return the same task for submitit to requeue."""
        from submitit.helpers import DelayedSubmission

        log.info("checkpoint requested: requeueing this task; finished work is on disk")
        return DelayedSubmission(self, task)
