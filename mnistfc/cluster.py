"""Submit a sweep's unfinished trials through submitit: one SLURM array, local processes, or debug.

The seam is thin on purpose: everything is decided and validated in ``plan_submission`` on
the submitting host (nothing queued yet), and ``submit`` only hands chunks to an executor.
"""

from __future__ import annotations

import logging
import math
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnistfc.data import locate
from mnistfc.errors import ConfigError, MnistfcError
from mnistfc.pack import balance, pack_key, plan_packs, trial_cost
from mnistfc.search import PlannedTrial, chunk, expand
from mnistfc.spec import ClusterProfile, SweepSpec
from mnistfc.sweep import pending, read_plan, read_states, record_submission, save_plan
from mnistfc.worker import ChunkRunner, ChunkTask, run_chunk

log = logging.getLogger(__name__)

SUBMITIT_DIR = "submitit"


@dataclass(frozen=True)
class SubmissionPlan:
    """What a sweep call will do: every decision made, nothing submitted yet."""

    spec: SweepSpec
    profile: ClusterProfile
    results_dir: Path
    data_dir: str
    total: int
    skipped: int
    chunks: list[list[PlannedTrial]]
    max_parallel: int
    gpus: tuple[str, ...]
    sbatch: dict[str, Any]
    python: str | None
    pack: bool = False
    pack_mb: float = 1024.0
    threads: int = 0

    @property
    def n_trials(self) -> int:
        """Return how many trials this submission runs."""
        return sum(len(c) for c in self.chunks)


def plan_submission(
    spec: SweepSpec,
    profile: ClusterProfile,
    results_dir: str | os.PathLike[str],
    *,
    data_dir: str | None = None,
    chunk_size: int | None = None,
    max_parallel: int | None = None,
    rerun_failed: bool = False,
    pack: bool | None = None,
) -> SubmissionPlan:
    """Expand the spec, skip finished trials, chunk the rest and check the executor can run.

    Raises:
        ConfigError: container image missing, bad chunk or parallelism.
        DataError: the dataset is not where the jobs would look.
    """
    if chunk_size is not None and chunk_size < 1:
        raise ConfigError(f"--chunk must be >= 1, got {chunk_size}")
    if max_parallel is not None and max_parallel < 1:
        raise ConfigError(f"--max-parallel must be >= 1, got {max_parallel}")
    results = Path(results_dir).resolve()
    trials = expand(spec)
    todo = pending(trials, read_states(results), rerun_failed)
    # Resolve the data on this host: jobs get an absolute folder that is known to hold it.
    data_folder = str(locate(spec.base.dataset, data_dir)[0].parent.resolve())
    for name in {t.config.dataset for t in trials} - {spec.base.dataset}:
        locate(name, data_dir)
    pack = profile.pack if pack is None else pack
    gpus = visible_gpus() if profile.executor == "local" else ()
    parallel = max_parallel or (profile.array_parallelism if profile.executor == "slurm" else 0)
    parallel = parallel or profile.max_parallel or _default_lanes(profile, gpus, pack)
    python = None
    sbatch: dict[str, Any] = {}
    if profile.executor == "slurm":
        sbatch = sbatch_parameters(profile, spec.name, parallel)
        if profile.container:
            python = container_python(profile, [str(results), data_folder])
    return SubmissionPlan(
        spec=spec,
        profile=profile,
        results_dir=results,
        data_dir=data_folder,
        total=len(trials),
        skipped=len(trials) - len(todo),
        chunks=_chunks(profile, todo, chunk_size or profile.chunk, parallel, pack),
        max_parallel=parallel,
        gpus=gpus,
        sbatch=sbatch,
        python=python,
        pack=pack,
        pack_mb=float(profile.pack_mb),
        threads=_lane_threads(profile, gpus, pack, parallel),
    )


def _chunks(
    profile: ClusterProfile, todo: list[PlannedTrial], size: int, parallel: int, pack: bool
) -> list[list[PlannedTrial]]:
    if not pack:
        return chunk(todo, size or _auto_chunk(profile, len(todo), parallel))
    # Trials that can share a step sit in the same task: by pack key, then plan order.
    ordered = sorted(todo, key=lambda t: pack_key(t.config))
    if size:
        return chunk(ordered, size)
    if profile.executor == "slurm":  # one array task per pack
        return plan_packs(ordered, profile.pack_mb, lambda t: t.config)
    # Local lanes: about equal compute each; every lane packs its own share.
    return balance(ordered, parallel, lambda t: trial_cost(t.config))


