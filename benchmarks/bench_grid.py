"""The exercise's grid as the exercise ran it against `mnistfc sweep`, both timed as whole
processes, in one run on one machine.

The baseline is benchmarks/exercise_grid.py: the exercise's own loop (one Keras model per
cell, `fit` with validation data, `evaluate` on test). Against it, `mnistfc sweep
jobs/grid.toml --executor local`, the command a user types (start-up, TensorFlow import, data
load, tracing, shards and the parent's wait included). Prints the whole-process ratio, then
labelled second lines: seconds per sweep-epoch of training alone, where mnistfc's lanes spent
their time, the ratio of training to FLOP and Adam-memory bounds measured here in the same
run, and the mean test accuracies side by side (the loop's last epoch; mnistfc's model of the
best validation epoch).

    python benchmarks/bench_grid.py --data-dir ../shared/data [--epochs 10] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--epochs", type=int, default=10, help="the exercise's 10; fewer: quick")
    parser.add_argument("--keep", default=None, help="keep mnistfc's results folder here")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import exercise_grid
    import lanes as lanes_of
    import rates

    from mnistfc.engine.pack.planner import n_params
    from mnistfc.trial.search import expand
    from mnistfc.trial.spec import load_spec

    spec = load_spec(ROOT / "jobs" / "grid.toml", [f"base.epochs={args.epochs}"])
    axes = dict(spec.axes)
    assert (
        list(axes["dropout"]) == exercise_grid.DROPOUTS
        and list(axes["units"]) == exercise_grid.UNITS
    )
    assert spec.base.batch_size == exercise_grid.BATCH_SIZE
    trials = [t.config for t in expand(spec)]
    params = sum(n_params(c) for c in trials)
    print(f"machine: {platform.node()}, {os.cpu_count()} cores, {platform.processor() or '?'}")
    measured = rates.measure_all()
    gflops, gbps = measured["gflops"], measured["stream_all"]
    print(f"the exercise's grid: {len(trials)} cells, {params / 1e6:.2f} M parameters, batch "
          f"{spec.base.batch_size}, {args.epochs} epoch(s)\n")  # fmt: skip

    exercise = [sys.executable, str(ROOT / "benchmarks" / "exercise_grid.py"), "--data-dir",
                args.data_dir, "--epochs", str(args.epochs)]  # fmt: skip
    loop_wall, loop = _timed(exercise)
    cells = [json.loads(line) for line in loop.splitlines() if line.startswith("{")]
    loop_fit = cells.pop()["fit_s"]
    print(f"exercise loop (benchmarks/exercise_grid.py): {loop_wall:.1f} s wall")

    folder = Path(args.keep or tempfile.mkdtemp(prefix="bench_grid_"))
    results = folder / "grid"
    command = [sys.executable, "-m", "mnistfc", "sweep", str(ROOT / "jobs" / "grid.toml"),
               "--results", str(results), "--executor", "local", "--data-dir", args.data_dir,
               "--set", f"base.epochs={args.epochs}"]  # fmt: skip
    began = time.time()
    sweep_wall, _ = _timed(command)
    ended = time.time()
    print(f"mnistfc sweep jobs/grid.toml --executor local: {sweep_wall:.1f} s wall\n")
    shards = _shards(results)

    print(f"whole process, as a user waits: {loop_wall:.1f} s vs {sweep_wall:.1f} s = "
          f"{loop_wall / sweep_wall:.1f}x")  # fmt: skip
    lanes = lanes_of.lanes(results / "submitit")
    sweep_fit = max(lane["epochs"] for lane in lanes) if lanes else math.nan
    print(f"second line, training only (fit, per sweep-epoch): loop "
          f"{loop_fit / args.epochs:.2f} s, mnistfc {sweep_fit / args.epochs:.2f} s (slowest "
          f"lane) = {loop_fit / sweep_fit:.1f}x")  # fmt: skip
    flop_bound, memory_bound = rates.training_bounds(trials, gflops, gbps)
    bound = max(flop_bound, memory_bound)
    print(f"bounds for the grid's training: FLOPs (as executed, {rates.N_TRAIN} samples x "
          f"epochs at {gflops:.0f} GFLOP/s) {flop_bound:.1f} s, Adam memory ({rates.ADAM_BYTES} B "
          f"x params x steps x epochs at {gbps:.1f} GB/s, every lane streaming) "
          f"{memory_bound:.1f} s; mnistfc's training / larger "
          f"bound {sweep_fit / bound:.2f}x, the whole sweep / larger bound "
          f"{sweep_wall / bound:.2f}x")  # fmt: skip
    lanes_of.print_breakdown(lanes, began, ended)
    loop_test = statistics.fmean(c["test_accuracy"] for c in cells)
    ours = [s["metrics"]["test"]["accuracy"] for s in shards.values() if s["metrics"]]
    ours_test = statistics.fmean(ours)
    print(f"\nmean test accuracy over {len(cells)} cells: loop {loop_test:.4f} (last epoch), "
          f"mnistfc {ours_test:.4f} (best validation epoch, {len(ours)} cells); "
          f"difference {100 * (ours_test - loop_test):+.2f} points")  # fmt: skip
    by_cell = {(s["config"]["dropout"], s["config"]["units"]): s for s in shards.values()}
    print(f"{'dropout':>8s} {'units':>6s} | test loop  mnistfc")
    for cell in cells:
        shard = by_cell.get((cell["dropout"], cell["units"]))
        mine = shard["metrics"]["test"]["accuracy"] if shard and shard["metrics"] else math.nan
        theirs = cell["test_accuracy"]
        print(f"{cell['dropout']:8.1f} {cell['units']:6d} |    {theirs:.4f}   {mine:.4f}")


def _timed(command: list[str]) -> tuple[float, str]:
    """Run a whole process as a user would; return its wall seconds and its stdout."""
    started = time.perf_counter()
    run = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - started
    if run.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({run.returncode}):\n{run.stderr[-3000:]}")
    return wall, run.stdout


def _shards(results: Path) -> dict[str, dict]:
    from mnistfc.folder.shards import list_shards, read_shard

    return {r["trial_id"]: r for r in map(read_shard, list_shards(results))}


if __name__ == "__main__":
    main()
