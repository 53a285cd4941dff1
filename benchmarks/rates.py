"""What this machine can do, measured in the same run as a benchmark: float32 matmul
(numpy and TensorFlow, the faster counts) and streaming memory bandwidth, alone and with
every lane streaming at once; and the bounds a trial's training cannot beat at those rates
(the FLOPs its step executes, Adam's memory traffic)."""

from __future__ import annotations

import math
import multiprocessing
import os
import time
from typing import Any

import numpy as np

ADAM_BYTES = 28  # per parameter and step: read weight, gradient, m, v; write weight, m, v
N_TRAIN = 60_000
N_INPUTS, N_CLASSES = 784, 10
MAX_LANES = 4  # as mnistfc.launch.local.MAX_CPU_LANES


def train_flops_per_sample(units: int, executed: bool = True) -> float:
    """Return the FLOPs one training sample costs a 784 -> units -> 10 network.

    ``executed``: what the step runs. Layer 1's input is the data, so TensorFlow never
    computes its input gradient: its weights cost a forward and a weight-gradient matmul,
    4 FLOPs each; layer 2's cost forward, input gradient and weight gradient, 6. Without it:
    the textbook 6 x parameters, which counts layer 1's input gradient too (the bound of
    earlier versions, about 1.5x too high for these networks).
    """
    first, second = (N_INPUTS + 1) * units, (units + 1) * N_CLASSES
    return 4 * first + 6 * second if executed else 6 * (first + second)


def training_bounds(
    configs: list, gflops: float, gbps: float, executed: bool = True
) -> tuple[float, float]:
    """Return the seconds the configs' training cannot beat: (FLOPs, Adam's traffic)."""
    from mnistfc.engine.pack.planner import n_params

    flops = sum(N_TRAIN * train_flops_per_sample(c.units, executed) * c.epochs for c in configs)
    traffic = sum(
        ADAM_BYTES * n_params(c) * math.ceil(N_TRAIN / c.batch_size) * c.epochs for c in configs
    )
    return flops / (gflops * 1e9), traffic / (gbps * 1e9)


def lanes() -> int:
    """Return how many single-threaded lanes a packed local run uses here."""
    return max(1, min(len(os.sched_getaffinity(0)), MAX_LANES))


def measure() -> tuple[float, float]:
    """Print and return (GFLOP/s, GB/s): the machine's matmul rate and one stream's rate."""
    rates = measure_all()
    return rates["gflops"], rates["stream_one"]


def measure_all() -> dict[str, Any]:
    """Print and return the rates: ``gflops`` (the machine), ``stream_one`` (one process
    streaming alone), ``stream_lane`` (each of ``lanes`` processes streaming at once: what one
    lane of a packed run gets) and ``stream_all`` (their sum: the machine's bound)."""
    n = lanes()
    each = _concurrent_stream_gbps(n)  # before TensorFlow starts in this process: it forks
    numpy_gflops, tf_gflops, gbps = _matmul_gflops(), _tf_matmul_gflops(), _stream_gbps()
    print(f"measured: float32 matmul {numpy_gflops:.0f} GFLOP/s (numpy), {tf_gflops:.0f} GFLOP/s "
          f"(TensorFlow); streaming {gbps:.1f} GB/s alone, {each:.1f} GB/s each with {n} "
          f"processes streaming at once ({n * each:.1f} GB/s in all)")  # fmt: skip
    return {"gflops": max(numpy_gflops, tf_gflops), "stream_one": gbps, "stream_lane": each,
            "stream_all": n * each, "lanes": n}  # fmt: skip


_barrier: Any = None


def _with_barrier(barrier: Any) -> None:
    global _barrier
    _barrier = barrier


def _stream_in_step(_: int) -> float:
    return _stream_gbps(barrier=_barrier)


def _concurrent_stream_gbps(n: int) -> float:
    """Return the slowest process's streaming rate while ``n`` stream at once (each copy
    starts together, so no process streams alone)."""
    if n == 1:
        return _stream_gbps()
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(n)
    with context.Pool(n, initializer=_with_barrier, initargs=(barrier,)) as pool:
        return min(pool.map(_stream_in_step, range(n), chunksize=1))


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


def _stream_gbps(mb: int = 512, repeats: int = 5, barrier: Any = None) -> float:
    a = np.ones(mb * 2**20 // 4, dtype=np.float32)
    b = np.empty_like(a)
    best = math.inf
    for _ in range(repeats):
        if barrier is not None:
            barrier.wait()
        started = time.perf_counter()
        np.copyto(b, a)
        best = min(best, time.perf_counter() - started)
    return 2 * a.nbytes / best / 1e9  # bytes read + written, as ADAM_BYTES counts them
