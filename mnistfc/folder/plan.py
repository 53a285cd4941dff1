"""The sweep plan, ``RESULTS/sweep.json``: what a results folder is for, and what was sent where.

It records the spec, every planned trial (with its random-search tags) and each submission:
its executor, job ids and tasks, each task being the exact packs it runs. What the submitter
planned is what the tasks run, and a rerun re-uses the recorded packs of unfinished trials,
so their checkpoints resume. This is the only module that reads or writes the file; the
shards remain the only record of results.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mnistfc.atomic import atomic_write_text
from mnistfc.errors import ConfigError
from mnistfc.folder.claims import plan_locked
from mnistfc.folder.result import SweepRef
from mnistfc.folder.shards import list_shards
from mnistfc.trial.config import TrialConfig
from mnistfc.trial.packs import Pack, Task
from mnistfc.trial.search import PlannedTrial
from mnistfc.trial.spec import SweepSpec, spec_from_dict

PLAN_FILE = "sweep.json"
PLAN_VERSION = 3  # 3: the engine (packed or Keras) is recorded
ENGINES = {True: "packed", False: "keras"}


@dataclass(frozen=True)
class Submission:
    """One hand-over of tasks to an executor; job ids in task order (none for --plan-only)."""

    executor: str
    tasks: tuple[Task, ...]
    packed: bool = True
    job_ids: tuple[str, ...] = ()
    submitted_at: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))

    def task_trials(self) -> Iterator[tuple[str, tuple[str, ...]]]:
        """Yield (job id, trial ids) per task ("" as the id where none was recorded)."""
        for i, task in enumerate(self.tasks):
            job = self.job_ids[i] if i < len(self.job_ids) else ""
            yield job, task.trial_ids

    def to_json(self) -> dict[str, Any]:
        """Return the JSON form kept in sweep.json."""
        return {
            "executor": self.executor,
            "submitted_at": self.submitted_at,
            "packed": self.packed,
            "tasks": [task.to_json() for task in self.tasks],
            "job_ids": list(self.job_ids),
        }

    @classmethod
    def from_json(cls, data: Any, trials: Mapping[str, PlannedTrial]) -> Submission:
        """Read one recorded submission against the plan's trials (ValueError/TypeError/
        KeyError when malformed)."""
        tasks = tuple(Task.from_json(task, trials) for task in data["tasks"])
        return cls(
            executor=str(data["executor"]),
            tasks=tasks,
            packed=bool(data.get("packed", True)),
            job_ids=tuple(str(j) for j in data.get("job_ids", [])),
            submitted_at=str(data.get("submitted_at", "")),
        )


@dataclass(frozen=True)
class Plan:
    """A results folder's sweep: its spec, its trials and what was submitted so far."""

    spec: SweepSpec
    data_dir: str | None
    trials: tuple[PlannedTrial, ...]
    submissions: tuple[Submission, ...] = ()
    packed: bool | None = None  # the engine of this folder's trials (None: not chosen yet)

    @property
    def sweep(self) -> SweepRef:
        """Return the reference every shard of this sweep carries."""
        return SweepRef(self.spec.name, self.spec.spec_hash)

    @property
    def trial_ids(self) -> list[str]:
        """Return the planned trial ids in plan order."""
        return [t.trial_id for t in self.trials]

    def configs(self) -> dict[str, TrialConfig]:
        """Return each planned trial's config by id."""
        return {t.trial_id: t.config for t in self.trials}

    def tagged(self, **wanted: Any) -> list[str]:
        """Return the ids of trials drawn with these tags (e.g. ``repeat=0, budget=10``)."""
        return [
            t.trial_id
            for t in self.trials
            if any(all(dict(tag).get(k) == v for k, v in wanted.items()) for tag in t.tags)
        ]

    def recorded_packs(self) -> list[Pack]:
        """Return every pack of the packed submissions, the latest submission's first."""
        return [
            pack
            for s in reversed(self.submissions)
            if s.packed
            for task in s.tasks
            for pack in task.packs
        ]

    def to_json(self) -> dict[str, Any]:
        """Return the JSON form of sweep.json."""
        return {
            "plan_version": PLAN_VERSION,
            "spec_hash": self.spec.spec_hash,
            "spec": self.spec.to_dict(),
            "data_dir": self.data_dir,
            "engine": None if self.packed is None else ENGINES[self.packed],
            "trials": [
                {
                    "trial_id": t.trial_id,
                    "config": t.config.to_dict(),
                    "tags": [dict(x) for x in t.tags],
                }
                for t in self.trials
            ],
            "submissions": [s.to_json() for s in self.submissions],
        }


def plan_path(results_dir: str | os.PathLike[str]) -> Path:
    """Return where a results folder keeps its sweep plan."""
    return Path(results_dir) / PLAN_FILE


def has_plan(results_dir: str | os.PathLike[str]) -> bool:
    """Return whether a results folder holds a sweep plan (a single model's folder does not)."""
    return plan_path(results_dir).exists()


