"""What packs write to disk: saving every epoch (the old policy, `checkpoint_min = 0`) against
saving by time (the default), on the same slice of the random-search pool, in one run.

Each policy runs `mnistfc sweep` as a whole process on a fresh results folder; bytes written
are the block output of that process and its children (`getrusage(RUSAGE_CHILDREN)`, what
GNU time prints as "File system outputs", in 512-byte blocks). The shards, plan and logs are
a few MB of it; the rest is checkpoints written and deleted again.

    python benchmarks/bench_checkpoints.py --data-dir ../shared/data [--pool 80] [--epochs 4]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(data_dir: str, pool: int, epochs: int, every_min: float | None) -> tuple[float, float]:
    """Return (wall seconds, bytes written) of one sweep as a whole process."""
    results = Path(tempfile.mkdtemp(prefix="bench_checkpoints_"))
    command = [sys.executable, "-m", "mnistfc", "sweep", str(ROOT / "jobs" / "random.toml"),
               "--results", str(results), "--data-dir", data_dir, "--executor", "local",
               "--set", "protocol=pool", "--set", f"pool_size={pool}",
               "--set", f"budgets=[{min(10, pool)}]", "--set", f"base.epochs={epochs}"]  # fmt: skip
    if every_min is not None:
        command += ["--cluster-set", f"checkpoint_min={every_min}"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_oublock
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - started
    written = (resource.getrusage(resource.RUSAGE_CHILDREN).ru_oublock - before) * 512
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    shutil.rmtree(results)
    return wall, written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--pool", type=int, default=80, help="trials of the pool's slice")
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()
    print(f"random-search pool slice: {args.pool} trials x {args.epochs} epochs, "
          "mnistfc sweep --executor local (whole processes)")  # fmt: skip
    rows = [("every epoch (checkpoint_min = 0)", 0.0), ("by time (default, 10 min)", None)]
    measured = []
    for label, every in rows:
        wall, written = run(args.data_dir, args.pool, args.epochs, every)
        measured.append((wall, written))
        print(f"  {label:34s} {wall:7.1f} s wall   {written / 1e6:9.1f} MB written")
    (wall_a, bytes_a), (wall_b, bytes_b) = measured
    print(
        f"bytes written, every epoch / by time: {bytes_a / max(bytes_b, 1):.1f}x; "
        f"wall time, every epoch / by time: {wall_a / wall_b:.2f}x"
    )


if __name__ == "__main__":
    main()
