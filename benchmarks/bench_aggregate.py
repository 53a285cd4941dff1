"""Time aggregating a large random-search pool: generate N shards, then `write_report` them.

    python benchmarks/bench_aggregate.py [--shards 10000] [--keep DIR]

Shards are written with the real writer (schema, atomic rename) from a real plan, with
made-up metrics; the timed part is exactly what `mnistfc aggregate` does. Target: < 10 s.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from mnistfc.atomic import atomic_write_text
from mnistfc.folder.plan import save_plan
from mnistfc.folder.result import SweepRef, TrialResult
from mnistfc.folder.schema import Status
from mnistfc.trial.search import expand
from mnistfc.trial.spec import load_spec

JOBS = Path(__file__).resolve().parents[1] / "jobs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=int, default=10_000)
    parser.add_argument("--keep", default=None, help="write into this folder and keep it")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.keep or tmp)
        generate(folder, args.shards)
        from mnistfc.report.writer import write_report

        started = time.perf_counter()
        report = write_report(folder, table_format="github")
        elapsed = time.perf_counter() - started
        print(f"aggregated {args.shards} shards in {elapsed:.2f} s "
              f"({args.shards / elapsed:.0f} shards/s); target < 10 s: "
              f"{'met' if elapsed < 10 else 'MISSED'}")  # fmt: skip
        print(f"wrote {len(report.files)} files")


def generate(folder: Path, n: int) -> None:
    overrides = ["protocol=pool", f"pool_size={n}", "budgets=[10, 20, 50, 100, 200]"]
    spec = load_spec(JOBS / "random.toml", overrides)
    trials = expand(spec)
    save_plan(folder, spec, trials, data_dir=None)
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    for trial in trials:
        valid, test = rng.uniform(0.1, 0.99, size=2)
        split = {
            "loss": float(1 - valid),
            "accuracy": float(valid),
            "error_pct": float(100 * (1 - valid)),
        }
        test_split = {
            "loss": float(1 - test),
            "accuracy": float(test),
            "error_pct": float(100 * (1 - test)),
        }
        epochs = [
            {"epoch": e, "loss": 0.5, "accuracy": 0.9, "val_loss": 0.4, "val_accuracy": 0.9,
             "train_loss": 0.4, "train_acc": 0.9}
            for e in range(1, trial.config.epochs + 1)
        ]  # fmt: skip
        result = TrialResult(
            config=trial.config,
            status=Status.COMPLETED,
            metrics={"train": split, "valid": split, "test": test_split, "best_epoch": 3},
            history=epochs,
            timing={"load_s": 0.5, "fit_s": 30.0, "eval_s": 0.5, "total_s": 31.0},
            env={"host": "bench", "device": "cpu", "slurm": {}},
            sweep=SweepRef(spec.name, spec.spec_hash),
        )
        path = folder / "shards" / f"{trial.trial_id}.json"
        atomic_write_text(path, json.dumps(result.to_record(), indent=1))
    print(f"generated {n} shards in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
