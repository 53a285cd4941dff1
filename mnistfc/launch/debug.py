"""In this process through submitit's DebugExecutor, so breakpoints work."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from mnistfc.launch.base import Backend, Progress, Resources, SubmissionPlan, import_submitit
from mnistfc.launch.profile import ClusterProfile
from mnistfc.launch.tasks import Pack, Task, per_lane
from mnistfc.worker import TaskSpec, run_task


class Debug(Backend):
    """Run every task here, one after another."""

    name = "debug"

    def resources(
        self, profile: ClusterProfile, *, spec_name: str, max_parallel: int | None,
        packed: bool, binds: list[str],
    ) -> Resources:  # fmt: skip
        """Tasks run one after another: one lane unless asked for more tasks."""
        return Resources(max_parallel or profile.max_parallel or 1)

    def group(
        self, reused: list[Pack], new: list[Any], *, profile: ClusterProfile, size: int,
        packed: bool, parallel: int,
    ) -> list[Task]:  # fmt: skip
        """As local lanes, so a debug run trains the packs a local run would."""
        return per_lane(
            reused, new, lanes=parallel, size=size, packed=packed, pack_mb=profile.pack_mb
        )

    def submit(
        self,
        plan: SubmissionPlan,
        tasks: list[TaskSpec],
        folder: Path,
        on_progress: Progress | None,
    ) -> list[Any]:
        """Run each task now; post-mortem debugging only when someone can type."""
        executor = import_submitit().DebugExecutor(folder=folder)
        jobs = [executor.submit(run_task, task) for task in tasks]
        interactive = sys.stdin.isatty() and sys.stdout.isatty()
        for i, job in enumerate(jobs):
            job.results() if interactive else job.exception()
            if on_progress:
                on_progress(i + 1, len(jobs))
        return jobs

    def wait(self, jobs: list[Any], on_progress: Progress | None) -> list[str]:
        """The jobs already ran (``done()`` would run them again): report the failed ones."""
        return [str(job.job_id) for job in jobs if job.exception() is not None]


BACKEND = Debug()
