"""The exercise's grid search as the exercise wrote it: one Keras model per cell, trained with
``fit`` (validation data given), then ``evaluate`` on the test set. The baseline that
benchmarks/bench_grid.py times as a whole process against ``mnistfc sweep jobs/grid.toml``.

Only the data source differs: Keras's ``mnist.load_data()`` downloads, so the same file
(mnist.npz, Keras's format) is read from --data-dir. Prints one JSON line per cell, then one
with the seconds spent in ``fit``.

    python benchmarks/exercise_grid.py --data-dir ../shared/data [--epochs 10]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

DROPOUTS = [0.0, 0.1, 0.3, 0.5, 0.8]  # the exercise's grid (jobs/grid.toml holds the same)
UNITS = [16, 32, 64, 128, 256]
BATCH_SIZE, LEARNING_RATE, VALID_SIZE = 32, 0.001, 2000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()

    import keras
    import numpy as np

    with np.load(Path(args.data_dir) / "mnist.npz") as data:
        x_train, y_train = data["x_train"], data["y_train"]
        x_test, y_test = data["x_test"], data["y_test"]
    x_train = x_train.reshape(-1, 784).astype("float32") / 255
    x_test = x_test.reshape(-1, 784).astype("float32") / 255
    y_train = keras.utils.to_categorical(y_train, 10)
    y_test = keras.utils.to_categorical(y_test, 10)
    x_valid, y_valid = x_test[-VALID_SIZE:], y_test[-VALID_SIZE:]
    x_test, y_test = x_test[:-VALID_SIZE], y_test[:-VALID_SIZE]

    fit_s = 0.0
    for dropout in DROPOUTS:
        for units in UNITS:
            model = keras.Sequential(
                [
                    keras.Input(shape=(784,)),
                    keras.layers.Dense(units, activation="relu"),
                    keras.layers.Dropout(dropout),
                    keras.layers.Dense(10, activation="softmax"),
                ]
            )
            model.compile(
                optimizer=keras.optimizers.Adam(learning_rate=LEARNING_RATE),
                loss="categorical_crossentropy",
                metrics=["accuracy"],
            )
            started = time.perf_counter()
            history = model.fit(x_train, y_train, batch_size=BATCH_SIZE, epochs=args.epochs,
                                validation_data=(x_valid, y_valid), verbose=0)  # fmt: skip
            fit_s += time.perf_counter() - started
            _, test_accuracy = model.evaluate(x_test, y_test, verbose=0)
            cell = {"dropout": dropout, "units": units, "test_accuracy": float(test_accuracy),
                    "valid_accuracy": float(history.history["val_accuracy"][-1])}  # fmt: skip
            print(json.dumps(cell), flush=True)
    print(json.dumps({"fit_s": fit_s}), flush=True)


if __name__ == "__main__":
    main()
