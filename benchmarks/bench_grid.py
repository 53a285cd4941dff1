"""Time a sweep the exercise's way (one Keras model per trial) and packed, in one run.

Both runs go through the product's own path (`plan_submission` + `submit`, local executor) on
the same spec, data and epochs: the exercise's loop is `--no-pack` with one lane; the fast
path is the default (packed lanes). Prints seconds per sweep-epoch, the ratio, trials per
hour, the ratios to a FLOP bound and to Adam's memory-traffic bound (both measured here in
the same run) and the per-trial accuracies of both runs side by side.

    python benchmarks/bench_grid.py --data-dir ../shared/data [--epochs 2]
        [--set grid.units=[16,32] ...] [--spec jobs/random.toml --set protocol=pool ...]
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
ADAM_BYTES = 28  # per parameter and step: read weight, gradient, m, v; write weight, m, v


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--spec", default=str(ROOT / "jobs" / "grid.toml"))
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--lanes", type=int, default=None, help="packed lanes (default: auto)")
    parser.add_argument("--keep", default=None, help="keep both results folders here")
    args = parser.parse_args()

    from mnistfc import sweep
    from mnistfc.launch.profile import load_profile
    from mnistfc.pack.planner import n_params
    from mnistfc.search import expand
    from mnistfc.spec import load_spec

    spec = load_spec(args.spec, [f"base.epochs={args.epochs}", *args.set])
    trials = [t.config for t in expand(spec)]
    n_train = 60_000
    params = sum(n_params(c) for c in trials)
    steps = {c.trial_id: math.ceil(n_train / c.batch_size) for c in trials}
    print(f"machine: {platform.node()}, {os.cpu_count()} cores, {platform.processor() or '?'}")
    numpy_gflops, tf_gflops, gbps = _matmul_gflops(), _tf_matmul_gflops(), _stream_gbps()
    gflops = max(numpy_gflops, tf_gflops)
    print(f"measured: float32 matmul {numpy_gflops:.0f} GFLOP/s (numpy), {tf_gflops:.0f} GFLOP/s "
          f"(TensorFlow); streaming {gbps:.1f} GB/s")  # fmt: skip
    print(f"sweep {spec.name}: {len(trials)} trials, {params / 1e6:.2f} M parameters, "
          f"{args.epochs} epoch(s)")  # fmt: skip

    folder = Path(args.keep or tempfile.mkdtemp(prefix="bench_grid_"))
    runs = {}
    for name, pack, lanes in (("keras", False, 1), ("packed", True, args.lanes)):
        profile = load_profile(None, ["executor=local"])
        plan = sweep.plan_submission(
            spec, profile, folder / name, data_dir=args.data_dir, max_parallel=lanes, pack=pack
        )
        started = time.perf_counter()
        _submission, failed = sweep.submit(plan, wait=True)
        wall = time.perf_counter() - started
        if failed:
            raise SystemExit(f"{name}: tasks failed, see {folder / name / 'submitit'}")
        runs[name] = (wall, _shards(folder / name), plan)
        print(f"{name}: {len(plan.tasks)} lane(s), {wall:.1f} s wall")

    keras_wall, keras, _ = runs["keras"]
    packed_wall, packed, plan = runs["packed"]
    keras_fit = sum(r["timing"]["fit_s"] + r["timing"]["eval_s"] for r in keras.values())
    packed_fit = _lane_fit_s(packed, plan.task_trials)
    per_epoch = {"keras": keras_fit / args.epochs, "packed": packed_fit / args.epochs}
    flop_bound = 6 * n_train * params / (gflops * 1e9)
    memory_bound = sum(n_params(c) * steps[c.trial_id] for c in trials) * ADAM_BYTES / (gbps * 1e9)
    print()
    print(f"{'':28s} {'keras loop':>12s} {'packed':>12s}")
    print(f"{'s per sweep-epoch (fit+eval)':28s} {per_epoch['keras']:12.2f} "
          f"{per_epoch['packed']:12.2f}")  # fmt: skip
    print(f"{'wall s, whole run':28s} {keras_wall:12.1f} {packed_wall:12.1f}")
    print(f"{'trials per hour (10 epochs)':28s} "
          f"{3600 / (per_epoch['keras'] * 10 / len(trials)):12.0f} "
          f"{3600 / (per_epoch['packed'] * 10 / len(trials)):12.0f}")  # fmt: skip
    print(f"speed-up per epoch: {per_epoch['keras'] / per_epoch['packed']:.1f}x "
          f"(wall: {keras_wall / packed_wall:.1f}x)")  # fmt: skip
    print(f"FLOP bound (6 x {n_train} x params at {gflops:.0f} GFLOP/s): {flop_bound:.2f} s; "
          f"Adam memory bound ({ADAM_BYTES} B x params x steps at {gbps:.1f} GB/s): "
          f"{memory_bound:.2f} s")  # fmt: skip
    bound = max(flop_bound, memory_bound)
    print(f"packed / larger bound: {per_epoch['packed'] / bound:.2f}x; "
          f"keras loop / larger bound: {per_epoch['keras'] / bound:.2f}x")  # fmt: skip
    print()
    _print_side_by_side(trials, keras, packed, spec)


def _shards(results: Path) -> dict[str, dict]:
    from mnistfc.records import list_shards, read_shard

    return {r["trial_id"]: r for r in map(read_shard, list_shards(results))}


def _lane_fit_s(shards: dict[str, dict], chunks: list[list]) -> float:
    """Return the slowest lane's training time: lanes run at once, packs in a lane in turn."""
    lanes = []
    for chunk in chunks:
        packs = {}
        for trial in chunk:
            pack = shards[trial.trial_id]["env"]["pack"]
            packs[pack["id"]] = pack["fit_s"] + pack["eval_s"]
        lanes.append(sum(packs.values()))
    return max(lanes)


def _print_side_by_side(trials: list, keras: dict, packed: dict, spec: object) -> None:
    axes = [name for name, _ in spec.axes]  # type: ignore[attr-defined]
    print(f"{' '.join(f'{a:>13s}' for a in axes)} | valid keras  packed | test keras  packed")
    diffs = []
    for config in trials:
        k, p = keras[config.trial_id]["metrics"], packed[config.trial_id]["metrics"]
        if not (k and p):
            print(f"{config.trial_id}: keras {keras[config.trial_id]['status']}, "
                  f"packed {packed[config.trial_id]['status']}")  # fmt: skip
            continue
        values = " ".join(f"{getattr(config, a)!s:>13s}" for a in axes)
        kv, pv = k["valid"]["accuracy"], p["valid"]["accuracy"]
        kt, pt = k["test"]["accuracy"], p["test"]["accuracy"]
        diffs.append(pv - kv)
        print(f"{values} |      {kv:.4f}  {pv:.4f} |     {kt:.4f}  {pt:.4f}")
    if diffs:
        d = np.array(diffs)
        print(f"valid accuracy, packed - keras: mean {d.mean():+.4f}, "
              f"mean |diff| {np.abs(d).mean():.4f}, max |diff| {np.abs(d).max():.4f}")  # fmt: skip


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


if __name__ == "__main__":
    main()
