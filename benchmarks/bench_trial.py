"""Time one trial of the exercise's model on real MNIST at batch 1000 and batch 32.

Prints seconds per epoch (fit, and the extra true-training-metrics pass), samples/s and the
accuracies, so a change to the trainer can be compared before/after in one run.

    python benchmarks/bench_trial.py --data-dir ../shared/data [--epochs 3] [--batch-sizes 1000 32]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1000, 32])
    args = parser.parse_args()

    import tensorflow as tf

    from mnistfc.data.dataset import load_dataset
    from mnistfc.engine.train import run_trial
    from mnistfc.trial.config import TrialConfig

    started = time.perf_counter()
    dataset = load_dataset("mnist", args.data_dir)
    load_s = time.perf_counter() - started
    n_train = len(dataset.x_train)
    print(f"machine: {platform.node()} {os.cpu_count()} cpus, TensorFlow {tf.__version__}")
    print(f"data: {dataset.source} loaded in {load_s:.2f} s; {n_train} training images")
    columns = ("batch", "epochs", "s/epoch", "samples/s", "eval s", "valid", "test")
    print(" ".join(f"{c:>{w}}" for c, w in zip(columns, (6, 6, 8, 10, 7, 7, 7), strict=True)))
    for batch_size in args.batch_sizes:
        config = TrialConfig(batch_size=batch_size, epochs=args.epochs)
        result = run_trial(config, dataset, epoch_train_metrics=True)
        per_epoch = result.timing["fit_s"] / args.epochs
        metrics = result.metrics or {}
        print(
            f"{batch_size:>6} {args.epochs:>6} {per_epoch:>8.2f} {n_train / per_epoch:>10.0f} "
            f"{result.timing['eval_s']:>7.2f} {metrics['valid']['accuracy']:>7.4f} "
            f"{metrics['test']['accuracy']:>7.4f}"
        )
    print("s/epoch includes Keras validation and the true training-metrics pass of each epoch")


if __name__ == "__main__":
    main()
