"""Plan the confirm stage: the searches' top configurations on new seeds.

``mnistfc.report.confirm`` says why the stage exists and reads its table back; this module
chooses the candidates from the searches' shards (by validation accuracy), writes their list
spec and plans it as a sweep of its own, here or as one cluster job after the searches.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path

from mnistfc.engine.runtime import log_job_to_stderr
from mnistfc.errors import ConfigError
from mnistfc.folder.plan import has_plan, load_plan
from mnistfc.folder.shards import final_result
from mnistfc.folder.study_record import CONFIRM_PART
from mnistfc.launch.base import SubmissionPlan
from mnistfc.launch.profile import ClusterProfile
from mnistfc.report.aggregate import Results
from mnistfc.report.confirm import SOURCES, load_parts
from mnistfc.report.frame import ranked
from mnistfc.sweep import submit as sweep
from mnistfc.trial.config import TrialConfig
from mnistfc.trial.spec import SweepSpec, list_spec


def retrained(config: TrialConfig, seeds: int) -> list[TrialConfig]:
    """Return the configuration on ``seeds`` new seeds (1, 2, ..., skipping its own)."""
    new = [s for s in range(1, seeds + 2) if s != config.seed][:seeds]
    return [dataclasses.replace(config, seed=s) for s in new]


def candidates(
    root: str | os.PathLike[str], parts: Mapping[str, Results], top: int
) -> list[TrialConfig]:
    """Return each search's ``top`` trials' configs by validation accuracy."""
    chosen = []
    for source in (s for s in SOURCES if s in parts):
        for trial_id in ranked(parts[source].frame).head(top)["trial_id"]:
            result = final_result(Path(root) / source, str(trial_id))
            if result is not None:  # None: deleted since it was read
                chosen.append(result.config)
    return chosen


def confirm_spec(chosen: list[TrialConfig], seeds: int) -> SweepSpec | None:
    """Return the confirm stage's sweep: every candidate on its new seeds (None: nothing)."""
    trials = [config for candidate in chosen for config in retrained(candidate, seeds)]
    return list_spec(CONFIRM_PART, trials) if trials else None


def plan_confirm(
    top: int,
    seeds: int,
    results_dir: str | os.PathLike[str],
    profile: ClusterProfile,
    data_dir: str | None,
) -> SubmissionPlan | None:
    """Plan the confirm stage from the searches' shards: each search's ``top``
    configurations on ``seeds`` new seeds (None: off, or no candidates yet)."""
    if not top:
        return None
    searches = load_parts(results_dir, SOURCES)
    spec = confirm_spec(candidates(results_dir, searches, top), seeds)
    if spec is None:
        return None
    folder = Path(results_dir) / CONFIRM_PART
    if has_plan(folder) and load_plan(folder).spec.spec_hash != spec.spec_hash:
        raise ConfigError(
            f"{folder} retrained other configurations than the searches' top "
            f"{top} on {seeds} seeds are now (their results or "
            f"the [confirm] settings changed since); remove {folder} to confirm these"
        )
    return sweep.plan_submission(spec, profile, folder, data_dir=data_dir)


def confirm_job(
    top: int, seeds: int, results_dir: str, profile: ClusterProfile, data_dir: str | None
) -> str:
    """The confirm stage as one cluster job after the searches' jobs: plan it from their
    shards, then train it here (local lanes on this job's GPUs or cores)."""
    log_job_to_stderr()
    here = dataclasses.replace(profile, executor="local", container=None, max_parallel=0)
    plan = plan_confirm(top, seeds, results_dir, here, data_dir)
    if plan is None:
        return "no candidates: the searches have no results"
    _, failed = sweep.submit(plan, wait=True)
    return f"{plan.n_trials} trial(s) run, {len(failed)} task(s) failed"
