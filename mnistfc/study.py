"""The exercise's whole study in one call: single model, grids, random search, one report."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnistfc.config import TrialConfig
from mnistfc.errors import ConfigError
from mnistfc.launch.profile import ClusterProfile
from mnistfc.records import final_result
from mnistfc.spec import SweepSpec, load_spec, read_toml

# The study's sweeps, in the order they run: the exercise's grid, the same grid on
# stratified validation and test slices (to measure the split shift with networks), and
# the random search.
SWEEPS = ("grid", "grid_stratified", "random")


@dataclass(frozen=True)
class StudySpec:
    """What a study runs: one single-model config and the sweep specs, all validated."""

    train: TrialConfig
    sweeps: tuple[tuple[str, SweepSpec], ...]


def load_study(path: str | Path, overrides: Sequence[str] = ()) -> StudySpec:
    """Load a study file; sweep spec paths are relative to it. Every problem at once."""
    data = read_toml(path, overrides)
    problems: list[str] = []
    unknown = sorted(set(data) - {"train", *SWEEPS})
    if unknown:
        problems.append(f"unknown section(s) {unknown}; valid: train, {', '.join(SWEEPS)}")
    train = TrialConfig()
    try:
        train = TrialConfig.from_dict(data.get("train", {}))
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
    if problems:
        raise ConfigError(f"{path}:\n" + "\n".join(f"  - {p}" for p in problems))
    return StudySpec(train=train, sweeps=tuple(sweeps))


def run_study(
    study: StudySpec,
    results_dir: str | os.PathLike[str],
    profile: ClusterProfile,
    *,
    data_dir: str | None = None,
    verbose: int = 0,
    table_format: str = "orgtbl",
    on_progress: Callable[[str], Callable[[int, int], None]] | None = None,
) -> Any:
    """Run every part (resuming whatever is already done) and write the study report.

    With a scheduler whose jobs outlive this process (SLURM), every part is submitted as
    jobs and the report is written by a job after them; this returns the ``StudyJobs``
    once submitted. Otherwise the parts run here and this returns the report.
    """
    from mnistfc import sweep
    from mnistfc.launch import backend
    from mnistfc.report import write_study_report
    from mnistfc.single import run_single

    results = Path(results_dir)
    # Plan every sweep first: a bad spec or missing data stops the study before any training.
    plans = [
        (name, sweep.plan_submission(spec, profile, results / name, data_dir=data_dir))
        for name, spec in study.sweeps
    ]
    if not backend(profile.executor).waits_by_default:
        from mnistfc.study_jobs import submit_study

        return submit_study(study.train, plans, results, profile, table_format)
    if final_result(results / "train", study.train.trial_id) is None:
        run_single(
            study.train, results / "train", data_dir, verbose=verbose, table_format=table_format
        )
    for name, plan in plans:
        sweep.submit(plan, wait=True, on_progress=on_progress(name) if on_progress else None)
    return write_study_report(results, [name for name, _ in plans], table_format)
