"""In this process through submitit's DebugExecutor, so breakpoints work."""

from __future__ import annotations

import sys
from typing import Any

from mnistfc.launch.base import (
    JobStates,
    Progress,
    Request,
    Resources,
    SubmissionPlan,
    import_submitit,
)
from mnistfc.launch.local import Local
from mnistfc.launch.worker import TaskSpec, run_task


class Debug(Local):
    """Run every task here, one after another, in the packs a local run would train."""

    def resources(self, request: Request) -> Resources:
        """Tasks run one after another: one lane unless asked for more tasks."""
        return Resources(request.max_parallel or request.profile.max_parallel or 1)

    def submit(self, plan: SubmissionPlan, tasks: list[TaskSpec], on: Progress | None) -> list[Any]:
        """Run each task now; post-mortem debugging only when someone can type."""
        executor = import_submitit().DebugExecutor(folder=plan.submitit_dir)
        jobs = [executor.submit(run_task, task) for task in tasks]
        interactive = sys.stdin.isatty() and sys.stdout.isatty()
        for i, job in enumerate(jobs):
            job.results() if interactive else job.exception()
            if on:
                on(i + 1, len(jobs))
        return jobs

    def wait(self, jobs: list[Any], on_progress: Progress | None) -> list[str]:
        """The jobs already ran (``done()`` would run them again): report the failed ones."""
        return [str(job.job_id) for job in jobs if job.exception() is not None]

    def job_states(self, job_ids: list[str]) -> JobStates:
        """In-process jobs have ended by the time anyone asks."""
        return JobStates({j: "ENDED" for j in job_ids})


BACKEND = Debug()
