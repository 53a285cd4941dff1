"""The math of a packed step, per group of trials: stacked layers, and each trial's own
initial weights, data order, activation and dropout masks.

Every random draw is keyed on the trial's seed (and the epoch or step), never on the pack,
so a trial's numbers do not depend on which other trials share its step.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from mnistfc.engine.model import build_model
from mnistfc.trial.config import TrialConfig

KERAS_SEED_MOD = 2**31 - 2


@dataclass
class Group:
    """Trials of one width and learning rate: stacked variables, one fused Adam op each."""

    members: list[int]
    configs: list[TrialConfig]
    seed_pos: list[int]
    weights: list[tf.Variable] = field(default_factory=list)
    moments: list[tuple[tf.Variable, tf.Variable]] = field(default_factory=list)
    best: list[tf.Variable] = field(default_factory=list)

    @property
    def learning_rate(self) -> float:
        return self.configs[0].learning_rate


def initial_weights(configs: list[TrialConfig]) -> list[list[np.ndarray]]:
    """Return each trial's initial weights exactly as the Keras path builds them."""
    import keras

    cache: dict[tuple[int, int], list[np.ndarray]] = {}
    out = []
    for config in configs:
        key = (config.seed, config.units)  # initialisation draws depend on nothing else
        if key not in cache:
            keras.utils.set_random_seed(config.seed)
            cache[key] = [np.asarray(w) for w in build_model(config).get_weights()]
        out.append(cache[key])
    return out


def permutation(n: int, seed: int, epoch: int) -> tf.Tensor:
    """Return the trial seed's data order for an epoch (negative counters: never a dropout's)."""
    keys = tf.random.stateless_uniform([n], seed=tf.constant([seed, -epoch], tf.int64))
    return tf.argsort(keys, stable=True)


def dropout_keep(group: Group, shape: tf.Tensor, step: tf.Tensor) -> tf.Tensor | None:
    """Return the group's keep masks at this step, [T, B, units] bool (None: no dropout).

    Each trial's masks come from its own seed and the step: never from its pack-mates.
    Keras's SeedGenerator yields [seed, step] and folds both into int32 the same way, so
    these are the masks a Keras model of this seed draws at this step. TensorFlow's kernel
    draws them (the same bits on CPU and GPU); XLA's would differ, so a compiled step
    takes them as an input.
    """
    if not any(c.dropout for c in group.configs):
        return None
    keep = []
    for config in group.configs:
        if config.dropout == 0.0:
            keep.append(tf.ones(shape, tf.bool))
            continue
        seed = tf.stack([tf.constant(config.seed % KERAS_SEED_MOD, tf.int64), step])
        noise = tf.random.stateless_uniform(shape, seed=_keras_seed(seed))
        keep.append(noise >= config.dropout)
    return tf.stack(keep)


def apply_keep(group: Group, hidden: tf.Tensor, keep: tf.Tensor) -> tf.Tensor:
    """Zero the dropped units and scale the kept ones by 1 / (1 - rate), per trial."""
    scale = tf.constant([1.0 / (1.0 - c.dropout) for c in group.configs], tf.float32)
    return tf.where(keep, hidden * scale[:, None, None], 0.0)


def _keras_seed(seed: tf.Tensor) -> tf.Tensor:
    # keras.src.backend.tensorflow.random._cast_seed: floormod by 2**31 - 2, then int32.
    return tf.cast(tf.math.floormod(seed, KERAS_SEED_MOD), tf.int32)


def activate(group: Group, z: tf.Tensor) -> tf.Tensor:
    import keras

    names = [c.activation for c in group.configs]
    if len(set(names)) == 1:
        return keras.activations.get(names[0])(z)
    out = tf.zeros_like(z)
    for name in sorted(set(names)):
        mask = tf.constant([n == name for n in names])[:, None, None]
        out = tf.where(mask, keras.activations.get(name)(z), out)
    return out


def predict(logits: tf.Tensor) -> tf.Tensor:
    """Return each trial's predicted class per image, [T, B] int32."""
    return tf.argmax(logits, axis=-1, output_type=tf.int32)


def count_hits(predicted: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    """Return each trial's count of right predictions, [T]."""
    return tf.reduce_sum(tf.cast(tf.equal(predicted, labels), tf.float32), axis=1)


def int_labels(one_hot: np.ndarray) -> np.ndarray:
    return np.argmax(one_hot, axis=1).astype(np.int32)
