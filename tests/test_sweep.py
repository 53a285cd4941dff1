"""Sweeps end to end through submitit's debug (in-process) and local (subprocess) executors."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from helpers.sweeps import write_tiny_grid

from mnistfc.cli import main as cli
from mnistfc.folder.shards import list_shards, read_shard
from mnistfc.launch import load_profile
from mnistfc.launch.slurm import sbatch_script
from mnistfc.sweep.submit import plan_submission
from mnistfc.trial.spec import load_spec


@pytest.fixture
def tiny(tmp_path: Path, npz_dir: Path) -> tuple[Path, Path]:
    return write_tiny_grid(tmp_path / "jobs"), npz_dir


def sweep(spec: Path, results: Path, data: Path, *extra: str) -> int:
    return cli.main(
        ["sweep", str(spec), "--results", str(results), "--data-dir", str(data), *extra]
    )


@pytest.mark.parametrize("executor", ["debug", "local"])
def test_sweep_runs_every_trial_once_and_resumes(
    tiny, tmp_path: Path, executor: str, capsys
) -> None:
    spec, data = tiny
    results = tmp_path / "results"
    assert sweep(spec, results, data, "--executor", executor, "--chunk", "3") == 0
    out = capsys.readouterr().out
    assert "4 trials, 0 already have a shard, 4 to run" in out
    assert "2 task(s) of 1-3 trial(s)" in out
    shards = [read_shard(p) for p in list_shards(results)]
    assert len(shards) == 4 and {s["status"] for s in shards} == {"completed"}
    assert {(s["config"]["units"], s["config"]["dropout"]) for s in shards} == {
        (8, 0.0), (8, 0.5), (16, 0.0), (16, 0.5)
    }  # fmt: skip
    assert all(s["sweep"]["name"] == "tiny" for s in shards)
    plan = json.loads((results / "sweep.json").read_text())
    assert len(plan["trials"]) == 4 and len(plan["submissions"]) == 1
    assert len(plan["submissions"][0]["job_ids"]) == 2
    if executor == "local":  # the lanes' timing lines, as benchmarks/lanes.py reads them
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
        import lanes

        found = lanes.lanes(results / "submitit")
        assert len(found) == 2 and all(lane["epochs"] > 0 and lane["task"] > 0 for lane in found)
        assert all(lane["packs"] >= lane["build"] + lane["epochs"] for lane in found)
    mtimes = {p: p.stat().st_mtime_ns for p in list_shards(results)}
    # a second call submits nothing and touches no shard
    assert sweep(spec, results, data, "--executor", executor) == 0
    assert "nothing to submit" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in list_shards(results)} == mtimes
    assert len(json.loads((results / "sweep.json").read_text())["submissions"]) == 1


def test_a_failing_trial_leaves_a_failed_shard_that_status_reports(
    tmp_path: Path, npz_dir: Path, capsys
) -> None:
    # valid_size 500 does not fit the 128 generated test images: those trials raise in the job
    spec = write_tiny_grid(tmp_path / "jobs", dropouts="[0.0]", valid_sizes="[28, 500]")
    results = tmp_path / "results"
    assert sweep(spec, results, npz_dir, "--executor", "debug", "--chunk", "4") == 1
    out = capsys.readouterr().out
    assert "2 completed, 0 diverged, 2 failed" in out
    assert "DataError: valid_size=500 does not fit the 128 test images" in out
    failed = [read_shard(p) for p in list_shards(results) if read_shard(p)["status"] == "failed"]
    assert len(failed) == 2 and all("Traceback" in s["error"] for s in failed)
    assert out.count("failed ") >= 2
    assert cli.main(["status", str(results)]) == 1
    status = capsys.readouterr().out
    assert status.count("  failed ") == 2 and "2 completed, 0 diverged, 2 failed" in status
    # failed trials are not retried by default, and are with --rerun-failed
    assert sweep(spec, results, npz_dir, "--executor", "debug") == 0
    assert "nothing to submit" in capsys.readouterr().out
    sweep(spec, results, npz_dir, "--executor", "debug", "--rerun-failed")
    assert "2 already have a shard, 2 to run" in capsys.readouterr().out


def test_missing_trials_are_rerun_and_finished_ones_kept(tiny, tmp_path: Path, capsys) -> None:
    spec, data = tiny
    results = tmp_path / "results"
    assert sweep(spec, results, data, "--executor", "debug") == 0
    victim, *kept = list_shards(results)
    kept_bytes = {p: p.read_bytes() for p in kept}
    victim.unlink()
    (results / "shards" / f".{victim.name}.123.tmp").write_text("{half a shard")
    assert cli.main(["status", str(results)]) == 1
    assert "1 missing (0 running, 0 queued, 1 not running)" in capsys.readouterr().out
    assert sweep(spec, results, data, "--executor", "debug") == 0
    assert "3 already have a shard, 1 to run" in capsys.readouterr().out
    assert victim.exists() and {p: p.read_bytes() for p in kept} == kept_bytes


def test_dry_run_prints_trials_and_the_exact_sbatch_script(tiny, tmp_path: Path, capsys) -> None:
    spec, data = tiny
    profile = Path(__file__).resolve().parents[1] / "jobs" / "clusters" / "slurm-gpu.toml"
    extra = ["--cluster-set", "account=proj1", "--cluster-set", "sbatch.constraint=a100"]
    code = sweep(
        spec, tmp_path / "r", data, "--cluster", str(profile), "--chunk", "2", "--dry-run", *extra
    )
    out = capsys.readouterr().out
    assert code == 0
    for line in (
        "#SBATCH --partition=gpu",
        "#SBATCH --gpus-per-node=1",
        "#SBATCH --cpus-per-task=4",
        "#SBATCH --mem=16384MB",
        "#SBATCH --time=120",
        "#SBATCH --account=proj1",
        "#SBATCH --constraint=a100",
        "#SBATCH --array=0-1%2",
        "#SBATCH --job-name=mnistfc-tiny",
    ):
        assert line in out, line
    assert "task 1: " in out and "units=16" in out
    assert "dry run: nothing submitted" in out
    assert not (tmp_path / "r").exists()


def test_container_profile_runs_python_inside_apptainer(tiny, tmp_path: Path) -> None:
    spec, data = tiny
    image = tmp_path / "mnistfc.sif"
    image.write_bytes(b"sif")
    profile = load_profile(None, ["executor=slurm", "partition=gpu", f"container='{image}'",
                                  "container_binds=['/scratch']"])  # fmt: skip
    plan = plan_submission(load_spec(spec), profile, tmp_path / "r", data_dir=str(data))
    assert plan.resources.settings.python == (
        f"apptainer exec --nv --bind {tmp_path / 'r'},{data},/scratch {image} python3"
    )
    assert f"srun --unbuffered --output {tmp_path / 'r'}" in sbatch_script(plan)
    assert f"{image} python3 -u -m submitit.core._submit" in sbatch_script(plan)
    digest = "sha256:6d27641e2684684537fb3f401639558228855c1d5721fd1b4b29fd70e8cffd1e"
    assert f"export MNISTFC_IMAGE_DIGEST={digest}" in sbatch_script(plan)  # shards record it
    missing = load_profile(None, ["executor=slurm", "partition=gpu", "container='/nope.sif'"])
    with pytest.raises(Exception, match="container image /nope.sif not found"):
        plan_submission(load_spec(spec), missing, tmp_path / "r", data_dir=str(data))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("grid.units=[0]", "units: must be a positive integer"),
        ("grid.dropout=[1.0]", "dropout: must be in [0, 1)"),
        ("grid.dropout=[]", "must be a non-empty list"),
        ("grid.activation=['relux']", "'relux' is not one of"),
        ("base.learning_rate=0.0", "learning_rate: must be a finite number > 0"),
        ("base.batch_size='32'", "batch_size: expected int"),
        ("base.epochs=-1", "epochs: must be a positive integer"),
        ("grid.colour=['red']", "unknown setting"),
        ("typo=1", "unknown key(s) ['typo']"),
    ],
)
def test_bad_specs_exit_2_and_queue_nothing(
    tiny, tmp_path: Path, override: str, message: str, capsys
) -> None:
    spec, data = tiny
    assert sweep(spec, tmp_path / "r", data, "--executor", "debug", "--set", override) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()


def test_slurm_input_errors(tiny, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    spec, data = tiny
    assert sweep(spec, tmp_path / "r", data, "--executor", "slurm") == 2
    assert "a slurm profile needs a partition" in capsys.readouterr().err
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    assert (
        sweep(spec, tmp_path / "r", data, "--executor", "slurm", "--cluster-set", "partition=x")
        == 2
    )
    assert "sbatch not found on PATH" in capsys.readouterr().err
    # sbatch alone is not enough: submitit's tasks start with srun
    (tmp_path / "sbatch-only").mkdir()
    (tmp_path / "sbatch-only" / "sbatch").write_text("#!/bin/sh\nexit 1\n")
    (tmp_path / "sbatch-only" / "sbatch").chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path / "sbatch-only"))
    assert (
        sweep(spec, tmp_path / "r", data, "--executor", "slurm", "--cluster-set", "partition=x")
        == 2
    )
    err = capsys.readouterr().err
    assert "srun not found on PATH" in err and "Traceback" not in err
    assert not (tmp_path / "r" / "sweep.json").exists()


def test_random_budget_larger_than_pool_is_refused(tmp_path: Path, npz_dir: Path, capsys) -> None:
    random = Path(__file__).resolve().parents[1] / "jobs" / "random.toml"
    assert sweep(random, tmp_path / "r", npz_dir, "--set", "pool_size=100", "--dry-run") == 2
    assert "budget 200 is larger than the pool (100 trials)" in capsys.readouterr().err


def test_a_results_dir_of_another_sweep_is_refused(tiny, tmp_path: Path, capsys) -> None:
    spec, data = tiny
    assert sweep(spec, tmp_path / "r", data, "--executor", "debug") == 0
    assert sweep(spec, tmp_path / "r", data, "--executor", "debug", "--set", "base.epochs=2") == 2
    assert "holds sweep 'tiny'" in capsys.readouterr().err


def test_status_of_a_folder_without_a_plan(tmp_path: Path, capsys) -> None:
    assert cli.main(["status", str(tmp_path)]) == 2
    assert "is not a sweep results folder" in capsys.readouterr().err


def test_gpus_are_found_without_tensorflow(monkeypatch: pytest.MonkeyPatch) -> None:
    from mnistfc.launch.local import visible_gpus

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    assert visible_gpus() == ("0", "1")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert visible_gpus() == ()
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    monkeypatch.setenv("PATH", os.devnull)
    assert visible_gpus() == ()


def test_gpu_uuids_and_mig_ids_are_lanes_like_indices(monkeypatch: pytest.MonkeyPatch) -> None:
    """SLURM and MIG hand out UUIDs; CUDA's list ends at the first empty or negative entry."""
    from mnistfc.launch.local import parse_nvidia_smi, visible_gpus

    uuid = "GPU-5f1c8a2e-9b1d-4c1e-8f3a-0d2b6c7e9a11"
    mig = "MIG-2b7e1c3d-4a5f-5b6c-9d8e-7f6a5b4c3d2e"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", f"{uuid}, {mig}")
    assert visible_gpus() == (uuid, mig)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,-1,0")
    assert visible_gpus() == ("1",)
    listing = (
        "GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-aaa)\n"
        "  MIG 3g.20gb     Device  0: (UUID: MIG-111)\n"
        "  MIG 3g.20gb     Device  1: (UUID: MIG-222)\n"
        "GPU 1: NVIDIA A100-SXM4-40GB (UUID: GPU-bbb)\n"
    )
    assert parse_nvidia_smi(listing) == ("MIG-111", "MIG-222", "1")


