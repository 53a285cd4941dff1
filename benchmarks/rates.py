"""What this machine can do, measured in the same run as a benchmark: float32 matmul
(numpy and TensorFlow, the faster counts) and streaming memory bandwidth; and the bounds a
trial's training cannot beat at those rates (its FLOPs, Adam's memory traffic)."""

from __future__ import annotations

import math
import time

import numpy as np

ADAM_BYTES = 28  # per parameter and step: read weight, gradient, m, v; write weight, m, v
N_TRAIN = 60_000


def training_bounds(configs: list, gflops: float, gbps: float) -> tuple[float, float]:
    """Return the seconds the configs' training cannot beat: (FLOPs, Adam's traffic)."""
    from mnistfc.pack.planner import n_params

    flops = sum(6 * N_TRAIN * n_params(c) * c.epochs for c in configs)
    traffic = sum(
        ADAM_BYTES * n_params(c) * math.ceil(N_TRAIN / c.batch_size) * c.epochs for c in configs
    )
    return flops / (gflops * 1e9), traffic / (gbps * 1e9)


def measure() -> tuple[float, float]:
    """Print and return (GFLOP/s, GB/s)."""
    numpy_gflops, tf_gflops, gbps = _matmul_gflops(), _tf_matmul_gflops(), _stream_gbps()
    print(f"measured: float32 matmul {numpy_gflops:.0f} GFLOP/s (numpy), {tf_gflops:.0f} GFLOP/s "
          f"(TensorFlow); streaming {gbps:.1f} GB/s")  # fmt: skip
    return max(numpy_gflops, tf_gflops), gbps


def _matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    a @ a
    best = math.inf
    for _ in range(repeats):
        started = time.perf_counter()
        a @ a
        best = min(best, time.perf_counter() - started)
    return 2 * n**3 / best / 1e9


def _tf_matmul_gflops(n: int = 2048, repeats: int = 10) -> float:
    import tensorflow as tf

    a = tf.random.uniform([n, n])

    @tf.function
    def run() -> tf.Tensor:
        total = tf.zeros([])
        for _ in tf.range(repeats):
            total += tf.reduce_sum(tf.matmul(a, a)[0, 0])
        return total

    run()
    best = math.inf
    for _ in range(3):
        started = time.perf_counter()
        run().numpy()
        best = min(best, time.perf_counter() - started)
    return 2 * n**3 * repeats / best / 1e9


def _stream_gbps(mb: int = 512, repeats: int = 5) -> float:
    a = np.ones(mb * 2**20 // 4, dtype=np.float32)
    b = np.empty_like(a)
    best = math.inf
    for _ in range(repeats):
        started = time.perf_counter()
        np.copyto(b, a)
        best = min(best, time.perf_counter() - started)
    return 2 * a.nbytes / best / 1e9  # bytes read + written, as ADAM_BYTES counts them
