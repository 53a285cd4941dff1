"""A killed sweep resumes exactly: the rerun re-uses the killed packs and their checkpoints.

The kill is deterministic: each worker holds (runtime.HOLD_ENV) after its first pack has
finished and its second has saved one epoch, and is killed while it waits.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers.sweeps import write_two_pack_grid

from mnistfc.cli import main as cli
from mnistfc.engine.runtime import HOLD_ENV
from mnistfc.folder.shards import list_shards, read_shard
from mnistfc.launch import load_profile
from mnistfc.sweep.submit import plan_submission
from mnistfc.trial.packs import Pack, Task
from mnistfc.trial.spec import load_spec


def _until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 600  # liveness only: nothing races the workload
    while not condition():
        assert time.monotonic() < deadline, f"{what} never happened"
        time.sleep(0.1)


def _shards(results: Path) -> dict[str, dict]:
    return {r["trial_id"]: r for r in map(read_shard, list_shards(results))}


def _logs(results: Path) -> str:
    return "".join(p.read_text() for p in sorted((results / "submitit").rglob("*_log.err")))


def test_a_killed_local_sweep_resumes_every_checkpoint_with_identical_numbers(
    tmp_path: Path, npz_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    spec = write_two_pack_grid(tmp_path / "jobs")
    args = ["--data-dir", str(npz_dir), "--executor", "local", "--max-parallel", "2"]
    plan = plan_submission(load_spec(spec), load_profile(None), tmp_path / "x",
                           data_dir=str(npz_dir), max_parallel=2)  # fmt: skip
    assert [len(task.packs) for task in plan.tasks] == [2, 2]  # two lanes of two packs each

    reference = tmp_path / "uninterrupted"
    assert cli.main(["sweep", str(spec), "--results", str(reference), *args]) == 0

    results = tmp_path / "results"
    hold = tmp_path / "hold"
    hold.write_text("3")  # each lane: pack 1 saves epochs 1 and 2 and ends; pack 2 holds
    env = {**os.environ, HOLD_ENV: str(hold), "TF_CPP_MIN_LOG_LEVEL": "3"}
    # A SIGKILL gives no warning: only a save by time survives it; here every epoch's.
    every_epoch = ["--cluster-set", "checkpoint_min=0"]
    sweep = subprocess.Popen(
        [sys.executable, "-m", "mnistfc", "sweep", str(spec), "--results", str(results), *args,
         *every_epoch],
        env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    checkpoints = results / "checkpoints"
    _until(lambda: len(list_shards(results)) == 4 and len(list(checkpoints.glob("*.npz"))) == 2,
           "both lanes holding in their second pack")  # fmt: skip
    _until(lambda: len(list((results / "running").glob("*.json"))) == 2, "two heartbeats")
    capsys.readouterr()
    assert cli.main(["status", str(results)]) == 0  # mid-run: epochs and ETA, not just shards
    status = capsys.readouterr().out
    assert "4 missing (4 running, 0 queued, 0 not running)" in status
    assert status.count("running pack ") == 2 and status.count(": epoch 1/2 (2 trials, ") == 2
    assert "12/16 trial-epochs done (75%), ETA " in status
    os.killpg(sweep.pid, signal.SIGKILL)  # the sweep and both workers, mid-pack
    sweep.wait()
    hold.unlink()
    capsys.readouterr()

    assert cli.main(["sweep", str(spec), "--results", str(results), *args]) == 0
    out = capsys.readouterr().out
    assert "4 already have a shard, 4 to run" in out and "2 resumed whole" in out
    assert _logs(results).count("pack resumed after epoch 1, step 0") == 2
    assert not list(checkpoints.glob("*.npz"))
    got, want = _shards(results), _shards(reference)
    assert set(got) == set(want) and len(got) == 8
    for trial_id, expected in want.items():
        assert [h["val_loss"] for h in got[trial_id]["history"]] == pytest.approx(
            [h["val_loss"] for h in expected["history"]], rel=1e-5
        )
        assert got[trial_id]["metrics"]["test"] == pytest.approx(
            expected["metrics"]["test"], rel=1e-5
        )


def test_a_rerun_keeps_only_packs_whose_trials_are_all_unfinished(tmp_path: Path) -> None:
    from mnistfc.launch.tasks import reusable_packs
    from mnistfc.trial.search import expand

    trials = expand(load_spec(write_two_pack_grid(tmp_path / "jobs")))
    ids = [t.trial_id for t in trials]
    recorded = [Pack(tuple(trials[:4])), Pack(tuple(trials[4:6])), Pack(tuple(trials[6:]))]
    todo = [t for t in trials if t.trial_id != ids[5]]  # ids[5] finished: its pack is broken
    reused, new = reusable_packs(todo, recorded)
    assert [p.trial_ids for p in reused] == [tuple(ids[:4]), tuple(ids[6:])]
    assert [t.trial_id for t in new] == [ids[4]]


def test_only_packed_submissions_record_packs_to_resume(tmp_path: Path) -> None:
    from mnistfc.folder.plan import Submission, load_plan, record_submission, save_plan
    from mnistfc.trial.search import expand

    spec = load_spec(write_two_pack_grid(tmp_path / "jobs"))
    trials = expand(spec)
    save_plan(tmp_path / "r", spec, trials, None)
    one_each = tuple(Task((Pack((t,)),)) for t in trials)
    record_submission(tmp_path / "r", Submission("local", one_each, False))
    assert load_plan(tmp_path / "r").recorded_packs() == []  # Keras trials save no checkpoint
    two = Task((Pack(tuple(trials[:4])), Pack(tuple(trials[4:]))))
    record_submission(tmp_path / "r", Submission("local", (two,), True))
    assert load_plan(tmp_path / "r").recorded_packs() == list(two.packs)  # read back equal


@pytest.mark.parametrize(
    ("tasks", "problem"),
    [
        ([[["0123456789ab"]]], "KeyError: '0123456789ab'"),
        ([[[]]], "at least one"),
        ([None], "a task must be a list"),
    ],  # fmt: skip
    ids=["unknown trial", "empty pack", "not a list"],
)
def test_a_recorded_task_that_is_not_the_plans_is_a_corrupt_plan(
    tmp_path: Path, tasks: object, problem: str
) -> None:
    """A task in sweep.json naming a trial the plan lacks, an empty pack or no list at all:
    one ConfigError naming the file, never a half-read plan."""
    import json

    from mnistfc.errors import ConfigError
    from mnistfc.folder.plan import Submission, load_plan, plan_path, record_submission, save_plan
    from mnistfc.trial.search import expand

    spec = load_spec(write_two_pack_grid(tmp_path / "jobs"))
    trials = expand(spec)
    save_plan(tmp_path / "r", spec, trials, None)
    record_submission(tmp_path / "r", Submission("local", (Task((Pack(tuple(trials)),)),), True))
    path = plan_path(tmp_path / "r")
    data = json.loads(path.read_text())
    data["submissions"][0]["tasks"] = tasks
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=f"{path}: corrupt sweep plan .*{problem}"):
        load_plan(tmp_path / "r")
