"""How different are the exercise's validation and test slices? A model-free measurement.

The exercise validates on the last 2,000 MNIST test images and tests on the first 8,000.
This fits PCA (50 components) on the training images and classifies each slice with
1-nearest-neighbour: its error on each slice measures how hard the slice is, independent of
any network. It does the same for the seeded stratified split (``valid_split = "stratified"``).

    python benchmarks/split_shift.py --data-dir ../shared/data
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from mnistfc.data.dataset import load_raw, split_indices


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--components", type=int, default=50)
    args = parser.parse_args()
    started = time.perf_counter()
    raw = load_raw("mnist", args.data_dir)
    x_train = raw.x_train.reshape(len(raw.x_train), -1).astype(np.float32) / 255
    x_test = raw.x_test.reshape(len(raw.x_test), -1).astype(np.float32) / 255
    mean = x_train.mean(axis=0)
    _, _, vt = np.linalg.svd(x_train[::6] - mean, full_matrices=False)  # 10,000 rows suffice
    basis = vt[: args.components].T
    train_z, test_z = (x_train - mean) @ basis, (x_test - mean) @ basis
    predicted = _nearest_labels(train_z, raw.y_train, test_z)
    wrong = predicted != raw.y_test
    print(f"1-NN on {args.components} PCA components, trained on all 60,000 training images")
    print(f"{'split':12s} {'slice':6s} {'images':>6s} {'1-NN error %':>13s}")
    for split in ("exercise", "stratified"):
        valid, test = split_indices(raw.y_test, 2000, split)
        for name, idx in (("valid", valid), ("test", test)):
            print(f"{split:12s} {name:6s} {len(idx):6d} {100 * wrong[idx].mean():13.2f}")
    print(f"({time.perf_counter() - started:.0f} s)")


def _nearest_labels(train: np.ndarray, labels: np.ndarray, query: np.ndarray) -> np.ndarray:
    train_sq = (train**2).sum(axis=1)
    out = np.empty(len(query), dtype=labels.dtype)
    for start in range(0, len(query), 500):
        block = query[start : start + 500]
        distances = train_sq[None, :] - 2 * block @ train.T
        out[start : start + 500] = labels[np.argmin(distances, axis=1)]
    return out


if __name__ == "__main__":
    main()
