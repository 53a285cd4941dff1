"""Train a pack of trials as one compiled TensorFlow step, each trial keeping its own math.

Why: at the exercise's sizes a Keras step is mostly per-step overhead, so trials that share
batch size and epochs (see ``pack.py``) run one step together: per group of trials with the
same width and learning rate, stacked weights and one batched matmul per layer.

What each trial keeps, so packing changes no trial's math: its initial weights (Keras's own,
built from its seed), its data order (shuffled from its seed), its dropout rate and masks
(drawn from its seed), its activation, Adam with its own learning rate and moments
(TensorFlow's fused Adam kernel computes Keras's Adam update), the restore of its best
validation epoch, and its metrics and shard. Its numbers depend on its config alone, never
on which other trials share the pack; they differ from a Keras run of the same config only
in which random numbers are drawn.
"""

from __future__ import annotations

import logging
import math
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from mnistfc.config import TrialConfig
from mnistfc.data import Dataset
from mnistfc.pack import n_params, pack_key
from mnistfc.packmath import (
    Group,
    activate,
    count_hits,
    dropout,
    initial_weights,
    int_labels,
    pack_id,
    permutation,
)
from mnistfc.packstate import checkpoint_path, load_state, remove_state, save_state
from mnistfc.shards import Status, TrialResult, write_shard
from mnistfc.train import EVAL_BATCH, configure_gpus, environment

log = logging.getLogger(__name__)

ENGINE = "packed-v1"
BETA_1, BETA_2, EPSILON = 0.9, 0.999, 1e-7  # Keras's Adam defaults, as build_model uses


def run_pack(
    configs: Sequence[TrialConfig],
    dataset: Dataset,
    results_dir: str | None = None,
    *,
    sweep: dict[str, Any] | None = None,
    load_s: float = 0.0,
) -> list[TrialResult]:
    """Train the configs together; write one shard each when ``results_dir`` is given.

    A trial whose loss goes non-finite is ``diverged`` and does not disturb the others. Any
    other exception writes a ``failed`` shard for every trial of the pack and is re-raised.
    """
    configs = list(configs)
    keys = {pack_key(c) for c in configs}
    if len(keys) != 1:
        raise ValueError(f"a pack needs one batch size, epochs and dataset; got {sorted(keys)}")
    for config in configs:
        if config.dataset != dataset.name or config.valid_size != len(dataset.x_valid):
            raise ValueError(f"trial {config.trial_id} does not match the loaded dataset")
    started = time.perf_counter()
    checkpoint = None
    if results_dir is not None:
        checkpoint = checkpoint_path(results_dir, pack_id(configs))
    try:
        results = _Pack(configs, dataset, checkpoint).train(sweep=sweep, load_s=load_s)
    except Exception:
        error = traceback.format_exc()
        elapsed = load_s + time.perf_counter() - started
        env = {**environment(), "engine": ENGINE, "pack": {"size": len(configs)}}
        failed = [
            TrialResult(
                config=c,
                status=Status.FAILED,
                metrics=None,
                history=[],
                timing={"load_s": load_s, "total_s": elapsed},
                env=env,
                data=dataset.describe(),
                sweep=sweep,
                error=error,
            )
            for c in configs
        ]
        if results_dir is not None:
            for result in failed:
                write_shard(results_dir, result)
        raise
    if results_dir is not None:
        for result in results:
            write_shard(results_dir, result)
    if checkpoint is not None:
        remove_state(checkpoint)
    return results