def _default_lanes(profile: ClusterProfile, gpus: tuple[str, ...], pack: bool) -> int:
    # One lane per GPU; on CPUs, packed lanes of single-threaded steps use the cores best
    # (measured: benchmarks/bench_grid.py), unpacked Keras runs one lane with all cores.
    if gpus:
        return len(gpus)
    if pack and profile.executor == "local":
        return max(1, min(usable_cores(), 4))
    return 1


def _lane_threads(profile: ClusterProfile, gpus: tuple[str, ...], pack: bool, parallel: int) -> int:
    if not pack or gpus or profile.executor != "local":
        return 0
    return max(1, usable_cores() // parallel)


def usable_cores() -> int:
    """Return the cores this process may run on (affinity: `docker --cpuset-cpus`, taskset)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not every platform has affinity
        return os.cpu_count() or 1


def _auto_chunk(profile: ClusterProfile, n_trials: int, parallel: int) -> int:
    # SLURM: one trial per array task spreads widest. Locally every task pays for importing
    # TensorFlow and loading the data, so give each concurrent lane one task.
    if profile.executor == "slurm":
        return 1
    return max(1, math.ceil(n_trials / parallel))


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
    if profile.signal_delay_s != 90:  # submitit's default: --signal=USR2@90
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
    """Return the sbatch script submitit will submit for this plan (for --dry-run)."""
    _submitit()
    from submitit.slurm.slurm import _make_sbatch_string

    folder = plan.results_dir / SUBMITIT_DIR / "%j"
    python = plan.python or shlex.quote(sys.executable)
    command = " ".join([python, "-u -m submitit.core._submit", shlex.quote(str(folder))])
    script = _make_sbatch_string(
        command=command, folder=folder, map_count=len(plan.chunks), **plan.sbatch
    )
    return str(script)


def submit(
    plan: SubmissionPlan,
    *,
    wait: bool | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Write the plan, submit the chunks and record the submission; return that record.

    ``wait`` defaults to True for local and debug (the jobs are this process's children) and
    False for SLURM (the jobs outlive this process).
    """
    if plan.profile.executor == "slurm" and plan.chunks and shutil.which("sbatch") is None:
        raise ConfigError(
            "sbatch not found on PATH: submit from a SLURM login node, or use --executor local"
        )
    save_plan(plan.results_dir, plan.spec, expand(plan.spec), plan.data_dir)
    record: dict[str, Any] = {
        "executor": plan.profile.executor,
        "submitted_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "chunks": [[t.trial_id for t in c] for c in plan.chunks],
        "job_ids": [],
        "failed_chunks": [],
    }
    if not plan.chunks:
        return record
    tasks = [_task(plan, c) for c in plan.chunks]
    folder = plan.results_dir / SUBMITIT_DIR
    if plan.profile.executor == "slurm":
        jobs = _submit_slurm(plan, tasks, folder / "%j")
    elif plan.profile.executor == "local":
        jobs = _run_local(plan, tasks, folder, on_progress)
    else:
        jobs = _run_debug(tasks, folder, on_progress)
    record["job_ids"] = [job.job_id for job in jobs]
    record_submission(plan.results_dir, record)
    if wait is None:
        wait = plan.profile.executor != "slurm"
    if plan.profile.executor == "debug":  # already ran; done() would run (and debug) again
        record["failed_chunks"] = [str(j.job_id) for j in jobs if j.exception() is not None]
    elif wait:
        record["failed_chunks"] = _wait(jobs, on_progress)
    return record


def write_plan(plan: SubmissionPlan) -> tuple[int, int]:
    """Write the sweep plan without submitting; return (chunks over all trials, chunk size)."""
    trials = expand(plan.spec)
    size = len(plan.chunks[0]) if plan.chunks else max(plan.profile.chunk, 1)
    save_plan(plan.results_dir, plan.spec, trials, plan.data_dir)
    return len(chunk(trials, size)), size


def run_planned_chunk(
    results_dir: str | os.PathLike[str],
    index: int,
    size: int,
    data_dir: str | None = None,
    *,
    pack: bool = True,
) -> list[dict[str, str]]:
    """Run the ``index``-th chunk of ``size`` trials of a saved plan, in plan order, here.

    Indices cover all planned trials (not only unfinished ones), so a plain ``sbatch --array``
    over them is stable; trials that already have a shard are skipped by the worker.
    """
    plan = read_plan(results_dir)
    chunks = chunk(plan["trials"], size) if size >= 1 else []
    if not 0 <= index < len(chunks):
        raise ConfigError(
            f"chunk index {index} out of range: {len(plan['trials'])} trials in chunks of "
            f"{size} give indices 0-{len(chunks) - 1}"
        )
    task = ChunkTask(
        results_dir=str(Path(results_dir).resolve()),
        data_dir=data_dir or plan["data_dir"],
        sweep={"name": plan["spec"]["name"], "spec_hash": plan["spec_hash"]},
        configs=tuple(t["config"] for t in chunks[index]),
        pack=pack,
    )
    return run_chunk(task)


def _task(plan: SubmissionPlan, trials: list[PlannedTrial]) -> ChunkTask:
    return ChunkTask(
        results_dir=str(plan.results_dir),
        data_dir=plan.data_dir,
        sweep={"name": plan.spec.name, "spec_hash": plan.spec.spec_hash},
        configs=tuple(t.config.to_dict() for t in trials),
        pack=plan.pack,
        pack_mb=plan.pack_mb,
        threads=plan.threads,
    )


def _submit_slurm(plan: SubmissionPlan, tasks: list[ChunkTask], folder: Path) -> list[Any]:
    submitit = _submitit()
    executor = submitit.SlurmExecutor(folder=folder, python=plan.python)
    executor.update_parameters(**plan.sbatch)
    try:
        return list(executor.map_array(ChunkRunner(), tasks))
    except submitit.core.utils.FailedJobError as exc:  # carries sbatch's own stderr
        raise MnistfcError(f"sbatch refused the array job: {str(exc).strip()}") from exc


def _run_local(
    plan: SubmissionPlan,
    tasks: list[ChunkTask],
    folder: Path,
    on_progress: Callable[[int, int], None] | None,
) -> list[Any]:
    submitit = _submitit()
    executor = submitit.LocalExecutor(folder=folder)
    jobs: list[Any] = []
    slots: dict[int, Any] = {}
    for task in tasks:
        while len(slots) >= plan.max_parallel:
            slots = {s: j for s, j in slots.items() if not j.done()}
            if len(slots) >= plan.max_parallel:
                time.sleep(0.5)
        slot = min(set(range(plan.max_parallel)) - set(slots))
        if plan.gpus:  # one GPU per concurrent task
            executor.update_parameters(
                visible_gpus=[int(plan.gpus[slot % len(plan.gpus)])], gpus_per_node=1
            )
        executor.update_parameters(timeout_min=plan.profile.timeout_min)
        slots[slot] = executor.submit(ChunkRunner(), task)
        jobs.append(slots[slot])
        if on_progress:
            on_progress(sum(j.done() for j in jobs), len(tasks))
    return jobs


def _run_debug(
    tasks: list[ChunkTask], folder: Path, on_progress: Callable[[int, int], None] | None
) -> list[Any]:
    submitit = _submitit()
    executor = submitit.DebugExecutor(folder=folder)
    jobs = [executor.submit(run_chunk, task) for task in tasks]
    for i, job in enumerate(jobs):
        # In-process, so breakpoints work; post-mortem debugging only when someone can type.
        job.results() if sys.stdin.isatty() and sys.stdout.isatty() else job.exception()
        if on_progress:
            on_progress(i + 1, len(jobs))
    return jobs


def _wait(jobs: list[Any], on_progress: Callable[[int, int], None] | None) -> list[str]:
    while not all(job.done() for job in jobs):
        if on_progress:
            on_progress(sum(job.done() for job in jobs), len(jobs))
        time.sleep(1.0)
    if on_progress:
        on_progress(len(jobs), len(jobs))
    return [str(job.job_id) for job in jobs if job.exception() is not None]


def _submitit() -> Any:
    # On import, submitit binds its own log handlers to the sys.stdout/stderr of that moment;
    # in this process the CLI owns logging, so ask it not to (jobs keep its default).
    if "submitit" not in sys.modules:
        previous = os.environ.get("SUBMITIT_LOG_LEVEL")
        os.environ["SUBMITIT_LOG_LEVEL"] = "NOCONFIG"
        try:
            import submitit  # noqa: F401
        finally:
            if previous is None:
                del os.environ["SUBMITIT_LOG_LEVEL"]
            else:
                os.environ["SUBMITIT_LOG_LEVEL"] = previous
    return sys.modules["submitit"]


def visible_gpus() -> tuple[str, ...]:
    """Return the GPU indices this host exposes, without importing TensorFlow."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return tuple(g.strip() for g in env.split(",") if g.strip().isdigit())
    if shutil.which("nvidia-smi") is None:
        return ()
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return ()
    return tuple(str(i) for i, line in enumerate(out.stdout.splitlines()) if line.startswith("GPU"))
