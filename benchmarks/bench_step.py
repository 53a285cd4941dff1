"""Measure what one trial adds to a packed step on one core, and refit the planner's costs.

Local lanes are balanced and ETAs computed from `pack.planner.trial_cost`, whose constants
are a fit of this benchmark: per trial-step, a fixed cost (its group's ops), Adam's pass over
its parameters, and the batch's FLOPs per parameter; per trial, building and tracing its
ops. This runs packs of several shapes single-threaded, as a lane does, prints each step
time beside the planner's prediction and the ops a step dispatches (nodes of the compiled
loop's body as traced; each costs ~1 us on a CPU and a kernel launch on a GPU), then the
constants fitted here beside the planner's.
A machine where the ratios stray far (say beyond 1.5x) balances its lanes less well.

Last, the step as one XLA program (what a GPU runs; ``MNISTFC_XLA_STEP``) against the plain
step, on random-search packs of each batch size (the first 40 trials of jobs/random.toml
at that size): ms per step, ops per step and the first call (tracing and compiling).

    python benchmarks/bench_step.py --data-dir ../shared/data
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# (batch size, groups of one trial each, units; 0 = the random search's units in turn)
SHAPES = [
    (16, 1, 128), (64, 1, 128), (256, 1, 128), (16, 1, 512), (256, 1, 512),
    (16, 5, 128), (64, 5, 128), (256, 5, 128), (16, 25, 128), (256, 25, 128),
    (16, 25, 0), (64, 25, 0), (256, 25, 0),
]  # fmt: skip
MIXED_UNITS = (8, 32, 128, 256, 512)
LEARNING_RATES = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
STEPS = 300


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    args = parser.parse_args()

    from mnistfc.engine import runtime

    runtime.limit_threads(1)  # as a CPU lane runs
    import numpy as np

    runtime.load_tensorflow().get_logger().setLevel("ERROR")  # new packs retrace by design

    from mnistfc.data.dataset import load_dataset
    from mnistfc.engine.pack import planner
    from mnistfc.engine.pack.model import PackedModel
    from mnistfc.trial.config import TrialConfig

    dataset = load_dataset("mnist", args.data_dir)
    PackedModel([TrialConfig()], dataset).evaluate("valid")  # TensorFlow's one-off start-up

    rows, seconds, traced = [], [], []
    print(
        "batch groups units | ms/step measured  planner  planner/measured | trace s/trial | "
        "ops/step"
    )
    for batch, groups, units in SHAPES:
        configs = [
            TrialConfig(
                units=units or MIXED_UNITS[g % 5],
                # distinct learning rates: one trial per group, as in a random-search pack
                learning_rate=LEARNING_RATES[g % 5] * (1 + 0.01 * (g // 5)),
                batch_size=batch,
                seed=g,
                dropout=0.1,
            )
            for g in range(groups)
        ]
        started = time.perf_counter()
        model = PackedModel(configs, dataset)
        perms = model.permutations(1)
        model.train_steps(perms, 0, 8)
        first = time.perf_counter() - started
        t0 = time.perf_counter()
        model.train_steps(perms, 8, 16)
        eight = time.perf_counter() - t0
        t0 = time.perf_counter()
        model.train_steps(perms, 16, 16 + STEPS)
        step_s = (time.perf_counter() - t0) / STEPS
        traced.append((first - eight) / groups)

        params = [planner.n_params(c) for c in configs]
        rows.append([groups, sum(params), batch * sum(params)])
        seconds.append(step_s)
        predicted = sum(
            planner.STEP_S + p * (planner.PARAM_STEP_S + batch * planner.PARAM_SAMPLE_S)
            for p in params
        )
        print(
            f"{batch:5d} {groups:6d} {units or 'mixed':>5} | {step_s * 1e3:16.3f} "
            f"{predicted * 1e3:8.3f} {predicted / step_s:17.2f}x | {traced[-1]:13.2f} | "
            f"{ops_per_step(model)}"
        )

    # Least squares on relative error: small packs matter as much as big ones.
    a, y = np.array(rows, float), np.array(seconds)
    fit, *_ = np.linalg.lstsq(a / y[:, None], np.ones_like(y), rcond=None)
    error = a @ fit / y
    print(f"fit within {error.min():.2f}x-{error.max():.2f}x of the measured steps")
    print("constant         fitted here   planner")
    for name, value in zip(("STEP_S", "PARAM_STEP_S", "PARAM_SAMPLE_S"), fit, strict=True):
        print(f"{name:16s} {value:11.3g} {getattr(planner, name):9.3g}")
    print(f"{'TRACE_S':16s} {float(np.median(traced)):11.3g} {planner.TRACE_S:9.3g}  (median)")
    print(
        f"second line: Adam's pass {28 / fit[1] / 1e9:.1f} GB/s, "
        f"FLOPs {6 / fit[2] / 1e9:.0f} GFLOP/s on one core"
    )
    compare_compiled(dataset)


def compare_compiled(dataset: object, steps: int = 100) -> None:
    """Print the plain and the compiled step side by side on random-search packs."""
    from pathlib import Path

    from mnistfc.engine.pack.model import PackedModel
    from mnistfc.trial.search import expand
    from mnistfc.trial.spec import load_spec

    drawn = [t.config for t in expand(load_spec(Path(__file__).parents[1] / "jobs/random.toml"))]
    print("random-search pack: batch trials | ms/step plain  compiled  plain/compiled | "
          "ops/step plain compiled | first call s plain compiled")  # fmt: skip
    for batch in (16, 32, 64, 128, 256):
        configs = [c for c in drawn if c.batch_size == batch][:40]
        timed = {}
        for compiled in (False, True):
            started = time.perf_counter()
            model = PackedModel(configs, dataset, compiled=compiled)
            perms = model.permutations(1)
            model.train_steps(perms, 0, 8)
            first = time.perf_counter() - started
            t0 = time.perf_counter()
            model.train_steps(perms, 8, 8 + steps)
            timed[compiled] = ((time.perf_counter() - t0) / steps, ops_per_step(model), first)
        (plain, plain_ops, plain_first), (xla, xla_ops, xla_first) = timed[False], timed[True]
        print(f"{batch:24d} {len(configs):6d} | {plain * 1e3:13.2f} {xla * 1e3:9.2f} "
              f"{plain / xla:15.2f}x | {plain_ops:14d} {xla_ops:8d} | {plain_first:12.1f} "
              f"{xla_first:8.1f}")  # fmt: skip


def ops_per_step(model: object) -> int:
    """Return the nodes of the training loop's body: the ops one step dispatches."""
    graph = model._train_steps.get_concrete_function().graph.as_graph_def()  # type: ignore[attr-defined]
    return max(len(f.node_def) for f in graph.library.function if "while_body" in f.signature.name)


if __name__ == "__main__":
    main()
