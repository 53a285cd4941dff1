"""Packed training: each trial's math is Keras's, whatever else shares its pack."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from mnistfc.data.dataset import RawDataset, load_dataset, preprocess
from mnistfc.engine.model import build_model
from mnistfc.engine.pack import loop
from mnistfc.engine.pack.loop import run_pack
from mnistfc.engine.pack.model import PackedModel
from mnistfc.engine.runtime import XLA_STEP_ENV
from mnistfc.engine.train import run_trial
from mnistfc.errors import ConfigError, Interrupted
from mnistfc.folder.checkpoints import checkpoint_path
from mnistfc.folder.labels import correct
from mnistfc.folder.result import SweepRef
from mnistfc.folder.schema import Status
from mnistfc.folder.shards import list_shards, read_shard, shard_path
from mnistfc.trial.config import TrialConfig
from mnistfc.trial.packs import pack_id


@pytest.fixture
def dataset(arrays: dict):
    return preprocess(RawDataset("mnist", **arrays, files=(Path("synthetic.npz"),)), valid_size=28)


def small(**overrides: object) -> TrialConfig:
    base = {"units": 16, "batch_size": 32, "epochs": 3, "valid_size": 28}
    return TrialConfig(**{**base, **overrides})  # type: ignore[arg-type]


MIXED = [
    small(units=16, activation="relu", learning_rate=1e-3, seed=3),
    small(units=16, activation="tanh", learning_rate=1e-3, seed=4),
    small(units=24, activation="elu", learning_rate=1e-2, seed=3),
    small(units=8, activation="sigmoid", learning_rate=1e-3, seed=5),
]


def test_initial_weights_are_the_keras_models_of_each_seed(dataset) -> None:
    pack = PackedModel(MIXED, dataset)
    for i, config in enumerate(MIXED):
        tf.keras.utils.set_random_seed(config.seed)
        expected = build_model(config).get_weights()
        for got, want in zip(pack.trial_weights(i), expected, strict=True):
            np.testing.assert_array_equal(got, want)


# One group (same width and learning rate) with mixed dropout rates, and seeds past 2**31
# that Keras folds into int32.
SAME_GROUP = [
    small(units=16, dropout=0.0, seed=3),
    small(units=16, dropout=0.3, seed=2**31 + 5),
    small(units=16, dropout=0.6, seed=2**32 - 1, activation="tanh"),
]


@pytest.mark.parametrize("configs", [MIXED, SAME_GROUP], ids=["mixed groups", "one group"])
def test_packed_adam_steps_equal_keras_steps_for_every_trial(dataset, configs) -> None:
    """Same start, same batches, same dropout masks: each trial follows its own Keras model
    exactly (MIXED has dropout 0.3 everywhere; SAME_GROUP mixes rates in one group)."""
    pack = PackedModel(configs, dataset)
    assert len(pack.groups) == (1 if configs is SAME_GROUP else 3)
    models = []
    for config in configs:
        tf.keras.utils.set_random_seed(config.seed)
        models.append(build_model(config))
    rng = np.random.default_rng(0)
    for step in range(4):
        idx = rng.choice(len(dataset.x_train), size=32, replace=False)
        x, y = dataset.x_train[idx], dataset.y_train[idx]
        # Every seed's data order gets the same batch here, so the models see the same data.
        xs = np.repeat(x[None], len(pack.seeds), axis=0)
        ys = np.repeat(np.argmax(y, 1)[None].astype(np.int32), len(pack.seeds), axis=0)
        loss, hits = pack.step(tf.constant(xs), tf.constant(ys), tf.constant(step, tf.int64))
        for i, model in enumerate(models):
            keras_loss = model.train_on_batch(x, y, return_dict=True)["loss"]
            assert loss.numpy()[i] == pytest.approx(keras_loss, rel=1e-5, abs=1e-6)
    for i, model in enumerate(models):
        for got, want in zip(pack.trial_weights(i), model.get_weights(), strict=True):
            # Float summation order differs; an Adam step moves a weight by ~lr, so 2e-5 is
            # 0.2% of one step at lr 1e-2.
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=2e-5)


def test_a_trials_results_do_not_depend_on_its_pack_mates(dataset) -> None:
    alone = run_pack([MIXED[0]], dataset, epoch_train_metrics=True)[0]
    together = run_pack(MIXED, dataset, epoch_train_metrics=True)[0]
    assert alone.config == together.config
    for a, b in zip(alone.history, together.history, strict=True):
        for key in ("loss", "val_accuracy", "train_loss"):
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-5)
    assert alone.metrics["best_epoch"] == together.metrics["best_epoch"]


def test_the_compiled_step_trains_every_trial_as_the_plain_step_does(
    dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The step as one XLA program (what a GPU runs), fed TensorFlow's own dropout masks:
    every trial of a pack of several groups, activations, learning rates and dropout rates
    ends with the plain step's numbers (XLA may sum in another order), and its shard says
    which step made them."""
    configs = [*MIXED, *SAME_GROUP, small(units=40, dropout=0.0, seed=9)]  # last: no masks
    runs = {}
    for flag in ("0", "1"):
        monkeypatch.setenv(XLA_STEP_ENV, flag)
        runs[flag] = run_pack(configs, dataset)
    for plain, compiled in zip(runs["0"], runs["1"], strict=True):
        assert (plain.env["pack"]["step"], compiled.env["pack"]["step"]) == ("graph", "xla")
        for key in ("loss", "val_loss", "val_accuracy"):
            assert [h[key] for h in compiled.history] == pytest.approx(
                [h[key] for h in plain.history], rel=1e-5, abs=1e-6
            )
        for split in ("train", "valid", "test"):
            assert compiled.metrics[split] == pytest.approx(plain.metrics[split], rel=1e-5)


