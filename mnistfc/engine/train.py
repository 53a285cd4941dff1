"""Run one trial as a pure function of its config and dataset, and record it as a shard.

This is the module that imports Keras (TensorFlow): planning, status and aggregation import
it lazily or not at all.
"""

from __future__ import annotations

import logging
import math
import os
import time
import traceback
from typing import Any

import keras

from mnistfc.data.dataset import Dataset, matches
from mnistfc.engine.model import build_model
from mnistfc.engine.runtime import EVAL_BATCH, configure_gpus
from mnistfc.errors import ConfigError
from mnistfc.folder.labels import SCORED, predictions_record
from mnistfc.folder.result import SweepRef, TrialResult
from mnistfc.folder.schema import Status
from mnistfc.folder.shards import write_failed, write_shard
from mnistfc.provenance import environment, utc_now
from mnistfc.trial.config import TrialConfig

log = logging.getLogger(__name__)

ENGINE = "keras-v1"  # shards say which engine made their numbers (env.engine)


def run_trial(
    config: TrialConfig,
    dataset: Dataset,
    results_dir: str | os.PathLike[str] | None = None,
    *,
    sweep: SweepRef | None = None,
    load_s: float = 0.0,
    verbose: int = 0,
    epoch_train_metrics: bool = False,
) -> TrialResult:
    """Train and evaluate one model; write its shard to ``results_dir/shards`` when given.

    ``epoch_train_metrics`` (the exercise's single model: on; its sweeps: off) measures the
    whole training set without dropout after every epoch, as its CalculateMetrics did.

    A non-finite loss is a result: the shard says ``diverged`` and this returns normally. Any
    other exception writes a ``failed`` shard with the traceback and is re-raised, so that
    submitit and SLURM report the failure too.
    """
    _check_dataset_matches(config, dataset)
    started, started_at = time.perf_counter(), utc_now()
    try:
        result = _train_and_evaluate(config, dataset, started_at, sweep=sweep, load_s=load_s,
                                     verbose=verbose,
                                     epoch_train_metrics=epoch_train_metrics)  # fmt: skip
    except Exception:
        write_failed(results_dir, [config], traceback.format_exc(), env=_env(started_at),
                     timing={"load_s": load_s, "total_s": load_s + time.perf_counter() - started},
                     data=dataset.describe(), sweep=sweep)  # fmt: skip
        raise
    if results_dir is not None:
        write_shard(results_dir, result)
    return result


def _train_and_evaluate(
    config: TrialConfig,
    dataset: Dataset,
    started_at: str,
    *,
    sweep: SweepRef | None,
    load_s: float,
    verbose: int,
    epoch_train_metrics: bool,
) -> TrialResult:
    configure_gpus()
    # One call seeds Python, NumPy and TensorFlow: weight init, shuffling and dropout masks.
    keras.utils.set_random_seed(config.seed)
    model = build_model(config)
    guard = _DivergenceGuard()
    true_metrics = _TrueTrainMetrics(dataset.x_train, dataset.y_train)
    best = _BestEpoch()

    fit_start = time.perf_counter()
    fitted = model.fit(
        dataset.x_train,
        dataset.y_train,
        batch_size=config.batch_size,
        epochs=config.epochs,
        validation_data=(dataset.x_valid, dataset.y_valid),
        callbacks=[guard, *([true_metrics] if epoch_train_metrics else []), best],
        verbose=verbose,
    )
    fit_s = time.perf_counter() - fit_start
    history = _history_records(fitted.history)

    eval_start = time.perf_counter()
    metrics: dict[str, Any] | None = None
    predictions = None
    # The final epoch's weights are scored before the best epoch's are restored: the
    # exercise's loops scored these (fit, then evaluate), so a study can compute both rules.
    last = None if guard.diverged or not history else _score(model, dataset)
    if best.weights is not None:
        model.set_weights(best.weights)
        chosen = _score(model, dataset)
        metrics = {
            "train": _evaluate(model, dataset.x_train, dataset.y_train),
            **{split: chosen[split][0] for split in SCORED},
            "best_epoch": best.epoch,
            "last": None
            if last is None
            else {"epoch": len(history), **{split: last[split][0] for split in SCORED}},
        }
        predictions = predictions_record(
            {split: getattr(dataset, f"y_{split}").argmax(axis=1) for split in SCORED},
            {split: chosen[split][1] for split in SCORED},
            None if last is None else {split: last[split][1] for split in SCORED},
        )
    eval_s = time.perf_counter() - eval_start

    status = Status.DIVERGED if guard.diverged or metrics is None else Status.COMPLETED
    if status is Status.DIVERGED:
        log.warning("trial %s diverged (non-finite loss at epoch %s)", config.trial_id, guard.epoch)
    return TrialResult(
        config=config,
        status=status,
        metrics=metrics,
        history=history,
        timing={
            "load_s": load_s,
            "fit_s": fit_s,
            "eval_s": eval_s,
            "total_s": load_s + fit_s + eval_s,
        },
        env=_env(started_at),
        data=dataset.describe(),
        sweep=sweep,
        predictions=predictions,
        model=model,
    )


