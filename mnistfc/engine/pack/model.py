"""A pack's variables and compiled functions: forward, loss and Adam for every trial at once.

Per group of trials with the same width and learning rate, weights are stacked ([T, ...])
and each layer is one batched matmul; TensorFlow's fused Adam kernel updates each stacked
variable with Keras's Adam rule. The math of each trial (initial weights, data order,
dropout, activation) lives in ``pack.math``.

A step is thousands of small ops. On a CPU they run about as fast as one XLA program would
(``benchmarks/bench_step.py``), but a GPU pays a launch for each, so there the step's math
is one XLA program (``compiled``): the batch gather and the dropout masks (TensorFlow's
kernel, for the same bits as Keras) stay outside it and are passed in.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from mnistfc.data.dataset import Dataset
from mnistfc.engine.pack.math import (
    Group,
    activate,
    apply_keep,
    count_hits,
    dropout_keep,
    initial_weights,
    int_labels,
    permutation,
    predict,
)
from mnistfc.engine.runtime import EVAL_BATCH, configure_gpus, xla_step
from mnistfc.trial.config import TrialConfig

BETA_1, BETA_2, EPSILON = 0.9, 0.999, 1e-7  # Keras's Adam defaults, as build_model uses
SPLITS = ("train", "valid", "test")


_tensors: tuple[Dataset, dict[str, tuple[tf.Tensor, tf.Tensor]]] | None = None


def split_tensors(dataset: Dataset) -> dict[str, tuple[tf.Tensor, tf.Tensor]]:
    """Return each split as tensors with integer labels, made once per dataset and process.

    A lane runs its packs one after another on the same dataset; copying its 190 MB of
    training images into a new tensor for each pack cost 0.1-0.2 s a pack.
    """
    global _tensors
    if _tensors is None or _tensors[0] is not dataset:
        _tensors = (
            dataset,
            {
                split: (
                    tf.constant(getattr(dataset, f"x_{split}"), tf.float32),
                    tf.constant(int_labels(getattr(dataset, f"y_{split}"))),
                )
                for split in SPLITS
            },
        )
    return _tensors[1]


class PackedModel:
    """The stacked variables of a pack, a compiled run of training steps and evaluation."""

    def __init__(
        self, configs: Sequence[TrialConfig], dataset: Dataset, *, compiled: bool | None = None
    ) -> None:
        configure_gpus()
        # One XLA program per step where ops are costly to launch (None: on a GPU).
        self.compiled = xla_step() if compiled is None else compiled
        self.configs = list(configs)
        self.batch_size = self.configs[0].batch_size
        self.seeds = sorted({c.seed for c in self.configs})
        by_group: dict[tuple[int, float], list[int]] = {}
        for i, config in enumerate(self.configs):
            by_group.setdefault((config.units, config.learning_rate), []).append(i)
        self.groups = [
            Group(
                members=idx,
                configs=[self.configs[i] for i in idx],
                seed_pos=[self.seeds.index(self.configs[i].seed) for i in idx],
            )
            for idx in by_group.values()
        ]
        initial = initial_weights(self.configs)
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
        self.splits = split_tensors(dataset)
        self.n_train = len(dataset.x_train)
        self.steps_per_epoch = -(-self.n_train // self.batch_size)
        self._train_steps = self._compile_train_steps()
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

    # ------------------------------------------------------------------------ public surface
    def permutations(self, epoch: int) -> tf.Tensor:
        """Return every seed's data order for an epoch, [seeds, n_train]."""
        return tf.stack([permutation(self.n_train, s, epoch) for s in self.seeds])

    def train_steps(self, perms: tf.Tensor, start: int, stop: int) -> tuple[np.ndarray, ...]:
        """Run steps [start, stop) of an epoch; return per-trial sums of loss and hits."""
        loss_sum, correct = self._train_steps(perms, self.iterations, start, stop)
        return loss_sum.numpy(), correct.numpy()

    def evaluate(self, split: str, *, best: bool = False) -> tuple[np.ndarray, ...]:
        """Return per-trial mean loss, accuracy and predicted labels ([T, n] uint8) on a
        split, with the current or the best-epoch weights."""
        x, y = self.splits[split]
        loss_sum, correct, predicted = self._evaluate[best](x, y)
        count = float(x.shape[0])
        return loss_sum.numpy() / count, correct.numpy() / count, predicted.numpy()

    def true_labels(self, split: str) -> np.ndarray:
        """Return a split's labels as integers."""
        return self.splits[split][1].numpy()

    def keep_best(self, improved: np.ndarray) -> None:
        """Copy the current weights of the improved trials into their best-epoch weights."""
        for group in self.groups:
            mask = improved[group.members]
            if not mask.any():
                continue
            keep = tf.constant(mask)[:, None, None]
            for var, best in zip(group.weights, group.best, strict=True):
                best.assign(tf.where(keep, var, best))

    def variables(self) -> list[tf.Variable]:
        """Return every variable of the pack's state in a fixed order (for checkpoints)."""
        out = []
        for group in self.groups:
            out += group.weights + [x for pair in group.moments for x in pair] + group.best
        return [*out, self.iterations]

    def trial_weights(self, index: int, *, best: bool = False) -> list[np.ndarray]:
        """Return trial ``index``'s weights in Keras's layout (kernel, bias, kernel, bias)."""
        for group in self.groups:
            if index in group.members:
                pos = group.members.index(index)
                w1, b1, w2, b2 = (v.numpy()[pos] for v in (group.best if best else group.weights))
                return [w1, b1[0], w2, b2[0]]
        raise IndexError(f"trial {index} is not in this pack of {len(self.configs)}")

    def step(self, x: tf.Tensor, y: tf.Tensor, step: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """One Adam step of every trial on its seed's batch ([seeds, B, 784], [seeds, B]).

        Returns each trial's mean loss and hit count on its batch.
        """
        return self._update(x, y, self._dropout_masks(tf.shape(x)[1], step))

    def _dropout_masks(self, rows: tf.Tensor, step: tf.Tensor) -> tuple[tf.Tensor | None, ...]:
        """Each group's keep masks at this step (None: no dropout), drawn by TensorFlow's
        kernel, outside any compiled program (XLA would draw other bits)."""
        return tuple(
            dropout_keep(g, tf.stack([rows, g.configs[0].units]), step) for g in self.groups
        )

    def _update(
        self, x: tf.Tensor, y: tf.Tensor, keeps: Sequence[tf.Tensor | None]
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """The step's math given its dropout masks: forward, loss, gradients and Adam."""
        losses, hits = [], []
        with tf.GradientTape() as tape:
            total = tf.constant(0.0)
            for group, keep in zip(self.groups, keeps, strict=True):
                xg, yg = self._group_batch(group, x, y)
                logits = self._forward(group, group.weights, xg, keep)
                labels = tf.broadcast_to(yg, tf.shape(logits)[:2])
                ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
                loss = tf.reduce_mean(ce, axis=1)
                total += tf.reduce_sum(loss)
                losses.append(loss)
                hits.append(count_hits(predict(logits), labels))
        grads = iter(tape.gradient(total, [v for g in self.groups for v in g.weights]))
        self.iterations.assign_add(1)
        power = tf.cast(self.iterations, tf.float32)
        beta_1_power, beta_2_power = tf.pow(BETA_1, power), tf.pow(BETA_2, power)
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
                    grad=next(grads),
                )
        return self._in_pack_order(losses), self._in_pack_order(hits)

    # ------------------------------------------------------------------- compiled functions
    def _compile_train_steps(self) -> Any:
        batch = self.batch_size
        x_train, y_train = self.splits["train"]
        # On a GPU the math is one XLA program; the gather and the masks stay outside it.
        update = tf.function(self._update, jit_compile=True) if self.compiled else self._update

        @tf.function(
            input_signature=[
                tf.TensorSpec([len(self.seeds), None], tf.int32),
                tf.TensorSpec([], tf.int64),
                tf.TensorSpec([], tf.int32),
                tf.TensorSpec([], tf.int32),
            ]
        )
        def train_steps(
            perms: tf.Tensor, first_step: tf.Tensor, start: tf.Tensor, stop: tf.Tensor
        ) -> tuple[tf.Tensor, tf.Tensor]:
            n = tf.shape(perms)[1]
            loss_sum = tf.zeros([len(self.configs)])
            correct = tf.zeros([len(self.configs)])
            for i in tf.range(start, stop):
                idx = perms[:, i * batch : tf.minimum((i + 1) * batch, n)]
                # Dropout is keyed on the global step count, so a resumed run draws the same.
                step = first_step + tf.cast(i - start, tf.int64)
                keeps = self._dropout_masks(tf.shape(idx)[1], step)
                loss, hits = update(tf.gather(x_train, idx), tf.gather(y_train, idx), keeps)
                loss_sum += loss * tf.cast(tf.shape(idx)[1], tf.float32)
                correct += hits
            return loss_sum, correct

        return train_steps

    def _eval_sums(
        self, x: tf.Tensor, y: tf.Tensor, best: bool
    ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        n = tf.shape(x)[0]
        batches = (n + EVAL_BATCH - 1) // EVAL_BATCH
        loss_sum = tf.zeros([len(self.configs)])
        correct = tf.zeros([len(self.configs)])
        labelled = tf.TensorArray(tf.uint8, size=batches, infer_shape=False)
        for i in tf.range(batches):
            xb = x[i * EVAL_BATCH : tf.minimum((i + 1) * EVAL_BATCH, n)][None]
            yb = y[i * EVAL_BATCH : tf.minimum((i + 1) * EVAL_BATCH, n)][None]
            losses, hits, labels_out = [], [], []
            for group in self.groups:
                logits = self._forward(group, group.best if best else group.weights, xb)
                labels = tf.broadcast_to(yb, tf.shape(logits)[:2])
                ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
                losses.append(tf.reduce_sum(ce, axis=1))
                predicted = predict(logits)
                hits.append(count_hits(predicted, labels))
                labels_out.append(tf.cast(predicted, tf.uint8))
            loss_sum += self._in_pack_order(losses)
            correct += self._in_pack_order(hits)
            labelled = labelled.write(i, tf.transpose(self._in_pack_order(labels_out)))
        return loss_sum, correct, tf.transpose(labelled.concat())

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
        keep: tf.Tensor | None = None,
    ) -> tf.Tensor:
        w1, b1, w2, b2 = weights
        hidden = activate(group, tf.matmul(x, w1) + b1)
        if keep is not None:  # training, with dropout
            hidden = apply_keep(group, hidden, keep)
        return tf.matmul(hidden, w2) + b2

    def _in_pack_order(self, per_group: list[tf.Tensor]) -> tf.Tensor:
        order = [i for g in self.groups for i in g.members]
        inverse = np.argsort(order)
        return tf.gather(tf.concat(per_group, axis=0), inverse)