def test_a_lanes_packs_share_the_datasets_tensors(dataset, arrays: dict) -> None:
    first, second = (PackedModel([small(seed=s)], dataset) for s in (0, 1))
    assert first.splits is second.splits  # one copy of the images per process and dataset
    other = preprocess(RawDataset("mnist", **arrays, files=(Path("b.npz"),)), valid_size=28)
    assert PackedModel([small()], other).splits is not first.splits


def test_dropout_and_shuffling_follow_the_trials_own_seed(dataset) -> None:
    configs = [small(dropout=0.5, seed=1), small(dropout=0.5, seed=2)]
    first, second = run_pack(configs, dataset)
    assert first.history[0]["loss"] != pytest.approx(second.history[0]["loss"], rel=1e-6)
    again = run_pack([configs[1]], dataset)[0]
    assert again.history[0]["loss"] == pytest.approx(second.history[0]["loss"], rel=1e-5)


def test_a_pack_of_one_learns_like_the_keras_trial(dataset) -> None:
    config = small(units=32, dropout=0.3, epochs=4)
    packed = run_pack([config], dataset)[0]
    keras_run = run_trial(config, dataset)
    assert packed.status is Status.COMPLETED
    for split in ("valid", "test"):
        assert packed.metrics[split]["accuracy"] >= 0.95
        assert packed.metrics[split]["accuracy"] == pytest.approx(
            keras_run.metrics[split]["accuracy"], abs=0.05
        )


def test_shards_record_history_best_epoch_and_the_engine(dataset, tmp_path: Path) -> None:
    results = run_pack(MIXED, dataset, tmp_path, sweep=SweepRef("t", "x"))
    shards = {read_shard(p)["trial_id"]: read_shard(p) for p in list_shards(tmp_path)}
    assert set(shards) == {c.trial_id for c in MIXED}
    for result in results:
        record = shards[result.trial_id]
        assert record["status"] == "completed"
        assert len(record["history"]) == 3
        best = record["metrics"]["best_epoch"]
        val = [h["val_accuracy"] for h in record["history"]]
        assert val[best - 1] == max(val) and val.index(max(val)) == best - 1
        # The restored weights are the best epoch's: their validation accuracy is that epoch's.
        assert record["metrics"]["valid"]["accuracy"] == pytest.approx(val[best - 1], abs=1e-6)
        assert record["env"]["engine"] == "packed-v1" and record["env"]["pack"]["size"] == 4
        # The final epoch is scored too, and every scored image's prediction is kept.
        last = record["metrics"]["last"]
        assert last["epoch"] == 3
        assert last["valid"]["accuracy"] == pytest.approx(val[-1], abs=1e-6)
        for split in ("valid", "test"):
            for epoch, scores in (("best", record["metrics"]), ("last", last)):
                hits = correct(record["predictions"], epoch, split)
                assert len(hits) == record["data"][f"n_{split}"]
                assert hits.mean() == pytest.approx(scores[split]["accuracy"], abs=1e-6)
    total = sum(shards[r.trial_id]["timing"]["fit_s"] for r in results)
    assert total == pytest.approx(results[0].env["pack"]["fit_s"], rel=1e-6)
    pack = results[0].env["pack"]
    for result in results:
        elapsed = shards[result.trial_id]["timing"]["elapsed_s"]
        assert elapsed == pytest.approx(pack["fit_s"] + pack["eval_s"])


