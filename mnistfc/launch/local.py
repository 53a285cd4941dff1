"""Local processes through submitit: lanes of about equal compute, one GPU each if any."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from typing import Any

from mnistfc.launch.base import (
    Backend,
    JobStates,
    Progress,
    Request,
    Resources,
    SubmissionPlan,
    Work,
    import_submitit,
)
from mnistfc.launch.tasks import per_lane
from mnistfc.launch.worker import TaskRunner, TaskSpec
from mnistfc.trial.packs import Task

MAX_CPU_LANES = 4  # measured (benchmarks/bench_grid.py): more single-threaded lanes gain nothing


@dataclass(frozen=True)
class LocalSettings:
    """The GPUs lanes are spread over (none: CPU lanes) and each task's time limit."""

    gpus: tuple[str, ...]
    timeout_min: int


class Local(Backend):
    """Run tasks as child processes of this one, at most ``parallel`` at once, and wait."""

    poll_s = 0.1  # a child's end is a file on this disk: cheap to look for, and the user waits

    def resources(self, request: Request) -> Resources:
        """One lane per GPU; on CPUs, packed lanes of single-threaded steps use the cores best
        (measured: benchmarks/bench_grid.py), unpacked Keras runs one lane with all cores."""
        profile, packed = request.profile, request.packed
        gpus = visible_gpus()
        cpu_lanes = max(1, min(usable_cores(), MAX_CPU_LANES)) if packed else 1
        parallel = request.max_parallel or profile.max_parallel or len(gpus) or cpu_lanes
        threads = max(1, usable_cores() // parallel) if packed and not gpus else 0
        note = f"on GPUs {','.join(gpus)}" if gpus else ""
        return Resources(parallel, threads, LocalSettings(gpus, profile.timeout_min), note)

    def group(self, request: Request, work: Work) -> list[Task]:
        """One task per lane: every task pays for importing TensorFlow and loading data once."""
        return per_lane(work.reused, work.new, lanes=work.parallel, size=request.size,
                        packed=request.packed, pack_mb=request.profile.pack_mb)  # fmt: skip

    def submit(self, plan: SubmissionPlan, tasks: list[TaskSpec], on: Progress | None) -> list[Any]:
        """Start the tasks, never more than ``parallel`` at once, each on its own GPU slot.

        The task itself sets CUDA_VISIBLE_DEVICES (``TaskSpec.devices``), because submitit's
        own GPU setting takes only indices, not the UUIDs or MIG ids a site may hand out.
        """
        settings: LocalSettings = plan.resources.settings
        parallel = plan.resources.parallel
        executor = import_submitit().LocalExecutor(folder=plan.submitit_dir)
        executor.update_parameters(timeout_min=settings.timeout_min)
        jobs: list[Any] = []
        slots: dict[int, Any] = {}
        for task in tasks:
            while len(slots) >= parallel:
                slots = {s: j for s, j in slots.items() if not j.done()}
                if len(slots) >= parallel:
                    time.sleep(self.poll_s)
            slot = min(set(range(parallel)) - set(slots))
            if settings.gpus:
                task = dataclasses.replace(task, devices=settings.gpus[slot % len(settings.gpus)])
            slots[slot] = executor.submit(TaskRunner(), task)
            jobs.append(slots[slot])
            if on:
                on(sum(j.done() for j in jobs), len(tasks))
        return jobs

    def job_states(self, job_ids: list[str]) -> JobStates:
        """A local job is a process: running while its pid lives."""
        return JobStates({j: "RUNNING" if _pid_alive(j) else "ENDED" for j in job_ids})


def usable_cores() -> int:
    """Return the cores this process may run on (affinity: `docker --cpuset-cpus`, taskset)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not every platform has affinity
        return os.cpu_count() or 1


def visible_gpus() -> tuple[str, ...]:
    """Return the GPUs this host exposes (indices, GPU UUIDs or MIG ids), without TensorFlow.

    ``CUDA_VISIBLE_DEVICES`` wins when set; as CUDA does, its list ends at the first empty
    or negative entry. Otherwise ``nvidia-smi -L``: one lane per GPU, or per MIG instance
    (addressed by its UUID) on a GPU split into MIG instances.
    """
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return parse_visible_devices(env)
    if shutil.which("nvidia-smi") is None:
        return ()
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return ()
    return parse_nvidia_smi(out.stdout)


def parse_visible_devices(value: str) -> tuple[str, ...]:
    """Return the devices a CUDA_VISIBLE_DEVICES value names, in order."""
    devices: list[str] = []
    for token in value.split(","):
        token = token.strip()
        if not token or token.startswith("-"):
            break
        devices.append(token)
    return tuple(devices)


def parse_nvidia_smi(listing: str) -> tuple[str, ...]:
    """Return the devices of ``nvidia-smi -L``: GPU indices, or MIG UUIDs where MIG is on."""
    gpus: list[tuple[str, list[str]]] = []
    for line in listing.splitlines():
        text = line.strip()
        if text.startswith("GPU "):
            gpus.append((text[4:].split(":", 1)[0].strip(), []))
        elif text.startswith("MIG ") and gpus and "UUID: " in text:
            gpus[-1][1].append(text.split("UUID: ", 1)[1].rstrip(")").strip())
    return tuple(d for index, migs in gpus for d in (migs or [index]))


def _pid_alive(job_id: str) -> bool:
    try:
        os.kill(int(job_id), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


BACKEND = Local()
