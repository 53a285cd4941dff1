"""What one array task runs: a chunk of trials in one process, data loaded once.

This function is pickled by reference by submitit and called on the compute node (or in a
container there), so it takes only plain data and imports TensorFlow only when it runs.
"""

from __future__ import annotations

import logging
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnistfc.config import TrialConfig
from mnistfc.errors import MnistfcError
from mnistfc.shards import Status, TrialResult, read_shard, shard_path, write_shard

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChunkTask:
    """The plain, picklable description of one array task."""

    results_dir: str
    data_dir: str | None
    sweep: dict[str, Any]
    configs: tuple[dict[str, Any], ...]


class ChunkFailed(MnistfcError):
    """Some trials of a chunk failed; their shards hold the tracebacks."""


def run_chunk(task: ChunkTask) -> list[dict[str, str]]:
    """Run each trial of the chunk that has no completed shard yet; return id and status.

    A failing trial does not stop the others. If any failed, ChunkFailed is raised at the
    end, so the array task is reported as failed by submitit and SLURM.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    from mnistfc.data import load_dataset
    from mnistfc.train import environment, run_trial

    datasets: dict[tuple[str, int], Any] = {}
    outcome: list[dict[str, str]] = []
    failures: list[str] = []
    for raw in task.configs:
        config = TrialConfig.from_dict(raw)
        if _already_done(task.results_dir, config.trial_id):
            outcome.append({"trial_id": config.trial_id, "status": "skipped"})
            continue
        key = (config.dataset, config.valid_size)
        try:
            started = time.perf_counter()
            if key not in datasets:
                datasets[key] = load_dataset(config.dataset, task.data_dir, config.valid_size)
            load_s = time.perf_counter() - started
        except Exception as exc:  # record it per trial: status must show why each one failed
            _write_failed(task, config, traceback.format_exc(), environment())
            failures.append(f"{config.trial_id}: {exc}")
            outcome.append({"trial_id": config.trial_id, "status": Status.FAILED.value})
            continue
        log.info("trial %s: %s", config.trial_id, config)
        try:
            result = run_trial(
                config, datasets[key], task.results_dir, sweep=task.sweep, load_s=load_s, verbose=2
            )
        except Exception as exc:  # run_trial wrote the failed shard; go on with the chunk
            failures.append(f"{config.trial_id}: {type(exc).__name__}: {exc}")
            outcome.append({"trial_id": config.trial_id, "status": Status.FAILED.value})
            continue
        outcome.append({"trial_id": config.trial_id, "status": result.status.value})
    if failures:
        raise ChunkFailed(
            f"{len(failures)} of {len(task.configs)} trials failed (tracebacks in their shards): "
            + "; ".join(failures)
        )
    return outcome


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