def _env(started_at: str) -> dict[str, Any]:
    return {**environment(), "engine": ENGINE, "started_at": started_at, "finished_at": utc_now()}


def _evaluate(model: Any, x: Any, y: Any) -> dict[str, float]:
    scores = model.evaluate(x, y, batch_size=EVAL_BATCH, verbose=0, return_dict=True)
    accuracy = float(scores["accuracy"])
    return {
        "loss": float(scores["loss"]),
        "accuracy": accuracy,
        "error_pct": 100.0 * (1.0 - accuracy),
    }


def _score(model: Any, dataset: Dataset) -> dict[str, tuple[dict[str, float], Any]]:
    """Return each scored slice's metrics and predicted labels under the current weights."""
    scored = {}
    for split in SCORED:
        x, y = getattr(dataset, f"x_{split}"), getattr(dataset, f"y_{split}")
        probabilities = model.predict(x, batch_size=EVAL_BATCH, verbose=0)
        scored[split] = (_evaluate(model, x, y), probabilities.argmax(axis=1))
    return scored


def _history_records(history: dict[str, list[float]]) -> list[dict[str, float | None]]:
    keys = ("loss", "accuracy", "val_loss", "val_accuracy", "train_loss", "train_acc")
    n_epochs = len(history.get("loss", []))
    return [
        {"epoch": i + 1, **{k: _float_or_none(history.get(k, [])[i : i + 1]) for k in keys}}
        for i in range(n_epochs)
    ]


def _float_or_none(values: list[float]) -> float | None:
    return float(values[0]) if values else None


def _check_dataset_matches(config: TrialConfig, dataset: Dataset) -> None:
    if not matches(config, dataset):
        raise ConfigError(
            f"trial wants dataset={config.dataset} with valid_size={config.valid_size} "
            f"({config.valid_split} split), but the loaded data is {dataset.name} with "
            f"{len(dataset.x_valid)} validation images ({dataset.valid_split} split)"
        )


class _DivergenceGuard(keras.callbacks.Callback):  # type: ignore[misc]
    """Stop at the first epoch whose mean training loss is not finite."""

    def __init__(self) -> None:
        super().__init__()
        self.diverged = False
        self.epoch: int | None = None

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.diverged, self.epoch = True, epoch + 1
            self.model.stop_training = True


class _TrueTrainMetrics(keras.callbacks.Callback):  # type: ignore[misc]
    """Add the training loss/accuracy of the epoch-end weights, measured without dropout.

    Keras's own ``loss``/``accuracy`` are running means over the epoch with dropout on, which
    is what the exercise's CalculateMetrics callback corrected for.
    """

    def __init__(self, x: Any, y: Any) -> None:
        super().__init__()
        self.x, self.y = x, y

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        if logs is None or not math.isfinite(float(logs.get("loss", 0.0))):
            return
        scores = self.model.evaluate(
            self.x, self.y, batch_size=EVAL_BATCH, verbose=0, return_dict=True
        )
        logs["train_loss"] = float(scores["loss"])
        logs["train_acc"] = float(scores["accuracy"])


class _BestEpoch(keras.callbacks.Callback):  # type: ignore[misc]
    """Keep the weights of the first epoch with the highest validation accuracy.

    The same rule as the exercise's ModelCheckpoint(save_best_only=True, mode="max"): only a
    strict improvement replaces the kept weights. Epochs with a non-finite loss never count.
    """

    def __init__(self) -> None:
        super().__init__()
        self.weights: list[Any] | None = None
        self.epoch: int | None = None
        self.best = -math.inf

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        logs = logs or {}
        score, loss = float(logs.get("val_accuracy", math.nan)), float(logs.get("loss", math.nan))
        if math.isfinite(loss) and score > self.best:
            self.best, self.epoch = score, epoch + 1
            self.weights = self.model.get_weights()
