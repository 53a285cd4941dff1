"""SLURM through submitit: array jobs within the site's limits, one task per pack (or per
chunk), checkpointable on preemption; one-off jobs with dependencies for a study."""

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

from mnistfc.errors import ConfigError, MnistfcError, SubmitFailed
from mnistfc.launch import base, container
from mnistfc.launch.base import Backend, JobStates, Resources, SubmissionPlan, import_submitit
from mnistfc.launch.limits import SLURM_DEFAULT_MAX_ARRAY_SIZE, SiteLimits, site_limits
from mnistfc.launch.profile import ClusterProfile
from mnistfc.launch.tasks import per_pack
from mnistfc.launch.worker import TaskRunner, TaskSpec
from mnistfc.provenance import IMAGE_DIGEST_ENV, image_digest
from mnistfc.trial.packs import Task

log = logging.getLogger(__name__)

SUBMITIT_SIGNAL_DELAY_S = 90  # submitit's default --signal=USR2@90


@dataclass(frozen=True)
class SlurmSettings:
    """The sbatch parameters (submitit's names), the Python command the tasks run, and the
    site's limits the tasks must fit."""

    sbatch: dict[str, Any]
    python: str | None = None  # None: this interpreter; else the image's (launch/container)
    limits: SiteLimits = SiteLimits(SLURM_DEFAULT_MAX_ARRAY_SIZE, None)

    def arrays(self, n_tasks: int) -> list[range]:
        """Return the task indices of each array job: at most MaxArraySize tasks each."""
        size = self.limits.max_array_size
        return [range(i, min(i + size, n_tasks)) for i in range(0, n_tasks, size)]


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
        python = container.python_command(profile, request.binds) if profile.container else None
        sbatch = sbatch_parameters(profile, request.spec_name, parallel)
        limits = site_limits(profile)
        return Resources(parallel, settings=SlurmSettings(sbatch, python, limits),
                         note=f"per array ({limits.source})")  # fmt: skip

    def group(self, request: base.Request, work: base.Work) -> list[Task]:
        """One array task per pack (or per ``size`` trials), merged further when the site
        allows this user fewer jobs than that."""
        tasks = per_pack(work.reused, work.new, size=request.size, packed=request.packed,
                         pack_mb=request.profile.pack_mb)  # fmt: skip
        limits: SiteLimits = work.settings.limits
        free = limits.free_jobs
        if free is None or len(tasks) <= free:
            return tasks
        if free == 0:
            raise ConfigError(
                f"the site lets you have {limits.max_jobs} jobs queued and you have "
                f"{limits.queued}: wait for some to end (squeue -u $USER), or set max_jobs "
                "in the profile if the limit read is wrong"
            )
        log.info("%d tasks merged into %d: the job limit (%s)", len(tasks), free, limits.source)
        # Packs stay as planned: a task just runs several, one after another.
        return [Task(tuple(p for task in tasks[k::free] for p in task.packs)) for k in range(free)]

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
        """Submit the tasks as array jobs (``map_array``), each within MaxArraySize.

        If sbatch refuses a later array, the arrays already submitted stay (their job ids
        are in the message) and the same sweep command submits the rest once fixed.
        """
        settings: SlurmSettings = plan.resources.settings
        submitit = import_submitit()
        executor = submitit.SlurmExecutor(folder=plan.submitit_dir / "%j", python=settings.python)
        executor.update_parameters(**settings.sbatch)
        jobs: list[Any] = []
        arrays = settings.arrays(len(tasks))
        for number, indices in enumerate(arrays, 1):
            try:
                jobs += executor.map_array(TaskRunner(), [tasks[i] for i in indices])
            except submitit.core.utils.FailedJobError as exc:  # carries sbatch's own stderr
                done = f" (arrays submitted before it: {_array_ids(jobs)})" if jobs else ""
                raise SubmitFailed(
                    f"sbatch refused array job {number} of {len(arrays)}{done}: {str(exc).strip()}",
                    jobs,
                ) from exc
        return jobs

    def submit_call(
        self,
        folder: Path,
        name: str,
        profile: ClusterProfile,
        binds: tuple[str, ...],
        call: Any,
        *args: Any,
        after: tuple[str, ...] | list[str] = (),
    ) -> Any:
        """One sbatch job running ``call(*args)``, after ``after`` (``afterany``) if given."""
        submitit = import_submitit()
        python = container.python_command(profile, binds) if profile.container else None
        executor = submitit.SlurmExecutor(folder=folder / "%j", python=python)
        params = sbatch_parameters(profile, name, 1)
        params.pop("array_parallelism")
        params["job_name"] = name
        if after:
            extra = dict(params.get("additional_parameters", {}))
            extra["dependency"] = "afterany:" + ":".join(after)
            params["additional_parameters"] = extra
        executor.update_parameters(**params)
        try:
            return executor.submit(call, *args)
        except submitit.core.utils.FailedJobError as exc:
            raise MnistfcError(f"sbatch refused job {name}: {str(exc).strip()}") from exc

    def dry_run(self, plan: SubmissionPlan) -> list[str]:
        """The sbatch parameters and the exact script submitit would submit."""
        settings: SlurmSettings = plan.resources.settings
        lines = ["sbatch parameters (submitit):"]
        lines += [f"  {k} = {v!r}" for k, v in settings.sbatch.items()]
        arrays = settings.arrays(len(plan.tasks))
        limits = settings.limits
        jobs = "no job limit known" if limits.max_jobs is None else (
            f"at most {limits.max_jobs} jobs queued, {limits.queued} already are")  # fmt: skip
        lines.append(f"{len(arrays)} array job(s) (MaxArraySize {limits.max_array_size}; {jobs}):")
        parallel = settings.sbatch["array_parallelism"]
        lines += [f"  #SBATCH --array=0-{len(r) - 1}%{min(parallel, len(r))}   (tasks "
                  f"{r.start}-{r.stop - 1})" for r in arrays]  # fmt: skip
        return [*lines, "sbatch script (the first array):", sbatch_script(plan)]

    def job_states(self, job_ids: list[str]) -> JobStates:
        """Live states from squeue win; sacct (accounting) fills in finished jobs.

        A job neither lists is one that ended long ago ("") when sacct answered, and
        ``UNKNOWN`` when it did not (slurmdbd down, a host without accounting): then
        nobody can tell whether it still runs, and status must not say it does not.
        """
        arrays = ",".join(sorted({j.split("_")[0] for j in job_ids}))
        finished, acct_problem = _query(
            ["sacct", "-n", "-P", "-X", "--format=JobID,State", "-j", arrays]
        )
        live, queue_problem = _query(["squeue", "-h", "-r", "-o", "%i|%T", "-j", arrays])
        states = {**finished, **live}
        missing = base.UNKNOWN if acct_problem else ""
        problems = "; ".join(p for p in (queue_problem, acct_problem) if p)
        return JobStates({j: states.get(j, missing) for j in job_ids}, problems)


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
    if profile.container:  # hashed once here, not in every task: shards record it
        digest = image_digest(Path(profile.container).expanduser())
        lines = [f"export {IMAGE_DIGEST_ENV}={digest}", *container.setup_lines(profile)]
        params["setup"] = [*lines, *params.get("setup", [])]
    if profile.sbatch:
        params["additional_parameters"] = dict(profile.sbatch)
    return params


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
    first = settings.arrays(len(plan.tasks))[:1]
    script = _make_sbatch_string(
        command=command, folder=folder, map_count=len(first[0]) if first else 0, **settings.sbatch
    )
    return str(script)


def _array_ids(jobs: list[Any]) -> str:
    return ", ".join(dict.fromkeys(str(j.job_id).split("_")[0] for j in jobs))


def _query(command: list[str]) -> tuple[dict[str, str], str]:
    """Return job -> state from squeue or sacct, and what went wrong ("" if it answered)."""
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True).stdout
    except subprocess.CalledProcessError as exc:
        last = (exc.stderr or "").strip().splitlines()[-1:] or [f"exit {exc.returncode}"]
        return {}, f"{command[0]}: {last[0]}"
    except (OSError, subprocess.SubprocessError) as exc:
        return {}, f"{command[0]}: {exc}"
    states = {}
    for line in out.splitlines():
        job, _, state = line.partition("|")
        if state:
            states[job.strip()] = state.split()[0]
    return states, ""


BACKEND = Slurm()