def test_a_diverging_trial_is_diverged_and_its_pack_mates_are_not(dataset) -> None:
    configs = [small(learning_rate=1e30), small(units=8)]
    bad, good = run_pack(configs, dataset)
    assert bad.status is Status.DIVERGED and len(bad.history) == 1
    assert bad.metrics is None or bad.metrics["last"] is None  # no finite final epoch
    assert bad.history[0]["loss"] is None or not np.isfinite(bad.history[0]["loss"])
    alone = run_pack(configs[1:], dataset)[0]
    assert good.status is Status.COMPLETED and len(good.history) == 3
    assert [h["loss"] for h in good.history] == pytest.approx([h["loss"] for h in alone.history])


def test_an_exception_writes_failed_shards_for_the_whole_pack(
    dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def out_of_memory(self: PackedModel, *args: object) -> None:
        raise MemoryError("simulated out-of-memory in the packed step")

    monkeypatch.setattr(PackedModel, "train_steps", out_of_memory)
    with pytest.raises(MemoryError):
        run_pack(MIXED[:2], dataset, tmp_path)
    records = [read_shard(p) for p in list_shards(tmp_path)]
    assert len(records) == 2
    assert all(r["status"] == "failed" and "MemoryError" in r["error"] for r in records)


def test_trials_that_cannot_share_a_step_are_refused_with_failed_shards(
    dataset, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match="one batch size"):
        run_pack([small(batch_size=32), small(batch_size=64)], dataset, tmp_path)
    records = [read_shard(p) for p in list_shards(tmp_path)]
    assert len(records) == 2  # the worker reports each trial failed: its shard says why
    assert all(r["status"] == "failed" and "one batch size" in r["error"] for r in records)


def test_a_failing_pack_leaves_the_shards_of_trials_finished_elsewhere_alone(
    dataset, tmp_path: Path
) -> None:
    """A pack resumed whole although one trial was finished by another worker: its failure
    writes failed shards for the other trials, never over that trial's result."""
    configs = [small(batch_size=32), small(batch_size=64, seed=2)]
    elsewhere = shard_path(tmp_path, configs[0].trial_id)
    elsewhere.parent.mkdir(parents=True)
    elsewhere.write_text("the other worker's result\n")
    with pytest.raises(ConfigError, match="one batch size"):
        run_pack(configs, dataset, tmp_path, finished_elsewhere={configs[0].trial_id})
    assert elsewhere.read_text() == "the other worker's result\n"
    failed = read_shard(shard_path(tmp_path, configs[1].trial_id))
    assert failed["status"] == "failed" and "one batch size" in failed["error"]


@pytest.mark.slow
def test_packed_and_keras_grids_agree_on_real_mnist(real_mnist_dir: Path) -> None:
    data = load_dataset("mnist", real_mnist_dir)
    grid = [
        TrialConfig(units=u, dropout=d, batch_size=256, epochs=2)
        for u in (32, 128)
        for d in (0.0, 0.5)
    ]
    packed = run_pack(grid, data)
    for config, result in zip(grid, packed, strict=True):
        keras_result = run_trial(config, data)
        assert result.metrics["valid"]["accuracy"] == pytest.approx(
            keras_result.metrics["valid"]["accuracy"], abs=0.015
        ), config


def _stop_after(monkeypatch: pytest.MonkeyPatch, epoch: int, step: int | None = None,
                signum: int = signal.SIGTERM) -> None:  # fmt: skip
    """Send this process a real SIGTERM (or ``signum``) once training reaches (epoch, step):
    the stop request is honoured at the next boundary, as when SLURM requeues or cancels."""
    seen = {"epoch": 0}
    real_permutations, real_steps = PackedModel.permutations, PackedModel.train_steps

    def permutations(self: PackedModel, e: int) -> object:
        seen["epoch"] = e
        return real_permutations(self, e)

    def train_steps(self: PackedModel, perms: object, start: int, stop: int) -> object:
        out = real_steps(self, perms, start, stop)
        if seen["epoch"] == epoch and (step is None or start == step):
            os.kill(os.getpid(), signum)
        return out

    monkeypatch.setattr(PackedModel, "permutations", permutations)
    monkeypatch.setattr(PackedModel, "train_steps", train_steps)


@pytest.mark.parametrize("where", ["epoch end", "mid-epoch"])
def test_a_stopped_pack_resumes_with_identical_numbers(
    dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """SIGTERM saves at the next step boundary (mid-epoch) or at the epoch's end; a rerun
    resumes there and ends with exactly the numbers of an uninterrupted run."""
    monkeypatch.setattr(loop, "SEGMENT_STEPS", 4)  # 16 steps an epoch: 4 segments
    configs = [small(dropout=0.3, seed=1, epochs=4), small(units=8, seed=2, epochs=4)]
    uninterrupted = run_pack(configs, dataset)
    checkpoint = checkpoint_path(tmp_path, pack_id(c.trial_id for c in configs))
    handler = signal.getsignal(signal.SIGTERM)
    with monkeypatch.context() as patched:
        _stop_after(patched, epoch=2, step=4 if where == "mid-epoch" else 12)
        with pytest.raises(Interrupted, match="epoch 2, step 8" if where == "mid-epoch" else
                           "after epoch 2"):  # fmt: skip
            run_pack(configs, dataset, tmp_path)
    assert checkpoint.exists() and list_shards(tmp_path) == []
    assert signal.getsignal(signal.SIGTERM) is handler  # the handler it found, restored
    resumed = run_pack(configs, dataset, tmp_path)
    assert not checkpoint.exists()  # the shards hold the results now
    for a, b in zip(uninterrupted, resumed, strict=True):
        assert [h["loss"] for h in b.history] == pytest.approx(
            [h["loss"] for h in a.history], rel=1e-6
        )
        assert [h["val_loss"] for h in b.history] == pytest.approx(
            [h["val_loss"] for h in a.history], rel=1e-6
        )
        assert b.metrics["best_epoch"] == a.metrics["best_epoch"]
        for split in ("train", "valid", "test"):
            assert b.metrics[split] == pytest.approx(a.metrics[split], rel=1e-6)


def test_sigusr2_saves_the_pack_then_reaches_the_handler_it_found(
    dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGUSR2 (submitit's time-limit and preemption signal) stops the pack at its next
    boundary and saves it, then the handler installed before (submitit's: checkpoint and
    requeue) runs, with the state already on disk, though no save was due by time."""
    configs = [small(epochs=3)]
    checkpoint = checkpoint_path(tmp_path, pack_id(c.trial_id for c in configs))
    handled: list[bool] = []
    previous = signal.signal(signal.SIGUSR2, lambda *_: handled.append(checkpoint.exists()))
    try:
        with monkeypatch.context() as patched:
            _stop_after(patched, epoch=1, step=0, signum=signal.SIGUSR2)
            with pytest.raises(Interrupted, match="after epoch 1"):
                run_pack(configs, dataset, tmp_path)
        assert handled == [True]  # once, after the save
    finally:
        signal.signal(signal.SIGUSR2, previous)


@pytest.mark.parametrize(("every", "saves"), [(0.0, 3), (1e9, 0)])
def test_a_pack_saves_by_time_never_after_its_last_epoch(
    dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, every: float, saves: int
) -> None:
    """Saving is due once ``checkpoint_s`` has passed since the last save: 0 saves at every
    epoch end but the last (its shards follow at once), a long interval never."""
    calls: list[int] = []
    real = loop.save_state
    monkeypatch.setattr(loop, "save_state", lambda path, arrays, state: (
        calls.append(state.epoch), real(path, arrays, state))[1])  # fmt: skip
    run_pack([small(epochs=4)], dataset, tmp_path, checkpoint_s=every)
    assert calls == [1, 2, 3][:saves]
    assert not list(checkpoint_path(tmp_path, "x").parent.glob("*.npz"))


def test_an_unusable_checkpoint_is_ignored(
    dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    configs = [small(epochs=2)]
    checkpoint = checkpoint_path(tmp_path, pack_id(c.trial_id for c in configs))
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(b"not a checkpoint")
    assert run_pack(configs, dataset, tmp_path)[0].status is Status.COMPLETED
    other = [small(epochs=2, seed=9)]
    # another pack's state under this pack's name (a stopped run of `other`, moved over)
    with monkeypatch.context() as patched:
        _stop_after(patched, epoch=1)
        with pytest.raises(Interrupted):
            run_pack(other, dataset, tmp_path)
    checkpoint_path(tmp_path, pack_id(c.trial_id for c in other)).rename(checkpoint)
    result = run_pack(configs, dataset, tmp_path)[0]
    assert len(result.history) == 2 and result.history[0]["epoch"] == 1
