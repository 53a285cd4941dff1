"""What one array task runs: a chunk of trials in one process, data loaded once.

This function is pickled by reference by submitit and called on the compute node (or in a
container there), so it takes only plain data and imports TensorFlow only when it runs. With
``pack``, trials that can share a step train together (``packtrain``); otherwise one by one
through Keras (``train``).
"""

from __future__ import annotations

import logging
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnistfc.claims import Claims
from mnistfc.config import TrialConfig
from mnistfc.errors import MnistfcError
from mnistfc.pack import DEFAULT_PACK_MB, plan_packs
from mnistfc.shards import Status, TrialResult, read_shard, shard_path, write_shard

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChunkTask:
    """The plain, picklable description of one array task."""

    results_dir: str
    data_dir: str | None
    sweep: dict[str, Any]
    configs: tuple[dict[str, Any], ...]
    pack: bool = False
    pack_mb: float = DEFAULT_PACK_MB
    threads: int = 0  # TensorFlow threads for this process; 0 = TensorFlow's default


class ChunkFailed(MnistfcError):
    """Some trials of a chunk failed; their shards hold the tracebacks."""


def run_chunk(task: ChunkTask) -> list[dict[str, str]]:
    """Run each trial of the chunk that has no completed shard yet; return id and status.

    Each trial is claimed first (``claims.py``): one that another live worker holds is left
    to it, so two sweeps on one results folder never run a trial twice. A failing trial (or
    pack) does not stop the others. If any failed, ChunkFailed is raised
    at the end, so the array task is reported as failed by submitit and SLURM.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    _limit_threads(task.threads)
    outcome: list[dict[str, str]] = []
    failures: list[str] = []
    claims = Claims(task.results_dir)
    try:
        todo, elsewhere = _claim_pending(task, claims, outcome)
        failures = _run_groups(task, _group(task, todo), claims, outcome)
        # Trials another worker held: wait for it, then run whatever it did not finish
        # (it may have died), so this task ends only when all of its trials are done.
        leftover = []
        for config in elsewhere:
            claims.claim(config.trial_id, wait=True)
            if _already_done(task.results_dir, config.trial_id):
                claims.release(config.trial_id)
                outcome.append({"trial_id": config.trial_id, "status": "done elsewhere"})
            else:
                leftover.append(config)
        failures += _run_groups(task, _group(task, leftover), claims, outcome)
    finally:
        claims.release_all()
    if failures:
        raise ChunkFailed(
            f"{len(failures)} of {len(task.configs)} trials failed (tracebacks in their shards): "
            + "; ".join(failures)
        )
    return outcome


def _group(task: ChunkTask, configs: list[TrialConfig]) -> list[list[TrialConfig]]:
    return plan_packs(configs, task.pack_mb) if task.pack else [[c] for c in configs]


def _claim_pending(
    task: ChunkTask, claims: Claims, outcome: list[dict[str, str]]
) -> tuple[list[TrialConfig], list[TrialConfig]]:
    """Return the unfinished trials this process claimed, and those another worker holds."""
    todo, elsewhere = [], []
    for raw in task.configs:
        config = TrialConfig.from_dict(raw)
        if _already_done(task.results_dir, config.trial_id):
            outcome.append({"trial_id": config.trial_id, "status": "skipped"})
        elif not claims.claim(config.trial_id):  # another sweep's worker runs it right now
            log.info("trial %s is claimed by another worker; waiting for it", config.trial_id)
            elsewhere.append(config)
        elif _already_done(task.results_dir, config.trial_id):  # finished while we looked
            claims.release(config.trial_id)
            outcome.append({"trial_id": config.trial_id, "status": "skipped"})
        else:
            todo.append(config)
    return todo, elsewhere


def _run_groups(
    task: ChunkTask,
    groups: list[list[TrialConfig]],
    claims: Claims,
    outcome: list[dict[str, str]],
) -> list[str]:
    from mnistfc.data import load_dataset
    from mnistfc.train import environment

    datasets: dict[tuple[str, int], Any] = {}
    failures: list[str] = []
    for group in groups:
        key = (group[0].dataset, group[0].valid_size)
        try:
            started = time.perf_counter()
            if key not in datasets:
                datasets[key] = load_dataset(group[0].dataset, task.data_dir, group[0].valid_size)
            load_s = time.perf_counter() - started
        except Exception as exc:  # record it per trial: status must show why each one failed
            for config in group:
                _write_failed(task, config, traceback.format_exc(), environment())
                failures.append(f"{config.trial_id}: {exc}")
                outcome.append({"trial_id": config.trial_id, "status": Status.FAILED.value})
            continue
        try:
            results = _run_group(task, group, datasets[key], load_s)
        except Exception as exc:  # the trainer wrote failed shards; go on with the chunk
            for config in group:
                failures.append(f"{config.trial_id}: {type(exc).__name__}: {exc}")
                outcome.append({"trial_id": config.trial_id, "status": Status.FAILED.value})
            continue
        outcome += [{"trial_id": r.trial_id, "status": r.status.value} for r in results]
        for config in group:
            claims.release(config.trial_id)
    return failures


class ChunkRunner:
    """``run_chunk`` as a callable submitit can checkpoint: preempted or timed out, requeue.

    SLURM signals the task before killing it (preemption, or ``--signal`` before the time
    limit); submitit then calls ``checkpoint`` and requeues the same task. Nothing needs
    saving at that moment: shards and each pack's per-epoch state are already on disk, so the
    requeued task skips finished trials and resumes its packs after their last saved epoch.
    """

    def __call__(self, task: ChunkTask) -> list[dict[str, str]]:
        return run_chunk(task)

    def checkpoint(self, task: ChunkTask) -> Any:
        """Return the same task for submitit to requeue."""
        from submitit.helpers import DelayedSubmission

        log.info("checkpoint requested: requeueing this task; finished work is on disk")
        return DelayedSubmission(self, task)


def _run_group(
    task: ChunkTask, group: list[TrialConfig], dataset: Any, load_s: float
) -> list[TrialResult]:
    if task.pack:
        from mnistfc.packtrain import run_pack

        log.info("pack of %d trial(s): %s", len(group), ", ".join(c.trial_id for c in group))
        return run_pack(group, dataset, task.results_dir, sweep=task.sweep, load_s=load_s)
    from mnistfc.train import run_trial

    log.info("trial %s: %s", group[0].trial_id, group[0])
    result = run_trial(
        group[0], dataset, task.results_dir, sweep=task.sweep, load_s=load_s, verbose=2
    )
    return [result]


def _limit_threads(threads: int) -> None:
    # Lanes that share a machine each get their cores: one op at a time, ``threads`` inside it.
    # Must run before TensorFlow starts its thread pools (the first op).
    if threads < 1:
        return
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        log.debug("TensorFlow already initialised; thread settings unchanged")


def _already_done(results_dir: str, trial_id: str) -> bool:
    # A requeued or re-run task skips what an earlier attempt finished.
    path = shard_path(results_dir, trial_id)
    if not path.exists():
        return False
    try:
        return read_shard(path)["status"] in (Status.COMPLETED.value, Status.DIVERGED.value)
    except MnistfcError:
        return False


def _write_failed(task: ChunkTask, config: TrialConfig, error: str, env: dict[str, Any]) -> None:
    write_shard(
        Path(task.results_dir),
        TrialResult(
            config=config,
            status=Status.FAILED,
            metrics=None,
            history=[],
            timing={},
            env=env,
            sweep=task.sweep,
            error=error,
        ),
    )