def test_a_slurm_task_with_several_gpus_is_refused_with_the_fix() -> None:
    from mnistfc.errors import ConfigError

    with pytest.raises(ConfigError, match="gpus_per_task: 2 is more than a task uses.*= 1"):
        load_profile(None, ["executor=slurm", "partition=gpu", "gpus_per_task=2"])


def test_local_executor_gives_each_concurrent_task_one_gpu(
    tiny, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """Two GPUs: two lanes, and each task's process sees only its own GPU."""
    spec, data = tiny
    gpus = "GPU-0aa,GPU-1bb"  # UUIDs, as SLURM may set them; no CUDA here: tasks run on CPU
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", gpus)
    results = tmp_path / "r"
    assert sweep(spec, results, data, "--executor", "local") == 0
    out = capsys.readouterr().out
    assert f"2 task(s) of 2-2 trial(s), at most 2 at once on GPUs {gpus}" in out
    seen = [read_shard(p)["env"]["cuda_visible_devices"] for p in list_shards(results)]
    assert sorted(seen) == ["GPU-0aa", "GPU-0aa", "GPU-1bb", "GPU-1bb"]


def test_plan_only_and_run_chunk_serve_plain_sbatch_arrays(tiny, tmp_path: Path, capsys) -> None:
    spec, data = tiny
    results = tmp_path / "r"
    assert sweep(spec, results, data, "--plan-only", "--chunk", "3") == 0
    assert f"sbatch --array=0-1 jobs/sweep-array.sbatch {results} 3" in capsys.readouterr().out
    assert list_shards(results) == []
    assert cli.main(["run-chunk", str(results), "--index", "1", "--size", "3"]) == 0
    assert len(list_shards(results)) == 1  # chunk 1 of 4 trials in threes holds the 4th
    assert cli.main(["run-chunk", str(results), "--index", "0", "--size", "3"]) == 0
    assert cli.main(["run-chunk", str(results), "--index", "0", "--size", "3"]) == 0
    out = capsys.readouterr().out
    assert out.count(": skipped") == 3


def test_plan_only_names_one_stable_chunk_size_and_run_chunk_checks_it(
    tiny, tmp_path: Path, capsys
) -> None:
    """The printed size depends on the call, not on which trials happen to be finished."""
    spec, data = tiny
    results = tmp_path / "r"
    assert sweep(spec, results, data, "--plan-only") == 0
    first = capsys.readouterr().out
    assert f"sbatch --array=0-3 jobs/sweep-array.sbatch {results} 1" in first
    assert cli.main(["run-chunk", str(results), "--index", "0", "--size", "1"]) == 0
    assert sweep(spec, results, data, "--plan-only") == 0
    assert f"sbatch --array=0-3 jobs/sweep-array.sbatch {results} 1" in capsys.readouterr().out
    for bad in (["--index", "0", "--size", "0"], ["--index", "4", "--size", "1"]):
        assert cli.main(["run-chunk", str(results), *bad]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("mnistfc: error:"), err
    assert cli.main(["run-chunk", str(results), "--index", "2", "--size", "3"]) == 2
    assert "chunk index 2 out of range" in capsys.readouterr().err


def test_a_folder_never_mixes_the_packed_and_the_keras_engine(tiny, tmp_path: Path, capsys) -> None:
    spec, data = tiny
    results = tmp_path / "r"
    assert sweep(spec, results, data, "--executor", "debug") == 0
    assert json.loads((results / "sweep.json").read_text())["engine"] == "packed"
    capsys.readouterr()
    assert sweep(spec, results, data, "--executor", "debug", "--no-pack") == 2
    err = capsys.readouterr().err
    assert "holds trials of the packed engine" in err and "use another --results folder" in err
    assert err.count("\n") == 1
    assert cli.main(["run-chunk", str(results), "--index", "0", "--size", "1", "--no-pack"]) == 2
    assert "holds trials of the packed engine" in capsys.readouterr().err
    # The packed engine may go on; an empty folder may switch.
    assert sweep(spec, results, data, "--executor", "debug") == 0
    assert sweep(spec, tmp_path / "k", data, "--executor", "debug", "--no-pack", "--dry-run") == 0


def test_arrays_accepted_before_sbatch_refused_one_are_recorded(
    tiny, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """sbatch takes the first array and refuses the second: the first's jobs stay followed."""
    from types import SimpleNamespace

    from mnistfc.errors import SubmitFailed
    from mnistfc.launch import backend

    spec, data = tiny
    slurm = backend("slurm")

    def refuse_second(plan, tasks, on):
        accepted = [SimpleNamespace(job_id=f"5_{i}") for i in range(2)]
        raise SubmitFailed("sbatch refused array job 2 of 2: QOSMaxSubmitJobPerUserLimit", accepted)

    monkeypatch.setattr(slurm, "submit", refuse_second)
    monkeypatch.setattr(slurm, "check_ready", lambda: None)
    results = tmp_path / "r"
    argv = ["--executor", "slurm", "--chunk", "1", "--cluster-set", "partition='p'",
            "--cluster-set", "max_array_size=2", "--cluster-set", "max_jobs=10"]  # fmt: skip
    assert sweep(spec, results, data, *argv) == 1
    assert "sbatch refused array job 2 of 2" in capsys.readouterr().err
    recorded = json.loads((results / "sweep.json").read_text())["submissions"]
    assert len(recorded) == 1 and recorded[0]["job_ids"] == ["5_0", "5_1"]
    assert len(recorded[0]["tasks"]) == 2  # the first array's two tasks, not all four


@pytest.mark.parametrize("packed", [True, False])
def test_sweeps_skip_the_per_epoch_train_pass_unless_the_spec_asks(
    tiny, tmp_path: Path, packed: bool
) -> None:
    spec, data = tiny
    engine = [] if packed else ["--no-pack"]
    off, on = tmp_path / "off", tmp_path / "on"
    assert sweep(spec, off, data, "--executor", "debug", *engine) == 0
    assert sweep(spec, on, data, "--executor", "debug", *engine,
                 "--set", "epoch_train_metrics=true") == 0  # fmt: skip
    for shard in map(read_shard, list_shards(off)):  # the exercise's sweeps: no CalculateMetrics
        assert [h["train_acc"] for h in shard["history"]] == [None]
        assert shard["metrics"]["train"]["accuracy"] > 0  # the restored model's, always
    for shard in map(read_shard, list_shards(on)):
        assert all(0 < h["train_acc"] <= 1 and h["train_loss"] > 0 for h in shard["history"])
    # the same trials either way: the setting is not a hyperparameter
    assert {p.name for p in list_shards(off)} == {p.name for p in list_shards(on)}
    assert load_spec(spec).spec_hash != load_spec(spec, ["epoch_train_metrics=true"]).spec_hash
    assert sweep(spec, off, data, "--executor", "debug", "--set", "epoch_train_metrics=1") == 2
