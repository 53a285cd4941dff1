"""The executor seam: the registry, and the one private submitit call, pinned."""

from __future__ import annotations

import inspect
from pathlib import Path

from sweeps import write_tiny_grid

from mnistfc.launch import EXECUTORS, backend
from mnistfc.launch.base import Backend
from mnistfc.launch.profile import load_profile
from mnistfc.launch.slurm import sbatch_parameters, sbatch_script
from mnistfc.spec import load_spec
from mnistfc.sweep import plan_submission


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
