"""SLURM through submitit: one array job, one task per pack, checkpointable on preemption."""

from __future__ import annotations

import logging
import math
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnistfc.errors import ConfigError, MnistfcError
from mnistfc.launch import base
from mnistfc.launch.base import Backend, Resources, SubmissionPlan, import_submitit
from mnistfc.launch.profile import ClusterProfile
from mnistfc.launch.tasks import Task, per_pack
from mnistfc.worker import TaskRunner, TaskSpec

log = logging.getLogger(__name__)

SUBMITIT_SIGNAL_DELAY_S = 90  # submitit's default --signal=USR2@90


@dataclass(frozen=True)
class SlurmSettings:
    """The sbatch parameters (submitit's names) and the Python command the tasks run."""

    sbatch: dict[str, Any]
    python: str | None = None  # None: this interpreter; else e.g. apptainer exec ... python3


class Slurm(Backend):
    """Submit to SLURM; the jobs outlive this process, so it does not wait by default."""

    waits_by_default = False

    def problems(self, profile: ClusterProfile) -> list[str]:
        """A SLURM profile needs a partition; a task trains on one GPU at most."""
        problems = []
        if not profile.partition:
            problems.append("partition: a slurm profile needs a partition (see `sinfo -s`)")
        if isinstance(profile.gpus_per_task, int) and profile.gpus_per_task > 1:
            problems.append(
                f"gpus_per_task: {profile.gpus_per_task} is more than a task uses: each task "
                "trains its pack on one GPU; set gpus_per_task = 1 and the array spreads the "
                "packs over the GPUs"
            )
        return problems

    def resources(self, request: base.Request) -> Resources:
        """Array parallelism from the profile; the container image must exist here."""
        profile = request.profile
        parallel = request.max_parallel or profile.array_parallelism
        python = container_python(profile, list(request.binds)) if profile.container else None
        sbatch = sbatch_parameters(profile, request.spec_name, parallel)
        return Resources(parallel, settings=SlurmSettings(sbatch, python))

    def group(self, request: base.Request, work: base.Work) -> list[Task]:
        """One array task per pack (or per ``size`` trials): the widest spread."""
        return per_pack(work.reused, work.new, size=request.size, packed=request.packed,
                        pack_mb=request.profile.pack_mb)  # fmt: skip

    def check_ready(self) -> None:
        """submitit's array tasks need both sbatch and srun."""
        missing = [c for c in ("sbatch", "srun") if shutil.which(c) is None]
        if missing:
            raise ConfigError(
                "; ".join(f"{c} not found on PATH" for c in missing)
                + ": submit from a SLURM login node, or use --executor local"
            )

    def submit(
        self, plan: SubmissionPlan, tasks: list[TaskSpec], on: base.Progress | None
    ) -> list[Any]:
        """Submit one array job (``map_array``) with the plan's sbatch parameters."""
        settings: SlurmSettings = plan.resources.settings
        submitit = import_submitit()
        executor = submitit.SlurmExecutor(folder=plan.submitit_dir / "%j", python=settings.python)
        executor.update_parameters(**settings.sbatch)
        try:
            return list(executor.map_array(TaskRunner(), tasks))
        except submitit.core.utils.FailedJobError as exc:  # carries sbatch's own stderr
            raise MnistfcError(f"sbatch refused the array job: {str(exc).strip()}") from exc

    def dry_run(self, plan: SubmissionPlan) -> list[str]:
        """The sbatch parameters and the exact script submitit would submit."""
        settings: SlurmSettings = plan.resources.settings
        lines = ["sbatch parameters (submitit):"]
        lines += [f"  {k} = {v!r}" for k, v in settings.sbatch.items()]
        return [*lines, "sbatch script:", sbatch_script(plan)]

    def job_states(self, job_ids: list[str]) -> dict[str, str]:
        """Live states from squeue win; sacct (accounting) fills in finished jobs."""
        arrays = ",".join(sorted({j.split("_")[0] for j in job_ids}))
        finished = _query(["sacct", "-n", "-P", "-X", "--format=JobID,State", "-j", arrays])
        live = _query(["squeue", "-h", "-r", "-o", "%i|%T", "-j", arrays])
        states = {**finished, **live}
        return {j: states.get(j, "") for j in job_ids}


def sbatch_parameters(profile: ClusterProfile, name: str, parallel: int) -> dict[str, Any]:
    """Return submitit's SlurmExecutor parameters for a profile (sbatch names)."""
    params: dict[str, Any] = {
        "job_name": f"mnistfc-{name}",
        "partition": profile.partition,
        "time": profile.timeout_min,
        "nodes": 1,
        "ntasks_per_node": 1,
        "cpus_per_task": profile.cpus_per_task,
        "mem": f"{math.ceil(profile.mem_gb * 1024)}MB",
        "array_parallelism": parallel,
    }
    if profile.gpus_per_task:
        params["gpus_per_node"] = profile.gpus_per_task
    if profile.signal_delay_s != SUBMITIT_SIGNAL_DELAY_S:
        params["signal_delay_s"] = profile.signal_delay_s
    for key in ("account", "qos"):
        if getattr(profile, key):
            params[key] = getattr(profile, key)
    if profile.setup:
        params["setup"] = list(profile.setup)
    if profile.sbatch:
        params["additional_parameters"] = dict(profile.sbatch)
    return params


def container_python(profile: ClusterProfile, binds: list[str]) -> str:
    """Return the command that runs Python inside the profile's Apptainer image."""
    assert profile.container is not None
    image = Path(profile.container).expanduser()
    if not image.exists():
        raise ConfigError(f"container image {image} not found (see README: apptainer build)")
    mounts = ",".join(dict.fromkeys([*binds, *profile.container_binds]))
    return shlex.join(["apptainer", "exec", "--nv", "--bind", mounts, str(image), "python3"])


def sbatch_script(plan: SubmissionPlan) -> str:
    """Return the sbatch script submitit will submit for this plan (for --dry-run).

    submitit has no public call for this text; its private ``_make_sbatch_string`` is used
    here and only here, and tests/test_launch.py fails loudly if its signature changes.
    """
    settings: SlurmSettings = plan.resources.settings
    import_submitit()
    from submitit.slurm.slurm import _make_sbatch_string

    folder = plan.submitit_dir / "%j"
    python = settings.python or shlex.quote(sys.executable)
    command = " ".join([python, "-u -m submitit.core._submit", shlex.quote(str(folder))])
    script = _make_sbatch_string(
        command=command, folder=folder, map_count=len(plan.tasks), **settings.sbatch
    )
    return str(script)


def _query(command: list[str]) -> dict[str, str]:
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("%s failed (%s); job states may be incomplete", command[0], exc)
        return {}
    states = {}
    for line in out.splitlines():
        job, _, state = line.partition("|")
        if state:
            states[job.strip()] = state.split()[0]
    return states


BACKEND = Slurm()
