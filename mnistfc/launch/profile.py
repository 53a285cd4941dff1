"""Cluster profiles (``jobs/clusters/*.toml``): where and how tasks run, validated whole.

The profile is one flat TOML table, so a site writes one file; the keys every executor
reads are checked here (``common_problems``), each backend checks its own
(``Backend.problems``), and ``mnistfc.launch.load_profile`` reads a file and asks both.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mnistfc.engine.runtime import CHECKPOINT_MIN

DEFAULT_PACK_MB = 1024.0
# container_runtime -> the program that runs a command in an image (launch/container.py)
RUNTIMES = {"apptainer": "apptainer", "singularity": "singularity", "charliecloud": "ch-run"}


@dataclass(frozen=True, kw_only=True)
class ClusterProfile:
    """Where and how array tasks run: executor, resources, packing, container image."""

    executor: str = "local"
    chunk: int = 0  # trials per task; 0 = the backend's policy (one pack, or one lane)
    pack: bool = True  # trials sharing batch size and epochs train in one step
    pack_mb: float = DEFAULT_PACK_MB  # memory budget of one pack
    # A pack saves its state after training this long since its last save (0: every epoch);
    # it always saves when asked to stop (SIGTERM, SIGUSR2). Only a SIGKILL loses up to this.
    checkpoint_min: float = CHECKPOINT_MIN
    timeout_min: int = 60  # per task
    max_parallel: int = 0  # local: processes at once; 0 = one per core (packed) or GPU
    # slurm (launch/slurm.py)
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    gpus_per_task: int = 0
    cpus_per_task: int = 2
    mem_gb: float = 8.0
    array_parallelism: int = 32
    signal_delay_s: int = 90  # SLURM signals a task this long before its time limit
    max_array_size: int = 0  # tasks per array job; 0 = ask SLURM (MaxArraySize)
    max_jobs: int = 0  # jobs this user may have queued; 0 = ask SLURM (association, QOS)
    container: str | None = None  # an image: a .sif, or a Charliecloud image directory
    container_runtime: str = "apptainer"  # apptainer | singularity | charliecloud
    container_binds: tuple[str, ...] = ()
    setup: tuple[str, ...] = ()
    sbatch: Mapping[str, Any] = field(default_factory=dict)


def common_problems(p: ClusterProfile) -> list[str]:
    problems = []
    for key in ("cpus_per_task", "timeout_min", "array_parallelism"):
        if not is_int(getattr(p, key)) or getattr(p, key) < 1:
            problems.append(f"{key}: must be a positive integer, got {getattr(p, key)!r}")
    for key in ("gpus_per_task", "max_parallel", "chunk", "signal_delay_s", "max_array_size",
                "max_jobs"):  # fmt: skip
        if not is_int(getattr(p, key)) or getattr(p, key) < 0:
            problems.append(f"{key}: must be an integer >= 0, got {getattr(p, key)!r}")
    for key in ("mem_gb", "pack_mb"):
        if not is_positive_number(getattr(p, key)):
            problems.append(f"{key}: must be a finite number > 0, got {getattr(p, key)!r}")
    if isinstance(p.checkpoint_min, bool) or not (
        p.checkpoint_min == 0 or is_positive_number(p.checkpoint_min)
    ):
        problems.append(f"checkpoint_min: must be a finite number >= 0 (0: every epoch), "
                        f"got {p.checkpoint_min!r}")  # fmt: skip
    if not isinstance(p.pack, bool):
        problems.append(f"pack: must be true or false, got {p.pack!r}")
    for key in ("partition", "account", "qos", "container"):
        value = getattr(p, key)
        if value is not None and not isinstance(value, str):
            problems.append(f"{key}: must be a string, got {value!r}")
    if not isinstance(p.container_runtime, str) or p.container_runtime not in RUNTIMES:
        problems.append(f"container_runtime: must be one of {', '.join(RUNTIMES)}, "
                        f"got {p.container_runtime!r}")  # fmt: skip
    return problems


def is_int(value: Any) -> bool:
    """Return whether ``value`` is an int and not a bool (TOML's true is no number)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_positive_number(value: Any) -> bool:
    """Return whether ``value`` is a finite number > 0 (an int too large for a float is not)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value) and value > 0
    except OverflowError:
        return False
