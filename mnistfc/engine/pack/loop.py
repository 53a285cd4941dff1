"""Train a pack of trials together, each keeping its own math, and record one shard each.

Why: at the exercise's sizes a Keras step is mostly per-step overhead, so trials that share
batch size and epochs (``planner``) run one compiled step together (``model``).

What each trial keeps, so packing changes no trial's math: its initial weights (Keras's own,
built from its seed), its data order (shuffled from its seed), its dropout rate and masks
(drawn from its seed), its activation, Adam with its own learning rate and moments, the
restore of its best validation epoch, and its metrics and shard. Its numbers depend on its
config alone, never on which other trials share the pack; they differ from a Keras run of
the same config only in which random numbers are drawn.

The epoch loop below saves the pack's state at the first epoch end ``checkpoint_s`` after its
last save (a pack of 40 trials holds ~70 MB of weights and Adam moments: saving every epoch
wrote ~14 GB per study) and, when the process is asked to stop (SIGTERM, SIGUSR2), at the
next step boundary; a rerun resumes from that state.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import traceback
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mnistfc.data.dataset import Dataset, matches
from mnistfc.engine import runtime
from mnistfc.engine.pack.model import SPLITS, PackedModel
from mnistfc.engine.pack.planner import n_params, pack_key
from mnistfc.errors import ConfigError, Interrupted
from mnistfc.folder.checkpoints import (
    PackState,
    checkpoint_path,
    load_state,
    remove_state,
    save_state,
)
from mnistfc.folder.heartbeat import Heartbeat, clear_heartbeat, write_heartbeat
from mnistfc.folder.labels import SCORED, predictions_record
from mnistfc.folder.result import SweepRef, TrialResult
from mnistfc.folder.schema import Status
from mnistfc.folder.shards import write_failed, write_shard
from mnistfc.provenance import environment, utc_now
from mnistfc.trial.config import TrialConfig
from mnistfc.trial.packs import pack_id

log = logging.getLogger(__name__)

ENGINE = "packed-v1"
# Steps per compiled call: between calls the loop checks for a stop request, so a SIGTERM
# is answered within this many steps; a call costs well under a millisecond.
SEGMENT_STEPS = 64
# Work a node failure (SIGKILL, no warning) may cost a pack; stops that warn always save.
CHECKPOINT_S = runtime.CHECKPOINT_S


def run_pack(
    configs: Sequence[TrialConfig],
    dataset: Dataset,
    results_dir: str | Path | None = None,
    *,
    sweep: SweepRef | None = None,
    load_s: float = 0.0,
    epoch_train_metrics: bool = False,
    checkpoint_s: float = CHECKPOINT_S,
    finished_elsewhere: Collection[str] = (),
) -> list[TrialResult]:
    """Train the configs together; write one shard each when ``results_dir`` is given.

    ``finished_elsewhere`` are trials of the pack that another worker has finished since
    it was planned: they train along (so the pack keeps its id and resumes its checkpoint)
    but their shards are left as they are, and they are not returned.

    The pack's state is saved at an epoch end once ``checkpoint_s`` seconds have passed since
    its last save (0: every epoch), and always when a stop is requested.

    ``epoch_train_metrics`` adds a pass over the whole training set after every epoch
    (history's ``train_loss``/``train_acc``; else null there); the final metrics of the
    restored best epoch always include the training set.

    A trial whose loss goes non-finite is ``diverged`` and does not disturb the others. A
    stop request (SIGTERM) saves the pack and raises ``Interrupted``, writing no shard. Any
    other exception writes a ``failed`` shard for every trial of the pack (but those
    finished elsewhere) and is re-raised.
    """
    configs = list(configs)
    started, started_at = time.perf_counter(), utc_now()
    pid = pack_id(c.trial_id for c in configs)
    checkpoint = None if results_dir is None else checkpoint_path(results_dir, pid)
    try:
        _check_pack(configs, dataset)  # inside: a pack refused gets failed shards too
        with runtime.stop_on_signals():
            results = _train(configs, dataset, results_dir, pid, sweep=sweep, load_s=load_s,
                             epoch_train_metrics=epoch_train_metrics,
                             checkpoint_s=checkpoint_s)  # fmt: skip
    except Interrupted:
        raise
    except Exception:
        elapsed = load_s + time.perf_counter() - started
        env = {**environment(), "engine": ENGINE, "pack": {"id": pid, "size": len(configs)},
               "started_at": started_at, "finished_at": utc_now()}  # fmt: skip
        mine = [c for c in configs if c.trial_id not in finished_elsewhere]
        write_failed(results_dir, mine, traceback.format_exc(), env=env,
                     timing={"load_s": load_s, "total_s": elapsed}, data=dataset.describe(),
                     sweep=sweep)  # fmt: skip
        raise
    written = time.perf_counter()
    pack = results[0].env["pack"]
    results = [r for r in results if r.trial_id not in finished_elsewhere]
    if results_dir is not None:
        for result in results:
            write_shard(results_dir, result)
    if checkpoint is not None:
        remove_state(checkpoint)
    if results_dir is not None:
        clear_heartbeat(results_dir, pid)
    log.info("pack %s timing: build %.1f s, epochs %.1f s (first %.1f s), final evaluation "
             "%.1f s, shards %.1f s", pid, pack["build_s"], pack["fit_s"], pack["first_epoch_s"],
             pack["eval_s"], time.perf_counter() - written)  # fmt: skip
    return results


def _train(
    configs: list[TrialConfig],
    dataset: Dataset,
    results_dir: str | Path | None,
    pid: str,
    *,
    sweep: SweepRef | None,
    load_s: float,
    epoch_train_metrics: bool,
    checkpoint_s: float,
) -> list[TrialResult]:
    checkpoint = None if results_dir is None else checkpoint_path(results_dir, pid)
    built = time.perf_counter()
    model = PackedModel(configs, dataset)
    state = _restore(model, checkpoint) or PackState.fresh([c.trial_id for c in configs])
    build_s = time.perf_counter() - built
    state.started_at = state.started_at or utc_now()
    fit_start, fit_before = time.perf_counter(), state.fit_s
    epochs = configs[0].epochs
    saved = time.perf_counter()
    for epoch in range(state.epoch + 1, epochs + 1):
        tick = time.perf_counter()
        loss, acc = _train_epoch(model, state, epoch, checkpoint, fit_before, fit_start)
        train = model.evaluate("train")[:2] if epoch_train_metrics else None
        improved = state.record_epoch(epoch, loss, acc, train, model.evaluate("valid")[:2])
        model.keep_best(improved)
        state.fit_s = fit_before + time.perf_counter() - fit_start
        state.epoch_s.append(time.perf_counter() - tick)
        ending = epoch == epochs or state.all_diverged  # its shards follow: nothing to resume
        due = not ending and time.perf_counter() - saved >= checkpoint_s
        if due:
            _save(checkpoint, model, state)
            saved = time.perf_counter()
        _beat(results_dir, pid, state, epochs)
        log.info(
            "pack of %d (batch %d): epoch %d/%d in %.1f s, best valid accuracy %.4f",
            len(configs), model.batch_size, epoch, epochs, time.perf_counter() - tick,
            max((v for v in state.best_val if v is not None), default=float("nan")),
        )  # fmt: skip
        if state.all_diverged:
            break
        runtime.hold_point()
        if runtime.stop_requested() and epoch < epochs:
            if not due:  # saved a moment ago otherwise
                _save(checkpoint, model, state)
            raise Interrupted(f"pack stopped on request after epoch {epoch}; state saved")
    fit_s = state.fit_s
    eval_start = time.perf_counter()
    # The final epoch's weights are scored too: the exercise's loops scored those.
    final = {split: model.evaluate(split, best=True) for split in SPLITS}
    last = {split: model.evaluate(split) for split in SCORED}
    true = {split: model.true_labels(split) for split in SCORED}
    first_epoch_s = state.epoch_s[0] if state.epoch_s else 0.0
    timing = {"load_s": load_s, "fit_s": fit_s, "eval_s": time.perf_counter() - eval_start,
              "build_s": build_s, "first_epoch_s": first_epoch_s}  # fmt: skip
    step = "xla" if model.compiled else "graph"  # which step made the numbers
    return _results(configs, state, (final, last, true), timing, dataset, sweep, pid, step)


def _beat(results_dir: str | Path | None, pid: str, state: PackState, epochs: int) -> None:
    if results_dir is None:
        return
    env = os.environ
    job = env.get("SLURM_ARRAY_JOB_ID", "")
    job = f"{job}_{env.get('SLURM_ARRAY_TASK_ID', '')}" if job else env.get("SLURM_JOB_ID", "")
    beat = Heartbeat(pid, tuple(state.trials), state.epoch, epochs, tuple(state.epoch_s),
                     host=socket.gethostname(), job_id=job or str(os.getpid()))  # fmt: skip
    write_heartbeat(results_dir, beat)


def _train_epoch(
    model: PackedModel,
    state: PackState,
    epoch: int,
    checkpoint: Path | None,
    fit_before: float,
    fit_start: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Run one epoch in segments; return each trial's mean training loss and accuracy."""
    perms = model.permutations(epoch)
    n = len(model.configs)
    loss_sum = np.array(state.partial_loss or [0.0] * n)
    correct = np.array(state.partial_correct or [0.0] * n)
    for start in range(state.next_step, model.steps_per_epoch, SEGMENT_STEPS):
        stop = min(start + SEGMENT_STEPS, model.steps_per_epoch)
        segment_loss, segment_correct = model.train_steps(perms, start, stop)
        loss_sum, correct = loss_sum + segment_loss, correct + segment_correct
        if runtime.stop_requested() and stop < model.steps_per_epoch:
            state.next_step, state.partial_loss, state.partial_correct = (
                stop, loss_sum.tolist(), correct.tolist()
            )  # fmt: skip
            state.fit_s = fit_before + time.perf_counter() - fit_start
            _save(checkpoint, model, state)
            raise Interrupted(f"pack stopped on request at epoch {epoch}, step {stop}; saved")
    return loss_sum / model.n_train, correct / model.n_train


def _save(checkpoint: Path | None, model: PackedModel, state: PackState) -> None:
    if checkpoint is not None:
        save_state(checkpoint, [v.numpy() for v in model.variables()], state)


def _restore(model: PackedModel, checkpoint: Path | None) -> PackState | None:
    saved = None if checkpoint is None else load_state(checkpoint, _ids(model))
    if saved is None:
        return None
    arrays, state = saved
    variables = model.variables()
    if len(arrays) != len(variables) or any(
        a.shape != tuple(v.shape) for a, v in zip(arrays, variables, strict=True)
    ):
        log.warning("ignoring checkpoint %s: its arrays do not fit this pack", checkpoint)
        return None
    for array, variable in zip(arrays, variables, strict=True):
        variable.assign(array)
    log.info(
        "pack resumed after epoch %d, step %d, from %s", state.epoch, state.next_step, checkpoint
    )
    return state


def _ids(model: PackedModel) -> list[str]:
    return [c.trial_id for c in model.configs]


def _results(
    configs: list[TrialConfig],
    state: PackState,
    scored: tuple[dict[str, tuple[np.ndarray, ...]], dict[str, tuple[np.ndarray, ...]], Any],
    timing: dict[str, float],
    dataset: Dataset,
    sweep: SweepRef | None,
    pid: str,
    step: str,
) -> list[TrialResult]:
    """One result per trial; compute is shared, so each is charged its share of parameters."""
    fit_s, eval_s, load_s = timing["fit_s"], timing["eval_s"], timing["load_s"]
    pack = {"id": pid, "size": len(configs), "step": step, "fit_s": fit_s, "eval_s": eval_s,
            "build_s": timing["build_s"], "first_epoch_s": timing["first_epoch_s"]}  # fmt: skip
    env = {**environment(), "engine": ENGINE, "pack": pack, "started_at": state.started_at,
           "finished_at": utc_now()}  # fmt: skip
    weights = np.array([n_params(c) for c in configs], dtype=float)
    share = weights / weights.sum()
    final, last, true = scored
    results = []
    for t, config in enumerate(configs):
        metrics: dict[str, Any] | None = None
        predictions = None
        if state.best_epoch[t] is not None:
            metrics = {split: _split_metrics(final[split], t) for split in SPLITS}
            metrics["best_epoch"] = state.best_epoch[t]
            ended = state.diverged_at[t] is None  # else its final weights are not finite
            metrics["last"] = (
                {"epoch": state.epoch, **{s: _split_metrics(last[s], t) for s in SCORED}}
                if ended
                else None
            )
            predictions = predictions_record(
                true,
                {split: final[split][2][t] for split in SCORED},
                {split: last[split][2][t] for split in SCORED} if ended else None,
            )
        diverged = state.diverged_at[t] is not None or metrics is None
        if state.diverged_at[t] is not None:
            log.warning(
                "trial %s diverged (non-finite loss at epoch %s)",
                config.trial_id,
                state.diverged_at[t],
            )
        results.append(
            TrialResult(
                config=config,
                status=Status.DIVERGED if diverged else Status.COMPLETED,
                metrics=metrics,
                history=state.history[t],
                timing={
                    "load_s": load_s,
                    "fit_s": fit_s * share[t],
                    "eval_s": eval_s * share[t],
                    "total_s": load_s + (fit_s + eval_s) * share[t],
                    "elapsed_s": load_s + fit_s + eval_s,
                },
                env=env,
                data=dataset.describe(),
                sweep=sweep,
                predictions=predictions,
            )
        )
    return results


def _split_metrics(scores: tuple[np.ndarray, ...], t: int) -> dict[str, float]:
    accuracy = float(scores[1][t])
    return {"loss": float(scores[0][t]), "accuracy": accuracy, "error_pct": 100.0 * (1 - accuracy)}


def _check_pack(configs: list[TrialConfig], dataset: Dataset) -> None:
    keys = {pack_key(c) for c in configs}
    if len(keys) != 1:
        raise ConfigError(f"a pack needs one batch size, epochs and dataset; got {sorted(keys)}")
    for config in configs:
        if not matches(config, dataset):
            raise ConfigError(
                f"trial {config.trial_id} wants dataset={config.dataset} with valid_size="
                f"{config.valid_size} ({config.valid_split} split), but the loaded data is "
                f"{dataset.name} with {len(dataset.x_valid)} validation images "
                f"({dataset.valid_split} split)"
            )
