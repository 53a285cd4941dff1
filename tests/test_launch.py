"""The executor seam: the registry, and the one private submitit call, pinned."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
from helpers.sweeps import write_tiny_grid

from mnistfc.errors import ConfigError
from mnistfc.launch import EXECUTORS, backend, load_profile
from mnistfc.launch.base import Backend
from mnistfc.launch.slurm import sbatch_parameters, sbatch_script
from mnistfc.sweep.submit import plan_submission
from mnistfc.trial.spec import load_spec


def test_every_registered_executor_is_a_backend() -> None:
    assert EXECUTORS == ("slurm", "local", "debug")
    for name in EXECUTORS:
        assert isinstance(backend(name), Backend)
    assert backend("slurm").waits_by_default is False
    assert backend("local").waits_by_default and backend("debug").waits_by_default


def test_submitits_private_sbatch_text_still_takes_what_we_pass(
    tmp_path: Path, npz_dir: Path
) -> None:
    """--dry-run prints submitit's own script through its private _make_sbatch_string. If
    submitit renames it or its parameters, this fails here rather than in a user's dry run."""
    from submitit.slurm import slurm

    assert hasattr(slurm, "_make_sbatch_string"), "submitit removed _make_sbatch_string"
    accepted = set(inspect.signature(slurm._make_sbatch_string).parameters)
    profile = load_profile(None, ["executor=slurm", "partition=p", "account=a", "qos=q",
                                  "gpus_per_task=1", "setup=['module load x']",
                                  "sbatch.constraint='a100'", "signal_delay_s=30"])  # fmt: skip
    wanted = {"command", "folder", "map_count", *sbatch_parameters(profile, "g", 2)}
    assert wanted <= accepted, f"submitit no longer accepts {sorted(wanted - accepted)}"
    spec = load_spec(write_tiny_grid(tmp_path / "jobs"))
    plan = plan_submission(spec, profile, tmp_path / "r", data_dir=str(npz_dir))
    script = sbatch_script(plan)
    for line in ("#SBATCH --partition=p", "#SBATCH --account=a", "#SBATCH --qos=q",
                 "#SBATCH --constraint=a100", "#SBATCH --signal=USR2@30", "module load x",
                 "-m submitit.core._submit"):  # fmt: skip
        assert line in script, line


def _fake_slurm(bin_dir: Path, max_array: int, qos_submit: str) -> None:
    """scontrol, sacctmgr and squeue that answer as a site with these limits would."""
    scripts = {
        "scontrol": f"echo 'MaxArraySize            = {max_array}'",
        "sacctmgr": f"""case "$*" in
  *assoc*) echo 'physics|ann||normal,short|short' ;;
  *"qos short"*) echo '{qos_submit}|' ;;
esac""",
        "squeue": "printf '11_0\\n11_1\\n'",  # two of this user's jobs are queued already
    }
    bin_dir.mkdir(exist_ok=True)
    for name, body in scripts.items():
        (bin_dir / name).write_text("#!/bin/bash\n" + body + "\n")
        (bin_dir / name).chmod(0o755)


def test_a_sweep_is_split_into_arrays_within_max_array_size_and_fits_the_job_limit(
    tmp_path: Path, npz_dir: Path, monkeypatch
) -> None:
    """MaxArraySize 3 and a QOS allowing 7 submitted jobs, 2 of them queued already."""
    import os

    from mnistfc.launch.limits import site_limits

    _fake_slurm(tmp_path / "bin", max_array=3, qos_submit="7")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("USER", "ann")
    profile = load_profile(None, ["executor=slurm", "partition=p", "chunk=1"])
    limits = site_limits(profile)
    assert (limits.max_array_size, limits.max_jobs, limits.queued) == (3, 7, 2)
    assert "QOS short" in limits.source  # the association's default QOS
    spec = load_spec(write_tiny_grid(tmp_path / "jobs", dropouts="[0.0, 0.1, 0.2, 0.3]"))
    plan = plan_submission(spec, profile, tmp_path / "r", data_dir=str(npz_dir))
    assert len(plan.tasks) == 5 and plan.n_trials == 8  # 8 one-trial tasks merged into 5
    assert sorted(len(task.packs) for task in plan.tasks) == [1, 1, 2, 2, 2]
    lines = backend("slurm").dry_run(plan)
    assert "2 array job(s) (MaxArraySize 3; at most 7 jobs queued, 2 already are):" in lines
    assert "  #SBATCH --array=0-2%3   (tasks 0-2)" in lines
    assert "  #SBATCH --array=0-1%2   (tasks 3-4)" in lines
    assert "#SBATCH --array=0-2%3" in sbatch_script(plan)  # the first array's own script
    # The profile wins over SLURM's answers; no room left is a clear error.
    wide = load_profile(None, ["executor=slurm", "partition=p", "chunk=1",
                               "max_array_size=100", "max_jobs=100"])  # fmt: skip
    assert len(plan_submission(spec, wide, tmp_path / "r", data_dir=str(npz_dir)).tasks) == 8
    full = load_profile(None, ["executor=slurm", "partition=p", "max_jobs=2"])
    with pytest.raises(ConfigError, match="lets you have 2 jobs queued and you have 2"):
        plan_submission(spec, full, tmp_path / "r", data_dir=str(npz_dir))


def test_plan_only_prints_one_sbatch_line_per_array_with_its_chunk_offset(
    tmp_path: Path, npz_dir: Path, capsys
) -> None:
    from mnistfc.cli import main as cli

    spec = write_tiny_grid(tmp_path / "jobs", dropouts="[0.0, 0.1, 0.2, 0.3]")
    results = tmp_path / "r"
    argv = ["sweep", str(spec), "--results", str(results), "--data-dir", str(npz_dir),
            "--plan-only", "--chunk", "1", "--cluster-set", "max_array_size=3"]  # fmt: skip
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert f"sbatch --array=0-2 jobs/sweep-array.sbatch {results} 1" in out
    assert "sbatch --array=0-2 --export=ALL,MNISTFC_CHUNK_OFFSET=3 jobs/sweep-array" in out
    assert "sbatch --array=0-1 --export=ALL,MNISTFC_CHUNK_OFFSET=6 jobs/sweep-array" in out
    # chunk 7 is reached as task 1 of the third array
    assert (
        cli.main(["run-chunk", str(results), "--index", "1", "--offset", "6", "--size", "1"]) == 0
    )
    assert len(list((results / "shards").glob("*.json"))) == 1
    argv = ["run-chunk", str(results), "--index", "0", "--size", "1", "--checkpoint-min", "-1"]
    assert cli.main(argv) == 2
    assert "--checkpoint-min must be a number >= 0, got -1.0" in capsys.readouterr().err
