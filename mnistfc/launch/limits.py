"""A SLURM site's limits on what one user may submit, asked of SLURM or set in the profile.

Two limits break a big sweep at real sites: ``MaxArraySize`` (the default 1001 refuses
``--array=0-1139``) and the jobs a user may have queued at once (``MaxSubmitJobs`` of the
association, ``MaxSubmitJobsPerUser`` of the QOS; each array task counts as a job). The
submitter splits a sweep into arrays within the first and chunks it more to fit the second.
"""

from __future__ import annotations

import getpass
import logging
import os
import subprocess
from dataclasses import dataclass

from mnistfc.launch.profile import ClusterProfile

log = logging.getLogger(__name__)

SLURM_DEFAULT_MAX_ARRAY_SIZE = 1001  # slurm.conf's default


@dataclass(frozen=True)
class SiteLimits:
    """How many tasks one array may hold, and how many more jobs this user may submit."""

    max_array_size: int
    max_jobs: int | None  # None: no limit known
    queued: int = 0  # this user's jobs already queued or running (they count too)
    source: str = ""  # where the numbers came from, for the plan summary and doctor

    @property
    def free_jobs(self) -> int | None:
        """Return how many jobs may still be submitted (None: no limit known)."""
        return None if self.max_jobs is None else max(self.max_jobs - self.queued, 0)


def site_limits(profile: ClusterProfile) -> SiteLimits:
    """Return the limits: the profile's where set (> 0), else what SLURM answers.

    A host that cannot ask (no SLURM here: a dry run on a laptop) gets SLURM's default
    array size and no job limit, and the source says so.
    """
    notes = []
    array_size = profile.max_array_size
    if array_size:
        notes.append("max_array_size from the profile")
    else:
        asked = max_array_size()
        array_size = asked or SLURM_DEFAULT_MAX_ARRAY_SIZE
        notes.append("MaxArraySize from scontrol" if asked else "MaxArraySize: SLURM's default")
    jobs: int | None = profile.max_jobs or None
    if jobs:
        notes.append("max_jobs from the profile")
    else:
        jobs, where = submit_limit(profile)
        notes.append(where)
    queued = queued_jobs() if jobs is not None else 0
    return SiteLimits(array_size, jobs, queued, "; ".join(notes))


def max_array_size() -> int | None:
    """Return the cluster's MaxArraySize (``scontrol show config``), None if it cannot say."""
    out = _run(["scontrol", "show", "config"])
    for line in (out or "").splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "MaxArraySize" and value.strip().isdigit():
            return int(value.strip())
    return None


def submit_limit(profile: ClusterProfile) -> tuple[int | None, str]:
    """Return the smallest limit on this user's submitted jobs (association and QOS)."""
    user = _user()
    rows = _run(["sacctmgr", "-n", "-P", "show", "assoc", "where", f"user={user}",
                 "format=Account,User,MaxSubmit,QOS,DefaultQOS"])  # fmt: skip
    if rows is None:
        return None, "job limit unknown (sacctmgr did not answer)"
    limits: list[int] = []
    qos = profile.qos
    for line in rows.splitlines():
        account, _, max_submit, allowed, default_qos = (line.split("|") + [""] * 5)[:5]
        if profile.account and account != profile.account:
            continue
        if max_submit.strip().isdigit():
            limits.append(int(max_submit))
        if not qos:
            qos = default_qos or (allowed if allowed and "," not in allowed else None)
    if qos:
        out = _run(["sacctmgr", "-n", "-P", "show", "qos", qos, "format=MaxSubmitPU,GrpSubmit"])
        for value in (out or "").replace("\n", "|").split("|"):
            if value.strip().isdigit():
                limits.append(int(value))
    if not limits:
        return None, "no job limit (sacctmgr)"
    return min(limits), f"job limit {min(limits)} (sacctmgr: association and QOS {qos or '-'})"


def queued_jobs() -> int:
    """Return how many jobs (array tasks counted one by one) this user has in the queue."""
    out = _run(["squeue", "-h", "-r", "-u", _user(), "-o", "%i"])
    return len((out or "").split())


def _user() -> str:
    return os.environ.get("USER") or getpass.getuser()


def _run(command: list[str]) -> str | None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
    except (OSError, subprocess.SubprocessError) as exc:
        log.info("%s did not answer (%s)", command[0], exc)
        return None
    return done.stdout
