"""Build the exercise's network for a trial config: 784 -> Dense -> Dropout -> Dense(10) softmax."""

from __future__ import annotations

from typing import Any

from mnistfc.trial.config import TrialConfig

N_INPUTS = 784
N_CLASSES = 10


def build_model(config: TrialConfig) -> Any:
    """Return a compiled Keras model for ``config`` (Adam, categorical cross-entropy, accuracy).

    Keras is imported here, not at module level, so that planning and aggregation never pay
    for (or need) TensorFlow.
    """
    import keras

    model = keras.Sequential(
        [
            keras.Input(shape=(N_INPUTS,)),
            keras.layers.Dense(config.units, activation=config.activation, name="hidden"),
            keras.layers.Dropout(config.dropout, seed=config.seed, name="dropout"),
            keras.layers.Dense(N_CLASSES, activation="softmax", name="output"),
        ],
        name=f"fc{config.units}",
    )
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=config.learning_rate),
        loss="categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model
