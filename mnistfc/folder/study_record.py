"""A study's record, ``RESULTS/study.json``: what a cluster study submitted, where.

It holds each part's job ids and the report job's, so ``status`` can follow the study and a
rerun does not submit twice what is still queued. Like ``sweep.json`` for a sweep, this is
the only module that reads or writes it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mnistfc.atomic import atomic_write_text
from mnistfc.folder.plan import PLAN_FILE, has_plan
from mnistfc.provenance import utc_now

STUDY_FILE = "study.json"
# A study folder's parts besides its sweeps: each is a folder and a section of study.toml.
TRAIN_PART = "train"  # the exercise's single model
CONFIRM_PART = "confirm"  # the searches' winners on new seeds


@dataclass
class StudyJobs:
    """What a cluster study submitted: each part's job ids, and the report job's."""

    executor: str
    parts: dict[str, list[str]] = field(default_factory=dict)  # train, sweeps, confirm
    report: str = ""
    submitted_at: str = field(default_factory=utc_now)
    notes: list[str] = field(default_factory=list)  # what was not submitted, and why

    def to_json(self) -> dict[str, Any]:
        """Return the JSON form kept in study.json."""
        return {"executor": self.executor, "parts": self.parts, "report": self.report,
                "submitted_at": self.submitted_at}  # fmt: skip


def load_study_jobs(results_dir: str | os.PathLike[str]) -> StudyJobs | None:
    """Return what the last cluster study submission recorded (None: none, or unreadable)."""
    path = Path(results_dir) / STUDY_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        parts = {str(k): [str(j) for j in v] for k, v in data["parts"].items()}
        return StudyJobs(str(data["executor"]), parts, str(data.get("report", "")),
                         str(data.get("submitted_at", "")))  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def write_study_jobs(results_dir: str | os.PathLike[str], jobs: StudyJobs) -> None:
    """Record a cluster study's submission (atomically: readers see the old or the new)."""
    path = Path(results_dir) / STUDY_FILE
    atomic_write_text(path, json.dumps(jobs.to_json(), indent=1) + "\n")


def is_study(results_dir: str | os.PathLike[str]) -> bool:
    """Return whether a folder holds a study (study.json, or a train/ and sweep folders)."""
    root = Path(results_dir)
    return not has_plan(root) and ((root / STUDY_FILE).exists() or (root / TRAIN_PART).is_dir())


def study_sweeps(results_dir: str | os.PathLike[str]) -> list[Path]:
    """Return a study folder's sweep folders (those holding a sweep.json), by name."""
    return sorted(p.parent for p in Path(results_dir).glob(f"*/{PLAN_FILE}"))
