from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mnistfc.data.dataset import RawDataset, load_dataset, preprocess
from mnistfc.engine.train import run_trial
from mnistfc.errors import ConfigError
from mnistfc.folder.labels import correct, decode_labels
from mnistfc.folder.result import SweepRef
from mnistfc.folder.schema import Status
from mnistfc.folder.shards import list_shards, read_shard
from mnistfc.trial.config import TrialConfig


@pytest.fixture
def dataset(arrays: dict):
    return preprocess(RawDataset("mnist", **arrays, files=(Path("synthetic.npz"),)), valid_size=28)


def small(**overrides: object) -> TrialConfig:
    base = {"units": 16, "batch_size": 32, "epochs": 3, "valid_size": 28, "learning_rate": 1e-3}
    return TrialConfig(**{**base, **overrides})  # type: ignore[arg-type]


def test_a_learnable_task_is_learned_and_the_shard_is_complete(dataset, tmp_path: Path) -> None:
    result = run_trial(small(), dataset, tmp_path, sweep=SweepRef("t", "x"), load_s=0.5,
                       epoch_train_metrics=True)  # fmt: skip
    assert result.status is Status.COMPLETED
    assert result.metrics["valid"]["accuracy"] >= 0.95
    assert result.metrics["test"]["accuracy"] >= 0.95
    record = read_shard(tmp_path / "shards" / f"{result.trial_id}.json")
    assert record["status"] == "completed" and record["seed"] == 0
    assert record["sweep"] == {"name": "t", "spec_hash": "x"}
    assert len(record["history"]) == 3
    assert set(record["history"][0]) == {
        "epoch",
        "loss",
        "accuracy",
        "val_loss",
        "val_accuracy",
        "train_loss",
        "train_acc",
    }
    assert record["timing"]["load_s"] == 0.5 and record["timing"]["fit_s"] > 0
    assert record["timing"]["total_s"] >= record["timing"]["fit_s"] + record["timing"]["eval_s"]
    assert record["env"]["device"] == "cpu" and record["env"]["tensorflow"]
    assert record["data"]["n_valid"] == 28 and record["data"]["canonical"] is False
    for split in ("train", "valid", "test"):
        m = record["metrics"][split]
        assert m["error_pct"] == pytest.approx(100 * (1 - m["accuracy"]))


def test_the_shard_scores_the_final_epoch_too_and_keeps_each_images_prediction(dataset) -> None:
    result = run_trial(small(epochs=4, learning_rate=3e-3), dataset)
    last = result.metrics["last"]
    # The final epoch's weights, scored before the best epoch's were restored.
    assert last["epoch"] == 4
    assert last["valid"]["accuracy"] == pytest.approx(result.history[-1]["val_accuracy"], abs=1e-6)
    predictions = result.predictions
    for split, n in (("valid", 28), ("test", 100)):
        truth = decode_labels(predictions["true"][split])
        assert len(truth) == n
        np.testing.assert_array_equal(truth, getattr(dataset, f"y_{split}").argmax(axis=1))
        for epoch, scores in (("best", result.metrics), ("last", last)):
            hits = correct(predictions, epoch, split)
            assert hits.mean() == pytest.approx(scores[split]["accuracy"], abs=1e-6)
    assert result.to_row()["test_accuracy_last"] == last["test"]["accuracy"]


def test_true_training_metrics_are_measured_without_dropout(dataset) -> None:
    result = run_trial(small(dropout=0.5, epochs=2), dataset, epoch_train_metrics=True)
    last = result.history[-1]
    # Evaluated on the end-of-epoch weights in inference mode: equal to a fresh evaluation
    # of those weights would be; with heavy dropout the running mean trails it.
    assert last["train_acc"] > last["accuracy"]
    assert last["train_loss"] < last["loss"]


def test_the_best_validation_epoch_is_restored(dataset) -> None:
    # Seeded so that validation accuracy peaks at epoch 2 and dips later (found by running it).
    result = run_trial(small(learning_rate=0.03, epochs=6, batch_size=8), dataset)
    history = result.history
    val_acc = [h["val_accuracy"] for h in history]
    best = result.metrics["best_epoch"]
    assert best == int(np.argmax(val_acc)) + 1  # the first epoch reaching the maximum
    assert best < len(history), "precondition: the best epoch is not the last one"
    assert result.metrics["valid"]["accuracy"] == pytest.approx(val_acc[best - 1])
    assert result.metrics["valid"]["loss"] == pytest.approx(history[best - 1]["val_loss"], rel=1e-4)
    assert result.metrics["valid"]["loss"] != pytest.approx(history[-1]["val_loss"], rel=1e-3)


def test_same_config_same_numbers(dataset) -> None:
    first = run_trial(small(seed=3), dataset)
    second = run_trial(small(seed=3), dataset)
    other = run_trial(small(seed=4), dataset)
    assert first.metrics == second.metrics and first.history == second.history
    assert other.history != first.history


def test_non_finite_loss_is_a_diverged_result_not_a_crash(dataset, tmp_path: Path) -> None:
    result = run_trial(small(learning_rate=1e30), dataset, tmp_path)
    assert result.status is Status.DIVERGED
    record = read_shard(list_shards(tmp_path)[0])
    assert record["status"] == "diverged" and record["history"][0]["loss"] is None
    assert len(record["history"]) == 1  # training stopped at the first non-finite epoch


def test_an_exception_writes_a_failed_shard_and_is_reraised(
    dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_model(config: TrialConfig) -> None:
        raise MemoryError("simulated out-of-memory while building the model")

    monkeypatch.setattr("mnistfc.engine.train.build_model", broken_model)
    with pytest.raises(MemoryError):
        run_trial(small(), dataset, tmp_path)
    record = read_shard(list_shards(tmp_path)[0])
    assert record["status"] == "failed"
    assert "MemoryError: simulated out-of-memory" in record["error"]
    assert record["metrics"] is None


def test_config_and_dataset_must_agree(dataset) -> None:
    with pytest.raises(ConfigError, match="valid_size=2000"):
        run_trial(TrialConfig(), dataset)


@pytest.mark.slow
def test_the_exercise_config_on_real_mnist(real_mnist_dir: Path, tmp_path: Path) -> None:
    result = run_trial(TrialConfig(), load_dataset("mnist", real_mnist_dir), tmp_path)
    assert result.metrics["valid"]["accuracy"] >= 0.97
    assert result.metrics["test"]["accuracy"] >= 0.955
    assert (
        json.loads(next((tmp_path / "shards").iterdir()).read_text())["data"]["canonical"] is True
    )
