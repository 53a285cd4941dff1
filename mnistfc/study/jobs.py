"""A whole study handed to a scheduler: the single model, the sweeps, the confirm stage and
the report as jobs.

On a cluster nobody should wait on a login node: the single model runs as a job, the grids
and the random search are submitted together, the confirm stage (which needs the searches'
results to choose its configurations) is one job that starts after them, and the study
report is written by a job that starts after all of them (``--dependency=afterany``).
``RESULTS/study.json`` records the job ids, so ``status`` can follow the study and running
``study`` again resumes only what is neither finished nor still queued or running.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnistfc.folder.plan import has_plan, load_plan
from mnistfc.folder.shards import final_result, list_shards
from mnistfc.folder.study_record import (
    CONFIRM_PART,
    TRAIN_PART,
    StudyJobs,
    load_study_jobs,
    study_sweeps,
    write_study_jobs,
)
from mnistfc.launch import backend, job_states
from mnistfc.launch.base import SubmissionPlan
from mnistfc.launch.profile import ClusterProfile
from mnistfc.sweep import submit as sweep
from mnistfc.sweep.progress import LIVE_STATES


def submit_study(
    study: Any,
    plans: list[tuple[str, SubmissionPlan]],
    results_dir: str | os.PathLike[str],
    profile: ClusterProfile,
    table_format: str = "orgtbl",
) -> StudyJobs:
    """Submit every unfinished part that is not already queued or running, then the report.

    Raises:
        ConfigError: this host cannot submit (no sbatch/srun).
        MnistfcError: sbatch refused a job.
    """
    from mnistfc.report.writer import write_report_job
    from mnistfc.study.single import train_job

    train = study.train
    results = Path(results_dir)
    chosen = backend(profile.executor)
    chosen.check_ready()
    before = load_study_jobs(results)
    jobs = StudyJobs(profile.executor)
    waits: list[str] = []
    if final_result(results / TRAIN_PART, train.trial_id) is not None:
        jobs.notes.append("train: done")
    elif before and _live(profile.executor, before.parts.get(TRAIN_PART, [])):
        jobs.parts[TRAIN_PART] = before.parts[TRAIN_PART]
        jobs.notes.append("train: still queued or running")
    else:
        data_dir = plans[0][1].data_dir if plans else None
        binds = (str(results.resolve()), *([data_dir] if data_dir else []))
        job = chosen.submit_call(results / "submitit", "mnistfc-study-train", profile, binds,
                                 train_job, train, str(results / TRAIN_PART), data_dir)  # fmt: skip
        jobs.parts[TRAIN_PART] = [str(job.job_id)]
    waits += jobs.parts.get(TRAIN_PART, [])
    searches: list[str] = []
    for name, plan in plans:
        live = _live_sweep(plan)
        if live:
            jobs.parts[name] = live
            jobs.notes.append(f"{name}: {len(live)} job(s) still queued or running")
        elif not plan.tasks:
            jobs.notes.append(f"{name}: done")
        else:
            submission, _ = sweep.submit(plan, wait=False)
            jobs.parts[name] = list(submission.job_ids)
        searches += jobs.parts.get(name, [])
    waits += searches
    if study.confirm.top:
        waits += _submit_confirm(study, plans, results, profile, jobs, searches, before)
    if not waits:  # every part is done: just report, here (a second's work)
        from mnistfc.report.writer import write_study_report

        write_study_report(results, [n for n, _ in plans], table_format)
        jobs.notes.append(f"every part is done: wrote {results / 'report.html'}")
    else:
        arrays = list(dict.fromkeys(j.split("_")[0] for j in waits))
        # The report needs no GPU and little time: ask for little, so it starts at once.
        small = dataclasses.replace(profile, gpus_per_task=0, cpus_per_task=1, timeout_min=30)
        job = chosen.submit_call(results / "submitit", "mnistfc-study-report", small,
                                 (str(results.resolve()),), write_report_job, str(results),
                                 [n for n, _ in plans], table_format, after=arrays)  # fmt: skip
        jobs.report = str(job.job_id)
    write_study_jobs(results, jobs)
    return jobs


def _submit_confirm(
    study: Any,
    plans: list[tuple[str, SubmissionPlan]],
    results: Path,
    profile: ClusterProfile,
    jobs: StudyJobs,
    searches: list[str],
    before: StudyJobs | None,
) -> list[str]:
    """Submit the confirm stage; return its job ids. While the searches run, one job after
    them plans and trains it; once they are done, it is planned here, as an array."""
    from mnistfc.study.confirm import confirm_job, plan_confirm

    data_dir = plans[0][1].data_dir if plans else None
    top, seeds = study.confirm.top, study.confirm.seeds
    live = _live(profile.executor, before.parts.get(CONFIRM_PART, [])) if before else []
    if live:
        jobs.notes.append(f"{CONFIRM_PART}: still queued or running")
    elif searches:
        arrays = list(dict.fromkeys(j.split("_")[0] for j in searches))
        binds = (str(results.resolve()), *([data_dir] if data_dir else []))
        job = backend(profile.executor).submit_call(
            results / "submitit", "mnistfc-study-confirm", profile, binds, confirm_job, top,
            seeds, str(results), profile, data_dir, after=arrays)  # fmt: skip
        live = [str(job.job_id)]
        jobs.notes.append(f"{CONFIRM_PART}: after them, trains the searches' top {top} on {seeds} "
                          "new seeds each")  # fmt: skip
    else:
        plan = plan_confirm(top, seeds, results, profile, data_dir)
        if plan is None or not plan.tasks:
            jobs.notes.append(
                f"{CONFIRM_PART}: done" if plan else f"{CONFIRM_PART}: nothing to confirm"
            )
        else:
            submission, _ = sweep.submit(plan, wait=False)
            live = list(submission.job_ids)
    if live:
        jobs.parts[CONFIRM_PART] = live
    return live


def _live(executor: str, job_ids: list[str]) -> list[str]:
    states = job_states(executor, job_ids).states
    return [j for j in job_ids if states.get(j, "") in LIVE_STATES]


def _live_sweep(plan: SubmissionPlan) -> list[str]:
    """Return the job ids of the sweep's last submission that are still queued or running."""
    if not has_plan(plan.results_dir):
        return []
    submissions = load_plan(plan.results_dir).submissions
    return _live(submissions[-1].executor, list(submissions[-1].job_ids)) if submissions else []


