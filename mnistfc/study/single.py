"""The exercise's single-model study: one trial plus every file the notebook produced."""

from __future__ import annotations

import csv
import io
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnistfc.atomic import atomic_path, atomic_write_text
from mnistfc.data.dataset import dataset_for
from mnistfc.folder.result import SweepRef, TrialResult
from mnistfc.folder.schema import HISTORY_KEYS, Status
from mnistfc.folder.shards import shard_path
from mnistfc.report import plots
from mnistfc.report.render import performance_table
from mnistfc.trial.config import TrialConfig

N_PREDICTIONS = 10


@dataclass(frozen=True)
class SingleRun:
    """What ``mnistfc train`` made: the trial's result, its table and the files written."""

    result: TrialResult
    table: str
    files: tuple[Path, ...]


def run_single(
    config: TrialConfig,
    out_dir: str | os.PathLike[str],
    data_dir: str | os.PathLike[str] | None = None,
    *,
    verbose: int = 0,
    table_format: str = "orgtbl",
) -> SingleRun:
    """Train one model and write its shard, history, weights, table and plots under ``out_dir``."""
    from mnistfc.engine.runtime import EVAL_BATCH, load_tensorflow

    load_tensorflow()  # before Keras: its start-up chatter is filtered only on first import
    from mnistfc.engine.train import run_trial

    out = Path(out_dir)
    started = time.perf_counter()
    dataset = dataset_for(config, data_dir)
    load_s = time.perf_counter() - started
    _check_writable(out)
    result = run_trial(
        config,
        dataset,
        out,
        sweep=SweepRef("train"),
        load_s=load_s,
        verbose=verbose,
        epoch_train_metrics=True,  # the exercise's single model measured it every epoch
    )
    files = [shard_path(out, result.trial_id), out / "history.csv"]
    atomic_write_text(files[-1], history_csv(result.history))
    table = ""
    if result.status is Status.COMPLETED:
        table = performance_table(result.metrics or {}, table_format)
        files.append(out / "performance.txt")
        atomic_write_text(files[-1], table + "\n")
        files.append(out / "best.weights.h5")
        with atomic_path(files[-1], keep_suffix=".weights.h5") as tmp:
            result.model.save_weights(tmp)
        probabilities = result.model.predict(dataset.x_test, batch_size=EVAL_BATCH, verbose=0)
        files.extend(_write_plots(result, dataset.x_test, dataset.y_test, probabilities, out))
    return SingleRun(result=result, table=table, files=tuple(files))


def train_job(config: TrialConfig, out_dir: str, data_dir: str | None) -> str:
    """The single model as a cluster job (``study --cluster``); return its shard's status."""
    from mnistfc.engine.runtime import log_job_to_stderr

    log_job_to_stderr()
    return run_single(config, out_dir, data_dir, verbose=2).result.status.value


def history_csv(history: list[dict[str, float | None]]) -> str:
    """Render per-epoch history as CSV: Keras's columns plus the true training metrics."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=HISTORY_KEYS, lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: "" if row.get(k) is None else row[k] for k in HISTORY_KEYS})
    return buffer.getvalue()


def _check_writable(folder: Path) -> None:
    # Fail before training, not after: a finished trial with nowhere to go is a lost result.
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=folder, prefix=".probe-", suffix=".tmp"):
        pass


def _write_plots(
    result: TrialResult,
    x_test: np.ndarray,
    y_test: np.ndarray,
    probabilities: np.ndarray,
    out: Path,
) -> list[Path]:
    names = plots.class_names(result.config.dataset)
    y_true = np.argmax(y_test, axis=1)
    y_pred = np.argmax(probabilities, axis=1)
    best_epoch = result.best_epoch
    paths = [
        out / name
        for name in (
            "accuracy.png",
            "loss.png",
            "confusion.png",
            "predictions.png",
            "misclassified.png",
        )
    ]
    plots.plot_history(result.history, "accuracy", paths[0], best_epoch)
    plots.plot_history(result.history, "loss", paths[1], best_epoch)
    plots.plot_confusion(y_true, y_pred, names, paths[2])
    n = min(N_PREDICTIONS, len(x_test))
    plots.plot_predictions(x_test[:n], probabilities[:n], y_true[:n], names, paths[3])
    plots.plot_misclassified(x_test, y_true, y_pred, names, paths[4])
    return paths
