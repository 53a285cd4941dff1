"""Which trials pack together, and how sweeps turn packs into tasks."""

from __future__ import annotations

from pathlib import Path

import pytest

from mnistfc.engine.pack.planner import balance, pack_bytes, pack_key, plan_packs, trial_cost
from mnistfc.launch import load_profile
from mnistfc.sweep.submit import plan_submission
from mnistfc.trial.config import TrialConfig
from mnistfc.trial.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]


def test_packs_group_by_batch_size_and_epochs_in_first_seen_order() -> None:
    configs = [
        TrialConfig(batch_size=32, units=8),
        TrialConfig(batch_size=64, units=8),
        TrialConfig(batch_size=32, units=16, learning_rate=0.1, activation="tanh", seed=4),
        TrialConfig(batch_size=32, units=8, epochs=3),
    ]
    packs = plan_packs(configs)
    assert packs == [[configs[0], configs[2]], [configs[1]], [configs[3]]]
    assert all(len({pack_key(c) for c in pack}) == 1 for pack in packs)


def test_the_memory_budget_splits_packs_but_never_drops_a_trial() -> None:
    configs = [TrialConfig(units=512, seed=s) for s in range(10)]
    budget_mb = 3 * pack_bytes(configs[0]) / 2**20
    packs = plan_packs(configs, budget_mb)
    assert [len(p) for p in packs] == [3, 3, 3, 1]
    assert [c for p in packs for c in p] == configs
    assert plan_packs(configs[:1], 0.001) == [configs[:1]]  # over budget alone: still run


def test_balance_evens_out_cost_and_keeps_order() -> None:
    configs = [TrialConfig(units=u, seed=i) for i, u in enumerate((16, 256, 32, 128, 64, 256))]
    lanes = balance(configs, 2, trial_cost)
    loads = [sum(trial_cost(c) for c in lane) for lane in lanes]
    assert max(loads) / min(loads) < 1.3
    for lane in lanes:
        assert lane == sorted(lane, key=configs.index)
    assert sorted(c.units for lane in lanes for c in lane) == sorted(c.units for c in configs)
    assert len(balance(configs[:1], 4, trial_cost)) == 1


def test_trial_cost_counts_steps_as_well_as_flops() -> None:
    """A batch-16 epoch has 16x the steps of a batch-256 one but the same FLOPs; measured
    (benchmarks/bench_step.py), it costs between the two counts' predictions."""
    small, large = TrialConfig(batch_size=16), TrialConfig(batch_size=256)
    assert 1.0 < trial_cost(small) / trial_cost(large) < 16.0
    assert trial_cost(TrialConfig(units=256)) > trial_cost(TrialConfig(units=128))
    one, two = (trial_cost(TrialConfig(batch_size=32, epochs=e)) for e in (10, 20))
    assert 1.8 < two / one < 2.0  # the final evaluation and tracing are paid once


def _plan(tmp_path: Path, npz_dir: Path, spec: str, *overrides: str, **kwargs: object):
    spec_sets = ["base.epochs=1", *(o for o in overrides if o.startswith("protocol"))]
    overrides = tuple(o for o in overrides if not o.startswith("protocol"))
    return plan_submission(
        load_spec(ROOT / "jobs" / spec, spec_sets),
        load_profile(None, list(overrides)),
        tmp_path / "r",
        data_dir=str(npz_dir),
        **kwargs,  # type: ignore[arg-type]
    )


def test_slurm_runs_one_array_task_per_pack(tmp_path: Path, npz_dir: Path) -> None:
    slurm = ("executor=slurm", "partition=p")
    grid = _plan(tmp_path, npz_dir, "grid.toml", *slurm)
    assert grid.packed and len(grid.task_trials) == 1 and len(grid.task_trials[0]) == 25
    pool = _plan(tmp_path, npz_dir, "random.toml", *slurm, "protocol=pool")
    assert sorted({len({t.config.batch_size for t in c}) for c in pool.task_trials}) == [1]
    assert len(pool.task_trials) == 5  # the five batch sizes
    unpacked = _plan(tmp_path, npz_dir, "grid.toml", *slurm, pack=False)
    assert len(unpacked.task_trials) == 25 and not unpacked.packed


def test_local_lanes_split_the_work_and_share_the_cores(
    tmp_path: Path, npz_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.setattr("mnistfc.launch.local.usable_cores", lambda: 8)
    plan = _plan(tmp_path, npz_dir, "grid.toml", "executor=local")
    assert plan.resources.parallel == 4 and len(plan.tasks) == 4
    assert plan.resources.threads == 2
    assert sum(len(c) for c in plan.task_trials) == 25
    chunked = _plan(tmp_path, npz_dir, "grid.toml", "executor=local", chunk_size=10)
    assert [len(c) for c in chunked.task_trials] == [10, 10, 5]
    off = _plan(tmp_path, npz_dir, "grid.toml", "executor=local", "pack=false")
    assert off.resources.threads == 0 and off.resources.parallel == 1


def test_lanes_count_the_cores_this_process_may_use() -> None:
    """Under `taskset` or `docker --cpuset-cpus` a process may use fewer cores than exist."""
    import subprocess
    import sys

    pinned = subprocess.run(
        [sys.executable, "-c", "import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))});"
         "from mnistfc.launch.local import usable_cores; print(usable_cores(), os.cpu_count())"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert pinned[0] == "1"  # not os.cpu_count(), which is pinned[1]


def test_packing_and_signal_settings_are_validated_and_reach_sbatch() -> None:
    from mnistfc.errors import ConfigError
    from mnistfc.launch.slurm import sbatch_parameters

    with pytest.raises(ConfigError) as bad:
        load_profile(None, ['pack="yes"', "pack_mb=0", "signal_delay_s=-5"])
    for key in ("pack:", "pack_mb:", "signal_delay_s:"):
        assert key in str(bad.value)
    slurm = ["executor=slurm", "partition=p"]
    assert "signal_delay_s" not in sbatch_parameters(load_profile(None, slurm), "g", 2)
    late = load_profile(None, [*slurm, "signal_delay_s=15"])
    assert sbatch_parameters(late, "g", 2)["signal_delay_s"] == 15