@dataclass(frozen=True)
class StudyStatus:
    """Where a study stands: its sweeps' folders, the single model, the confirm stage's job
    and the report job."""

    sweeps: list[Path]
    train_done: bool
    train_state: str  # the single model's job state ("" when none was submitted)
    confirm_state: str  # the confirm stage's first job's state ("" when none was submitted)
    report_state: str  # the report job's state ("" when none was submitted)
    report: Path | None  # report.html, once written

    @property
    def live(self) -> bool:
        """Return whether the single model's or the report's job may still run."""
        states = (self.train_state, self.confirm_state, self.report_state)
        return any(state in LIVE_STATES for state in states)


def study_status(results_dir: str | os.PathLike[str]) -> StudyStatus:
    """Read a study folder: which sweeps it has, and its own jobs' states."""
    root = Path(results_dir)
    jobs = load_study_jobs(root)

    def state(ids: list[str]) -> str:
        if not jobs or not ids:
            return ""
        return job_states(jobs.executor, ids).states.get(ids[0], "")

    train_done = any(
        final_result(root / TRAIN_PART, path.stem) is not None
        for path in list_shards(root / TRAIN_PART)
    )
    html = root / "report.html"
    return StudyStatus(
        sweeps=study_sweeps(root),
        train_done=train_done,
        train_state="" if train_done else state(jobs.parts.get(TRAIN_PART, []) if jobs else []),
        confirm_state=state(jobs.parts.get("confirm", []) if jobs else []),
        report_state=state([jobs.report] if jobs and jobs.report else []),
        report=html if html.exists() else None,
    )
