"""The exercise's whole study in one call: single model, grids, random search, the winners
confirmed on new seeds, one report."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mnistfc.errors import ConfigError, format_problems
from mnistfc.folder.shards import final_result
from mnistfc.folder.study_record import CONFIRM_PART, TRAIN_PART
from mnistfc.launch.profile import ClusterProfile
from mnistfc.trial.config import TrialConfig
from mnistfc.trial.spec import SweepSpec, load_spec, read_toml

if TYPE_CHECKING:
    from mnistfc.folder.study_record import StudyJobs
    from mnistfc.report.render import Report

# The study's sweeps, in the order they run: the exercise's grid, the same grid on
# stratified validation and test slices (to measure the split shift with networks), and
# the random search.
SWEEPS = ("grid", "grid_stratified", "random")


@dataclass(frozen=True)
class ConfirmSettings:
    """How many configurations of each search to retrain (0: no confirm stage), on how many
    new seeds each (``report/confirm.py`` says why)."""

    top: int = 5
    seeds: int = 5


@dataclass(frozen=True)
class StudySpec:
    """What a study runs: one single-model config and the sweep specs, all validated."""

    train: TrialConfig
    sweeps: tuple[tuple[str, SweepSpec], ...]
    confirm: ConfirmSettings = ConfirmSettings()


def load_study(path: str | Path, overrides: Sequence[str] = ()) -> StudySpec:
    """Load a study file; sweep spec paths are relative to it. Every problem at once."""
    data = read_toml(path, overrides)
    problems: list[str] = []
    unknown = sorted(set(data) - {TRAIN_PART, *SWEEPS, CONFIRM_PART})
    if unknown:
        problems.append(
            f"unknown section(s) {unknown}; valid: {', '.join([TRAIN_PART, *SWEEPS, CONFIRM_PART])}"
        )
    train = TrialConfig()
    try:
        train = TrialConfig.from_dict(data.get(TRAIN_PART, {}))
    except ConfigError as exc:
        problems.append(f"train: {exc}")
    sweeps = []
    for name in SWEEPS:
        section = data.get(name)
        if section is None:
            continue
        if not isinstance(section, dict) or not isinstance(section.get("spec"), str):
            problems.append(f'{name}: needs spec = "file.toml"')
            continue
        extra = sorted(set(section) - {"spec", "set"})
        if extra:
            problems.append(f"{name}: unknown key(s) {extra}; valid: spec, set")
        sets = section.get("set", [])
        if not isinstance(sets, list) or not all(isinstance(s, str) for s in sets):
            problems.append(f'{name}.set: must be a list of "key=value" strings')
            continue
        try:
            sweeps.append((name, load_spec(Path(path).parent / section["spec"], sets)))
        except ConfigError as exc:
            problems.append(f"{name}: {exc}")
    confirm = _confirm_settings(data.get(CONFIRM_PART, {}), problems)
    if problems:
        raise ConfigError(format_problems(str(path), problems))
    return StudySpec(train=train, sweeps=tuple(sweeps), confirm=confirm)


def _confirm_settings(section: Any, problems: list[str]) -> ConfirmSettings:
    if not isinstance(section, dict):
        problems.append(f"{CONFIRM_PART}: must be a table (top = 5, seeds = 5)")
        return ConfirmSettings()
    extra = sorted(set(section) - {"top", "seeds"})
    if extra:
        problems.append(f"{CONFIRM_PART}: unknown key(s) {extra}; valid: top, seeds")
    top, seeds = (
        section.get("top", ConfirmSettings.top),
        section.get("seeds", ConfirmSettings.seeds),
    )
    if not isinstance(top, int) or isinstance(top, bool) or not 0 <= top <= 20:
        problems.append(f"{CONFIRM_PART}.top: must be an integer from 0 (no confirm stage) to 20, "
                        f"got {top!r}")  # fmt: skip
    # Two seeds give an sd; ten against ten is the most the exact permutation test enumerates.
    if not isinstance(seeds, int) or isinstance(seeds, bool) or not 2 <= seeds <= 10:
        problems.append(f"{CONFIRM_PART}.seeds: must be an integer from 2 to 10, got {seeds!r}")
    return ConfirmSettings(top, seeds) if not problems else ConfirmSettings()


def run_study(
    study: StudySpec,
    results_dir: str | os.PathLike[str],
    profile: ClusterProfile,
    *,
    data_dir: str | None = None,
    verbose: int = 0,
    table_format: str = "orgtbl",
    on_progress: Callable[[str], Callable[[int, int], None]] | None = None,
) -> Report | StudyJobs:
    """Run every part (resuming whatever is already done) and write the study report.

    With a scheduler whose jobs outlive this process (SLURM), every part is submitted as
    jobs and the report is written by a job after them; this returns the ``StudyJobs``
    once submitted. Otherwise the parts run here and this returns the report.
    """
    from mnistfc.launch import backend
    from mnistfc.report.writer import write_study_report
    from mnistfc.study.single import run_single
    from mnistfc.sweep import submit as sweep

    results = Path(results_dir)
    # Plan every sweep first: a bad spec or missing data stops the study before any training.
    plans = [
        (name, sweep.plan_submission(spec, profile, results / name, data_dir=data_dir))
        for name, spec in study.sweeps
    ]
    if not backend(profile.executor).waits_by_default:
        from mnistfc.study.jobs import submit_study

        return submit_study(study, plans, results, profile, table_format)
    if final_result(results / TRAIN_PART, study.train.trial_id) is None:
        run_single(
            study.train, results / TRAIN_PART, data_dir, verbose=verbose, table_format=table_format
        )
    for name, plan in plans:
        sweep.submit(plan, wait=True, on_progress=on_progress(name) if on_progress else None)
    from mnistfc.study.confirm import plan_confirm

    confirm = plan_confirm(study.confirm.top, study.confirm.seeds, results, profile, data_dir)
    if confirm is not None:
        sweep.submit(
            confirm, wait=True, on_progress=on_progress(CONFIRM_PART) if on_progress else None
        )
    return write_study_report(results, [name for name, _ in plans], table_format)
