"""Decide which trials train together in one packed step, and what each costs (no TensorFlow).

Trials pack when they read the same batch stream shape: same dataset, validation split, batch
size and epochs. Everything else (units, dropout, activation, learning rate, seed) may differ
per trial. A pack is capped by a memory budget so a big random-search chunk cannot exhaust a
node.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TypeVar

from mnistfc.trial.config import TrialConfig

T = TypeVar("T")

N_INPUTS, N_CLASSES = 784, 10
DEFAULT_PACK_MB = 1024
# Per parameter: weights, two Adam moments, the best epoch's copy and the gradient (float32).
_BYTES_PER_PARAM = 5 * 4
# Per hidden unit: activations kept for the backward pass and one evaluation batch.
_EVAL_ROWS = 2048


def pack_key(config: TrialConfig) -> tuple[str, int, str, int, int]:
    """Return what trials must share to train in one step."""
    return (config.dataset, config.valid_size, config.valid_split, config.batch_size,
            config.epochs)  # fmt: skip


def n_params(config: TrialConfig) -> int:
    """Return the trial's trainable parameter count (784 -> units -> 10)."""
    return (N_INPUTS + 1) * config.units + (config.units + 1) * N_CLASSES


def pack_bytes(config: TrialConfig) -> int:
    """Return an upper estimate of the memory one trial adds to a pack."""
    activations = 4 * config.units * (4 * config.batch_size + 2 * _EVAL_ROWS)
    return _BYTES_PER_PARAM * n_params(config) + activations


# One trial's share of a packed step on one CPU core, fitted by benchmarks/bench_step.py
# (2-core x86, 2026-12, two runs averaged; each step within 1.5x over batch 16-256, units
# 8-512 and packs of 1-25 trials, ratios vary run to run): a fixed cost for its
# group's ops, Adam's pass over its parameters, and the batch's FLOPs per parameter. Small
# batches are bound by the first two, so a trial's cost is far from its FLOP count.
STEP_S = 1.4e-4
PARAM_STEP_S = 2.1e-9
PARAM_SAMPLE_S = 4.2e-11  # six FLOPs per parameter and sample; evaluation is a third of it
TRACE_S = 0.35  # building its variables and tracing its ops, once per pack


def trial_cost(config: TrialConfig, n_train: int = 60_000, n_eval: int = 10_000) -> float:
    """Return the seconds a trial adds to a CPU lane (steps, evaluations, tracing).

    Used to balance lanes and to turn work left into an ETA, so only ratios matter. The
    constants are measured on CPU cores; on a GPU the fixed share weighs more, so lanes of
    GPUs balance more roughly.
    """
    params = n_params(config)
    steps = config.epochs * math.ceil(n_train / config.batch_size)
    train_s = steps * (STEP_S + params * (PARAM_STEP_S + config.batch_size * PARAM_SAMPLE_S))
    # A validation pass per epoch and the final pass over every split, forward only.
    evaluated = config.epochs * config.valid_size + n_train + n_eval
    return train_s + evaluated * params * PARAM_SAMPLE_S / 3 + TRACE_S


def plan_packs(
    items: Sequence[T],
    max_mb: float = DEFAULT_PACK_MB,
    config: Callable[[T], TrialConfig] = lambda item: item,  # type: ignore[assignment,return-value]
) -> list[list[T]]:
    """Group items by pack key (first-seen order), splitting groups over the memory budget.

    A single trial over the budget still gets a pack of its own: the budget bounds packing,
    it never refuses a trial.
    """
    budget = max_mb * 2**20
    groups: dict[tuple[str, int, str, int, int], list[T]] = {}
    for item in items:
        groups.setdefault(pack_key(config(item)), []).append(item)
    packs: list[list[T]] = []
    for members in groups.values():
        current: list[T] = []
        used = 0
        for item in members:
            size = pack_bytes(config(item))
            if current and used + size > budget:
                packs.append(current)
                current, used = [], 0
            current.append(item)
            used += size
        packs.append(current)
    return packs


def balance(items: Sequence[T], lanes: int, cost: Callable[[T], float]) -> list[list[T]]:
    """Split items over ``lanes`` with about equal total cost (longest first, least loaded).

    Each lane keeps the items' original order, so chunks stay stable for the same input.
    """
    assert lanes >= 1, lanes  # callers pass a validated parallelism
    order = sorted(range(len(items)), key=lambda i: (-cost(items[i]), i))
    loads = [0.0] * lanes
    assigned: list[list[int]] = [[] for _ in range(lanes)]
    for i in order:
        lane = min(range(lanes), key=lambda k: (loads[k], k))
        loads[lane] += cost(items[i])
        assigned[lane].append(i)
    return [[items[i] for i in sorted(lane)] for lane in assigned if lane]
