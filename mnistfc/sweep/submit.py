"""Run a sweep: expand the spec, plan the unfinished trials into packs and tasks, submit.

Everything is decided and validated in ``plan_submission`` on the submitting host (nothing
is queued yet); ``submit`` records the plan and hands the tasks to the executor's backend.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mnistfc.data.dataset import locate
from mnistfc.engine.runtime import CHECKPOINT_S
from mnistfc.errors import ConfigError, SubmitFailed
from mnistfc.folder.plan import (
    Plan,
    Submission,
    check_engine,
    load_plan,
    record_submission,
    save_plan,
)
from mnistfc.launch import backend
from mnistfc.launch.base import Progress, Request, SubmissionPlan, Work
from mnistfc.launch.profile import ClusterProfile
from mnistfc.launch.tasks import per_pack, reusable_packs
from mnistfc.launch.worker import TaskSpec, run_task
from mnistfc.sweep.progress import read_states
from mnistfc.trial.packs import Task
from mnistfc.trial.search import PlannedTrial, chunk, expand
from mnistfc.trial.spec import SweepSpec


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
    """Expand the spec, skip finished trials, plan the rest and check the executor can run.

    Packs recorded by earlier submissions whose trials are all unfinished are kept whole,
    so a rerun resumes their checkpoints.

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
    pending = set(read_states(results).pending([t.trial_id for t in trials],
                                               rerun_failed=rerun_failed))  # fmt: skip
    todo = [t for t in trials if t.trial_id in pending]
    # Resolve the data on this host: jobs get an absolute folder that is known to hold it.
    data_folder = str(locate(spec.base.dataset, data_dir)[0].parent.resolve())
    for name in {t.config.dataset for t in trials} - {spec.base.dataset}:
        locate(name, data_dir)
    packed = profile.pack if pack is None else pack
    chosen = backend(profile.executor)
    request = Request(profile, spec.name, packed, max_parallel, chunk_size or profile.chunk,
                      binds=(str(results), data_folder))  # fmt: skip
    resources = chosen.resources(request)
    existing = _existing_plan(results)
    if existing is not None:  # fail here, before anything is planned, let alone queued
        check_engine(results, existing, packed)
    recorded = existing.recorded_packs() if existing is not None else []
    reused, new = reusable_packs(todo, recorded) if packed else ([], todo)
    tasks = chosen.group(request, Work(reused, new, resources.parallel, resources.settings))
    return SubmissionPlan(
        spec=spec,
        profile=profile,
        results_dir=results,
        data_dir=data_folder,
        total=len(trials),
        skipped=len(trials) - len(todo),
        tasks=[task for task in tasks if task],
        resources=resources,
        packed=packed,
        reused=len(reused),
    )


def _existing_plan(results: Path) -> Plan | None:
    try:
        return load_plan(results)
    except ConfigError:  # no plan yet (or one save_plan will refuse with its own message)
        return None


def submit(
    plan: SubmissionPlan, *, wait: bool | None = None, on_progress: Progress | None = None
) -> tuple[Submission, list[str]]:
    """Write the plan, submit the tasks and record the submission.

    Returns the submission and the ids of failed jobs (empty when not waited for). ``wait``
    defaults to the backend's choice: local and debug jobs are this process's children,
    SLURM jobs outlive it.
    """
    chosen = backend(plan.profile.executor)
    if plan.tasks:
        chosen.check_ready()
    saved = save_plan(plan.results_dir, plan.spec, expand(plan.spec), plan.data_dir,
                      packed=plan.packed)  # fmt: skip
    if not plan.tasks:
        return Submission(plan.profile.executor, (), plan.packed), []
    specs = [_task_spec(plan, saved, task) for task in plan.tasks]
    try:
        jobs = chosen.submit(plan, specs, on_progress)
    except SubmitFailed as exc:  # what was accepted runs: record it, so status follows it
        record_submission(plan.results_dir, _submission(plan, exc.jobs))
        raise
    submission = _submission(plan, jobs)
    record_submission(plan.results_dir, submission)
    if wait is None:
        wait = chosen.waits_by_default
    failed = chosen.wait(jobs, on_progress) if wait else []
    return submission, failed


def _submission(plan: SubmissionPlan, jobs: list[Any]) -> Submission:
    """The submission of the first ``len(jobs)`` tasks (all of them unless refused part-way)."""
    tasks = plan.tasks[: len(jobs)]
    return Submission(
        executor=plan.profile.executor,
        tasks=tuple(tasks),
        packed=plan.packed,
        job_ids=tuple(str(job.job_id) for job in jobs),
    )


def _task_spec(plan: SubmissionPlan, saved: Plan, task: Task) -> TaskSpec:
    return TaskSpec(
        results_dir=str(plan.results_dir),
        data_dir=plan.data_dir,
        sweep=saved.sweep,
        task=task,
        packed=plan.packed,
        threads=plan.resources.threads,
        epoch_train_metrics=saved.spec.epoch_train_metrics,
        checkpoint_s=60.0 * plan.profile.checkpoint_min,
    )


def write_plan(plan: SubmissionPlan, size: int) -> int:
    """Write the sweep plan for plain sbatch arrays; return how many chunks of ``size`` it has."""
    trials = expand(plan.spec)
    save_plan(plan.results_dir, plan.spec, trials, plan.data_dir, packed=plan.packed)
    return len(chunk(trials, size))


def run_planned_chunk(
    results_dir: str | os.PathLike[str],
    index: int,
    size: int,
    data_dir: str | None = None,
    *,
    pack: bool | None = None,
    checkpoint_s: float = CHECKPOINT_S,
) -> list[tuple[str, str]]:
    """Run the ``index``-th chunk of ``size`` trials of a saved plan, in plan order, here.

    Indices cover all planned trials (not only unfinished ones), and each chunk's packs are
    planned from the plan alone, so a plain ``sbatch --array`` over them is stable and a
    rerun of a chunk resumes its packs' checkpoints; finished trials are skipped. ``pack``
    defaults to the engine the plan recorded.
    """
    plan = load_plan(results_dir)
    if size < 1:
        raise ConfigError(f"--size must be >= 1, got {size}")
    chunks = chunk(list(plan.trials), size)
    if not 0 <= index < len(chunks):
        raise ConfigError(
            f"chunk index {index} out of range: {len(plan.trials)} trials in chunks of "
            f"{size} give indices 0-{len(chunks) - 1}"
        )
    if pack is None:
        pack = plan.packed is not False
    check_engine(results_dir, plan, pack)
    trials: list[PlannedTrial] = chunks[index]
    (planned,) = per_pack([], trials, size=len(trials), packed=pack,
                          pack_mb=ClusterProfile().pack_mb)  # fmt: skip
    task = TaskSpec(
        results_dir=str(Path(results_dir).resolve()),
        data_dir=data_dir or plan.data_dir,
        sweep=plan.sweep,
        task=planned,
        packed=pack,
        epoch_train_metrics=plan.spec.epoch_train_metrics,
        checkpoint_s=checkpoint_s,
    )
    return run_task(task)
