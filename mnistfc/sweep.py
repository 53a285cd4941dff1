"""The sweep plan on disk, and what is done, failed or still missing against it.

``RESULTS/sweep.json`` records the spec, every planned trial (with its random-search tags)
and each submission's job ids. It is what ``status`` and ``aggregate`` compare the shards
with; the shards themselves remain the only record of results.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mnistfc.atomic import atomic_write_text
from mnistfc.claims import plan_locked
from mnistfc.errors import ConfigError, ShardError
from mnistfc.search import PlannedTrial
from mnistfc.shards import Status, list_shards, read_shard
from mnistfc.spec import SweepSpec

log = logging.getLogger(__name__)

PLAN_FILE = "sweep.json"
PLAN_VERSION = 1


def plan_path(results_dir: str | os.PathLike[str]) -> Path:
    """Return where a results dir keeps its sweep plan."""
    return Path(results_dir) / PLAN_FILE


def save_plan(
    results_dir: str | os.PathLike[str],
    spec: SweepSpec,
    trials: list[PlannedTrial],
    data_dir: str | None,
) -> dict[str, Any]:
    """Write (or confirm) the plan; refuse a results dir that holds a different sweep."""
    with plan_locked(results_dir):  # two sweeps at once: one writes, the other confirms
        existing = read_plan(results_dir) if plan_path(results_dir).exists() else None
        if existing is not None and existing["spec_hash"] != spec.spec_hash:
            raise ConfigError(
                f"{results_dir} holds sweep {existing['spec']['name']!r} (spec hash "
                f"{existing['spec_hash']}), not this spec (hash {spec.spec_hash}); "
                "use another --results folder, or the spec it was made with"
            )
        plan = {
            "plan_version": PLAN_VERSION,
            "spec_hash": spec.spec_hash,
            "spec": spec.to_dict(),
            "data_dir": data_dir,
            "trials": [
                {
                    "trial_id": t.trial_id,
                    "config": t.config.to_dict(),
                    "tags": [dict(x) for x in t.tags],
                }
                for t in trials
            ],
            "submissions": existing["submissions"] if existing else [],
        }
        atomic_write_text(plan_path(results_dir), json.dumps(plan, indent=1) + "\n")
        return plan


def read_plan(results_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a results dir's plan.

    Raises:
        ConfigError: no plan (not a sweep results dir), or a plan this version cannot read.
    """
    path = plan_path(results_dir)
    try:
        plan = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{path} not found: {results_dir} is not a sweep results folder") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ConfigError(f"{path}: unreadable sweep plan ({exc})") from exc
    if not isinstance(plan, dict) or plan.get("plan_version") != PLAN_VERSION:
        raise ConfigError(f"{path}: unknown plan version; expected {PLAN_VERSION}")
    return plan


def record_submission(results_dir: str | os.PathLike[str], submission: dict[str, Any]) -> None:
    """Append one submission (executor, job ids, chunks) to the plan."""
    with plan_locked(results_dir):  # two sweeps at once: neither record is lost
        plan = read_plan(results_dir)
        plan["submissions"].append(submission)
        atomic_write_text(plan_path(results_dir), json.dumps(plan, indent=1) + "\n")


@dataclass
class ShardStates:
    """The status of each trial that has a readable shard, and the shards that are not."""

    status: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    invalid: dict[str, str] = field(default_factory=dict)


def read_states(results_dir: str | os.PathLike[str]) -> ShardStates:
    """Read every shard's status; an invalid shard is named, and its trial counts as missing."""
    states = ShardStates()
    for path in list_shards(results_dir):
        try:
            record = read_shard(path)
        except ShardError as exc:
            states.invalid[path.name] = str(exc)
            continue
        states.status[record["trial_id"]] = record["status"]
        if record["error"]:
            states.errors[record["trial_id"]] = _last_line(record["error"])
    return states


def pending(
    trials: list[PlannedTrial], states: ShardStates, rerun_failed: bool = False
) -> list[PlannedTrial]:
    """Return the trials still to run: no shard yet, or a failed one when ``rerun_failed``."""
    done = {Status.COMPLETED.value, Status.DIVERGED.value}
    if not rerun_failed:
        done.add(Status.FAILED.value)
    return [t for t in trials if states.status.get(t.trial_id) not in done]


@dataclass(frozen=True)
class SweepStatus:
    """Counts of a sweep's trials by outcome, against its plan."""

    name: str
    total: int
    counts: dict[str, int]
    failed: dict[str, str]
    invalid: dict[str, str]
    submissions: list[dict[str, Any]]

    @property
    def finished(self) -> int:
        """Return how many trials have a final shard (completed, diverged or failed)."""
        return sum(self.counts.get(s.value, 0) for s in Status)


def sweep_status(results_dir: str | os.PathLike[str]) -> SweepStatus:
    """Compare the shards on disk with the plan."""
    plan = read_plan(results_dir)
    states = read_states(results_dir)
    planned = [t["trial_id"] for t in plan["trials"]]
    counts = Counter(states.status.get(tid, "missing") for tid in planned)
    failed = {
        tid: states.errors.get(tid, "") for tid in planned if states.status.get(tid) == "failed"
    }
    return SweepStatus(
        name=plan["spec"]["name"],
        total=len(planned),
        counts=dict(counts),
        failed=failed,
        invalid=states.invalid,
        submissions=plan["submissions"],
    )


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""