def save_plan(
    results_dir: str | os.PathLike[str],
    spec: SweepSpec,
    trials: list[PlannedTrial],
    data_dir: str | None,
    *,
    packed: bool | None = None,
) -> Plan:
    """Write (or confirm) the plan; refuse a results folder that holds a different sweep,
    or trials of the other engine (see ``check_engine``)."""
    with plan_locked(results_dir):  # two sweeps at once: one writes, the other confirms
        existing = load_plan(results_dir) if has_plan(results_dir) else None
        if existing is not None and existing.spec.spec_hash != spec.spec_hash:
            raise ConfigError(
                f"{results_dir} holds sweep {existing.spec.name!r} (spec hash "
                f"{existing.spec.spec_hash}), not this spec (hash {spec.spec_hash}); "
                "use another --results folder, or the spec it was made with"
            )
        if existing is not None and packed is not None:
            check_engine(results_dir, existing, packed)
        if packed is None and existing is not None:
            packed = existing.packed
        plan = Plan(
            spec=spec,
            data_dir=data_dir,
            trials=tuple(trials),
            submissions=existing.submissions if existing else (),
            packed=packed,
        )
        _write(results_dir, plan)
        return plan


def check_engine(results_dir: str | os.PathLike[str], plan: Plan, packed: bool) -> None:
    """Refuse to run trials with another engine than the folder's shards were made with.

    The packed and the Keras engine draw different random numbers, so the same config gives
    different numbers under one trial id; a folder mixing them would select among numbers
    of two kinds. The engine is a property of how a folder was run, not a hyperparameter,
    so it is kept out of the trial id (which stays the config's hash) and checked here.
    """
    if plan.packed is None or plan.packed == packed or not list_shards(results_dir):
        return
    flag = "--pack" if plan.packed else "--no-pack"
    raise ConfigError(
        f"{results_dir} holds trials of the {ENGINES[plan.packed]} engine; running "
        f"{ENGINES[packed]} trials there would mix two engines' numbers under the same trial "
        f"ids: use another --results folder, or {flag} (profile pack = "
        f"{str(plan.packed).lower()})"
    )


def record_submission(results_dir: str | os.PathLike[str], submission: Submission) -> None:
    """Append one submission to the plan, under the plan lock so none is lost."""
    with plan_locked(results_dir):
        plan = load_plan(results_dir)
        _write(results_dir, Plan(plan.spec, plan.data_dir, plan.trials,
                                 (*plan.submissions, submission), plan.packed))  # fmt: skip


def load_plan(results_dir: str | os.PathLike[str]) -> Plan:
    """Read a results folder's plan, checked whole.

    Raises:
        ConfigError: no plan (not a sweep results folder), or one this version cannot read.
    """
    path = plan_path(results_dir)
    if not path.is_file():
        raise ConfigError(f"{path} not found: {results_dir} is not a sweep results folder")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ConfigError(f"{path}: unreadable sweep plan ({exc})") from exc
    if not isinstance(data, dict) or data.get("plan_version") not in (1, 2, PLAN_VERSION):
        raise ConfigError(
            f"{path}: not a sweep plan this mnistfc reads (plan_version {PLAN_VERSION}); "
            "plan the sweep again into a new --results folder"
        )
    try:
        spec = spec_from_dict(data["spec"], where=f"{path}: spec")
        trials = tuple(_trial(t) for t in data["trials"])
        by_id = {t.trial_id: t for t in trials}
        submissions = tuple(_submission(s, by_id) for s in data.get("submissions", []))
        data_dir = data.get("data_dir")
        if data_dir is not None and not isinstance(data_dir, str):
            raise TypeError("data_dir must be a string or null")
    except ConfigError as exc:
        raise ConfigError(f"{path}: corrupt sweep plan ({str(exc).splitlines()[0]})") from exc
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ConfigError(f"{path}: corrupt sweep plan ({type(exc).__name__}: {exc})") from exc
    if data.get("spec_hash") != spec.spec_hash:
        raise ConfigError(f"{path}: spec_hash does not match its spec; the file was edited")
    engine = data.get("engine")
    if engine not in (None, *ENGINES.values()):
        raise ConfigError(f"{path}: corrupt sweep plan (engine {engine!r})")
    # Before version 3 the engine is the one the submissions used, if any.
    packed = {v: k for k, v in ENGINES.items()}.get(engine) if engine else (
        submissions[-1].packed if submissions else None)  # fmt: skip
    return Plan(spec, data_dir, trials, submissions, packed)


def _trial(data: dict[str, Any]) -> PlannedTrial:
    config = TrialConfig.from_dict(data["config"])
    if data["trial_id"] != config.trial_id:
        raise ValueError(f"trial {data['trial_id']!r} does not match its config")
    tags = tuple(tuple(tag.items()) for tag in data.get("tags", []))
    return PlannedTrial(config, tags)


def _submission(data: dict[str, Any], trials: Mapping[str, PlannedTrial]) -> Submission:
    if "tasks" not in data:  # plan_version 1: one pack per task, as its worker planned
        data = {**data, "tasks": [[chunk] for chunk in data["chunks"]], "packed": False}
    return Submission.from_json(data, trials)


def _write(results_dir: str | os.PathLike[str], plan: Plan) -> None:
    atomic_write_text(plan_path(results_dir), json.dumps(plan.to_json(), indent=1) + "\n")