class _Pack:
    """The variables and compiled functions of one pack."""

    def __init__(
        self, configs: list[TrialConfig], dataset: Dataset, checkpoint: Path | None = None
    ) -> None:
        configure_gpus()
        self.configs = configs
        self.id = pack_id(configs)
        self.checkpoint = checkpoint
        self.dataset = dataset
        self.batch_size = configs[0].batch_size
        self.epochs = configs[0].epochs
        self.seeds = sorted({c.seed for c in configs})
        by_group: dict[tuple[int, float], list[int]] = {}
        for i, config in enumerate(configs):
            by_group.setdefault((config.units, config.learning_rate), []).append(i)
        self.groups = [
            Group(
                members=idx,
                configs=[configs[i] for i in idx],
                seed_pos=[self.seeds.index(configs[i].seed) for i in idx],
            )
            for idx in by_group.values()
        ]
        initial = initial_weights(configs)
        for group in self.groups:
            stacked = [np.stack([initial[i][k] for i in group.members]) for k in range(4)]
            # Biases as [T, 1, n] so they broadcast over the batch axis of [T, B, n].
            stacked[1] = stacked[1][:, None, :]
            stacked[3] = stacked[3][:, None, :]
            group.weights = [tf.Variable(w, dtype=tf.float32) for w in stacked]
            group.moments = [
                (tf.Variable(tf.zeros_like(w)), tf.Variable(tf.zeros_like(w))) for w in stacked
            ]
            group.best = [tf.Variable(w, dtype=tf.float32) for w in stacked]
        self.iterations = tf.Variable(0, dtype=tf.int64)
        # Each split once as a tensor with integer labels; the training split feeds the step.
        self.splits = {
            split: (
                tf.constant(getattr(dataset, f"x_{split}"), tf.float32),
                tf.constant(int_labels(getattr(dataset, f"y_{split}"))),
            )
            for split in ("train", "valid", "test")
        }
        self.x_train, self.y_train = self.splits["train"]
        self._train_epoch = self._compile_train_epoch()
        self._evaluate = {
            best: tf.function(
                lambda x, y, best=best: self._eval_sums(x, y, best),
                input_signature=[
                    tf.TensorSpec([None, dataset.x_train.shape[1]], tf.float32),
                    tf.TensorSpec([None], tf.int32),
                ],
            )
            for best in (False, True)
        }

    # ----------------------------------------------------------------------------- training
    def train(self, *, sweep: dict[str, Any] | None, load_s: float) -> list[TrialResult]:
        n_trials = len(self.configs)
        history: list[list[dict[str, float | None]]] = [[] for _ in range(n_trials)]
        best_val = np.full(n_trials, -math.inf)
        best_epoch: list[int | None] = [None] * n_trials
        diverged_at: list[int | None] = [None] * n_trials
        first_epoch, fit_before = 1, 0.0
        saved = self._restore()
        if saved is not None:
            history, best_epoch, diverged_at = (
                saved["history"], saved["best_epoch"], saved["diverged_at"]
            )  # fmt: skip
            best_val = np.array([-math.inf if v is None else v for v in saved["best_val"]])
            first_epoch, fit_before = saved["epoch"] + 1, saved["fit_s"]
            log.info("pack resumed after epoch %d from %s", saved["epoch"], self.checkpoint)
        fit_start = time.perf_counter()
        for epoch in range(first_epoch, self.epochs + 1):
            tick = time.perf_counter()
            perms = tf.stack([permutation(len(self.dataset.x_train), s, epoch) for s in self.seeds])
            loss, acc = (t.numpy() for t in self._train_epoch(perms, self.iterations))
            train_loss, train_acc = self.evaluate("train")
            val_loss, val_acc = self.evaluate("valid")
            improved = np.zeros(n_trials, dtype=bool)
            for t in range(n_trials):
                if diverged_at[t] is not None:
                    continue
                finite = math.isfinite(loss[t])
                history[t].append(
                    {
                        "epoch": epoch,
                        "loss": float(loss[t]),
                        "accuracy": float(acc[t]),
                        "val_loss": float(val_loss[t]),
                        "val_accuracy": float(val_acc[t]),
                        "train_loss": float(train_loss[t]) if finite else None,
                        "train_acc": float(train_acc[t]) if finite else None,
                    }
                )
                if not finite:
                    diverged_at[t] = epoch
                elif val_acc[t] > best_val[t]:  # strict: the first best epoch is kept
                    best_val[t], best_epoch[t], improved[t] = val_acc[t], epoch, True
            self._keep_best(improved)
            self._save(
                {
                    "epoch": epoch,
                    "fit_s": fit_before + time.perf_counter() - fit_start,
                    "history": history,
                    "best_val": [v if math.isfinite(v) else None for v in best_val.tolist()],
                    "best_epoch": best_epoch,
                    "diverged_at": diverged_at,
                }
            )
            log.info(
                "pack of %d (batch %d): epoch %d/%d in %.1f s, best valid accuracy %.4f",
                n_trials,
                self.batch_size,
                epoch,
                self.epochs,
                time.perf_counter() - tick,
                float(np.max(best_val)),
            )
            if all(d is not None for d in diverged_at):
                break
        fit_s = fit_before + time.perf_counter() - fit_start
        eval_start = time.perf_counter()
        final = {split: self.evaluate(split, best=True) for split in ("train", "valid", "test")}
        eval_s = time.perf_counter() - eval_start
        return self._results(
            history,
            best_epoch,
            diverged_at,
            final,
            sweep,
            load_s=load_s,
            fit_s=fit_s,
            eval_s=eval_s,
        )

    def evaluate(self, split: str, *, best: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Return per-trial mean loss and accuracy on a split (current or best weights)."""
        x, y = self.splits[split]
        loss_sum, correct = self._evaluate[best](x, y)
        count = float(x.shape[0])
        return loss_sum.numpy() / count, correct.numpy() / count

    def _variables(self) -> list[tf.Variable]:
        """Return every variable of the pack's state in a fixed order."""
        out = []
        for group in self.groups:
            out += group.weights + [x for pair in group.moments for x in pair] + group.best
        return [*out, self.iterations]

    def _save(self, state: dict[str, Any]) -> None:
        if self.checkpoint is None:
            return
        trials = [c.trial_id for c in self.configs]
        save_state(
            self.checkpoint, [v.numpy() for v in self._variables()], {**state, "trials": trials}
        )

    def _restore(self) -> dict[str, Any] | None:
        if self.checkpoint is None:
            return None
        saved = load_state(self.checkpoint, [c.trial_id for c in self.configs])
        if saved is None:
            return None
        arrays, state = saved
        variables = self._variables()
        if len(arrays) != len(variables) or any(
            a.shape != tuple(v.shape) for a, v in zip(arrays, variables, strict=True)
        ):
            log.warning("ignoring checkpoint %s: its arrays do not fit this pack", self.checkpoint)
            return None
        for array, variable in zip(arrays, variables, strict=True):
            variable.assign(array)
        return state

    def _keep_best(self, improved: np.ndarray) -> None:
        for group in self.groups:
            mask = improved[group.members]
            if not mask.any():
                continue
            keep = tf.constant(mask)[:, None, None]
            for var, best in zip(group.weights, group.best, strict=True):
                best.assign(tf.where(keep, var, best))

    # ------------------------------------------------------------------- compiled functions
    def _compile_train_epoch(self) -> Any:
        batch = self.batch_size
        n_seeds = len(self.seeds)

        @tf.function(
            input_signature=[
                tf.TensorSpec([n_seeds, None], tf.int32),
                tf.TensorSpec([], tf.int64),
            ]
        )
        def train_epoch(perms: tf.Tensor, first_step: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            n = tf.shape(perms)[1]
            steps = (n + batch - 1) // batch
            loss_sum = tf.zeros([len(self.configs)])
            correct = tf.zeros([len(self.configs)])
            for i in tf.range(steps):
                idx = perms[:, i * batch : tf.minimum((i + 1) * batch, n)]
                x = tf.gather(self.x_train, idx)
                y = tf.gather(self.y_train, idx)
                loss, hits = self._step(x, y, first_step + tf.cast(i, tf.int64))
                loss_sum += loss * tf.cast(tf.shape(idx)[1], tf.float32)
                correct += hits
            count = tf.cast(n, tf.float32)
            return loss_sum / count, correct / count

        return train_epoch

    def _step(self, x: tf.Tensor, y: tf.Tensor, step: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """One Adam step of every trial on its own batch; per-trial mean loss and hit count."""
        losses, hits = [], []
        with tf.GradientTape() as tape:
            total = tf.constant(0.0)
            for group in self.groups:
                xg, yg = self._group_batch(group, x, y)
                logits = self._forward(group, group.weights, xg, training_step=step)
                labels = tf.broadcast_to(yg, tf.shape(logits)[:2])
                ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
                loss = tf.reduce_mean(ce, axis=1)
                total += tf.reduce_sum(loss)
                losses.append(loss)
                hits.append(count_hits(logits, labels))
        variables = [v for g in self.groups for v in g.weights]
        grads = tape.gradient(total, variables)
        self.iterations.assign_add(1)
        power = tf.cast(self.iterations, tf.float32)
        beta_1_power, beta_2_power = tf.pow(BETA_1, power), tf.pow(BETA_2, power)
        grads_iter = iter(grads)
        for group in self.groups:
            for var, (m, v) in zip(group.weights, group.moments, strict=True):
                tf.raw_ops.ResourceApplyAdam(
                    var=var.handle,
                    m=m.handle,
                    v=v.handle,
                    beta1_power=beta_1_power,
                    beta2_power=beta_2_power,
                    lr=tf.constant(group.learning_rate, tf.float32),
                    beta1=tf.constant(BETA_1, tf.float32),
                    beta2=tf.constant(BETA_2, tf.float32),
                    epsilon=tf.constant(EPSILON, tf.float32),
                    grad=next(grads_iter),
                )
        return self._in_pack_order(losses), self._in_pack_order(hits)

    def _eval_sums(self, x: tf.Tensor, y: tf.Tensor, best: bool) -> tuple[tf.Tensor, tf.Tensor]:
        n = tf.shape(x)[0]
        loss_sum = tf.zeros([len(self.configs)])
        correct = tf.zeros([len(self.configs)])
        for i in tf.range((n + EVAL_BATCH - 1) // EVAL_BATCH):
            xb = x[i * EVAL_BATCH : tf.minimum((i + 1) * EVAL_BATCH, n)][None]
            yb = y[i * EVAL_BATCH : tf.minimum((i + 1) * EVAL_BATCH, n)][None]
            losses, hits = [], []
            for group in self.groups:
                logits = self._forward(group, group.best if best else group.weights, xb)
                labels = tf.broadcast_to(yb, tf.shape(logits)[:2])
                ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
                losses.append(tf.reduce_sum(ce, axis=1))
                hits.append(count_hits(logits, labels))
            loss_sum += self._in_pack_order(losses)
            correct += self._in_pack_order(hits)
        return loss_sum, correct

    def _group_batch(self, group: Group, x: tf.Tensor, y: tf.Tensor) -> tuple[Any, Any]:
        # Trials sharing a seed share their data order: one [1, B, 784] batch broadcast over
        # the group's matmul instead of one copy per trial.
        if len(set(group.seed_pos)) == 1:
            s = group.seed_pos[0]
            return x[s : s + 1], y[s : s + 1]
        return tf.gather(x, group.seed_pos), tf.gather(y, group.seed_pos)

    def _forward(
        self,
        group: Group,
        weights: list[tf.Variable],
        x: tf.Tensor,
        training_step: tf.Tensor | None = None,
    ) -> tf.Tensor:
        w1, b1, w2, b2 = weights
        hidden = activate(group, tf.matmul(x, w1) + b1)
        if training_step is not None:
            hidden = dropout(group, hidden, training_step)
        return tf.matmul(hidden, w2) + b2

    def _in_pack_order(self, per_group: list[tf.Tensor]) -> tf.Tensor:
        order = [i for g in self.groups for i in g.members]
        inverse = np.argsort(order)
        return tf.gather(tf.concat(per_group, axis=0), inverse)

    # ------------------------------------------------------------------------------ results
    def _results(
        self,
        history: list[list[dict[str, float | None]]],
        best_epoch: list[int | None],
        diverged_at: list[int | None],
        final: dict[str, tuple[np.ndarray, np.ndarray]],
        sweep: dict[str, Any] | None,
        *,
        load_s: float,
        fit_s: float,
        eval_s: float,
    ) -> list[TrialResult]:
        env = {
            **environment(),
            "engine": ENGINE,
            "pack": {
                "id": self.id,
                "size": len(self.configs),
                "fit_s": fit_s,
                "eval_s": eval_s,
            },
        }
        # Compute is shared: each trial is charged its share of parameter updates.
        weights = np.array([n_params(c) for c in self.configs], dtype=float)
        share = weights / weights.sum()
        results = []
        for t, config in enumerate(self.configs):
            metrics: dict[str, Any] | None = None
            if best_epoch[t] is not None:
                metrics = {
                    split: {
                        "loss": float(final[split][0][t]),
                        "accuracy": float(final[split][1][t]),
                        "error_pct": 100.0 * (1.0 - float(final[split][1][t])),
                    }
                    for split in ("train", "valid", "test")
                }
                metrics["best_epoch"] = best_epoch[t]
            if diverged_at[t] is not None:
                log.warning(
                    "trial %s diverged (non-finite loss at epoch %s)",
                    config.trial_id,
                    diverged_at[t],
                )
            status = (
                Status.DIVERGED
                if diverged_at[t] is not None or metrics is None
                else Status.COMPLETED
            )
            results.append(
                TrialResult(
                    config=config,
                    status=status,
                    metrics=metrics,
                    history=history[t],
                    timing={
                        "load_s": load_s,
                        "fit_s": fit_s * share[t],
                        "eval_s": eval_s * share[t],
                        "total_s": load_s + (fit_s + eval_s) * share[t],
                        "elapsed_s": load_s + fit_s + eval_s,
                    },
                    env=env,
                    data=self.dataset.describe(),
                    sweep=sweep,
                )
            )
        return results
