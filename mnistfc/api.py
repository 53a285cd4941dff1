"""The Python API for notebooks: train one model, run a sweep or a study, follow and load
their results.

Each call is what the matching CLI verb does, with the same validation and the same files
on disk, so a notebook and a batch job can share a results folder.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from mnistfc.trial.config import TrialConfig
from mnistfc.trial.spec import SweepSpec

if TYPE_CHECKING:  # pandas, TensorFlow and submitit load only when a call needs them
    from mnistfc.folder.plan import Submission
    from mnistfc.folder.result import TrialResult
    from mnistfc.folder.study_record import StudyJobs
    from mnistfc.launch.profile import ClusterProfile
    from mnistfc.report.aggregate import Results
    from mnistfc.report.render import Report
    from mnistfc.sweep.progress import SweepStatus

PathLike = str | os.PathLike[str]
Executor = Literal["local", "debug", "slurm"]


@dataclass(frozen=True)
class SweepRun:
    """What ``run_sweep`` handed over, and which of its jobs failed (once waited for)."""

    submission: Submission
    failed_jobs: tuple[str, ...]

    @property
    def job_ids(self) -> tuple[str, ...]:
        """Return the submitted jobs' ids, in task order."""
        return self.submission.job_ids


def train_model(
    out: PathLike,
    *,
    units: int = 128,
    dropout: float = 0.3,
    activation: str = "relu",
    learning_rate: float = 1e-3,
    batch_size: int = 1000,
    epochs: int = 10,
    seed: int = 0,
    dataset: str = "mnist",
    valid_size: int = 2000,
    valid_split: str = "exercise",
    data_dir: PathLike | None = None,
    verbose: int = 0,
) -> TrialResult:
    """Train one model (``mnistfc train``): its shard, history, weights and plots go to ``out``.

    The settings are TrialConfig's fields, defaulting to the exercise's model. The result's
    ``model`` is the Keras model with the best validation epoch's weights.
    """
    from mnistfc.study.single import run_single

    config = TrialConfig(units=units, dropout=dropout, activation=activation,
                         learning_rate=learning_rate, batch_size=batch_size, epochs=epochs,
                         seed=seed, dataset=dataset, valid_size=valid_size,
                         valid_split=valid_split)  # fmt: skip
    return run_single(config, out, data_dir, verbose=verbose).result


def run_sweep(
    spec: PathLike | SweepSpec,
    results: PathLike,
    *,
    executor: Executor | None = None,
    cluster: PathLike | None = None,
    overrides: Sequence[str] = (),
    cluster_overrides: Sequence[str] = (),
    data_dir: PathLike | None = None,
    pack: bool | None = None,
    rerun_failed: bool = False,
    wait: bool | None = None,
) -> SweepRun:
    """Run a sweep's unfinished trials (``mnistfc sweep``); return what was submitted.

    ``spec`` is a TOML path (with ``overrides`` such as ``"base.epochs=1"``) or a SweepSpec.
    ``executor`` overrides the ``cluster`` profile's. Local and debug sweeps are waited
    for; SLURM ones are not unless ``wait=True``. A failed job is listed in the result's
    ``failed_jobs`` (its trials' shards say why; ``status`` counts them), not raised.
    """
    from mnistfc.sweep import submit as sweep
    from mnistfc.trial.spec import load_spec

    loaded = spec if isinstance(spec, SweepSpec) else load_spec(Path(spec), list(overrides))
    profile = _profile(executor, cluster, cluster_overrides)
    plan = sweep.plan_submission(
        loaded,
        profile,
        results,
        data_dir=None if data_dir is None else str(data_dir),
        rerun_failed=rerun_failed,
        pack=pack,
    )
    submission, failed = sweep.submit(plan, wait=wait)
    return SweepRun(submission, tuple(failed))


def run_study(
    spec: PathLike,
    results: PathLike,
    *,
    executor: Executor | None = None,
    cluster: PathLike | None = None,
    overrides: Sequence[str] = (),
    cluster_overrides: Sequence[str] = (),
    data_dir: PathLike | None = None,
    table_format: str = "orgtbl",
) -> Report | StudyJobs:
    """Run a whole study (``mnistfc study``), resuming whatever is done.

    Locally, every part runs here and the study's report is returned; on SLURM every part
    is submitted as jobs (the report is written by the last) and their ids are returned.
    """
    from mnistfc.study.run import load_study
    from mnistfc.study.run import run_study as run

    study = load_study(Path(spec), list(overrides))
    profile = _profile(executor, cluster, cluster_overrides)
    return run(study, results, profile, data_dir=None if data_dir is None else str(data_dir),
               table_format=table_format)  # fmt: skip


def status(results: PathLike) -> dict[str, SweepStatus]:
    """Count each sweep's trials by outcome (``mnistfc status``): a sweep's folder gives its
    one sweep, a study's folder each of its sweeps, by folder name. Reads shards and plans
    only (no scheduler query); a folder that is neither raises ConfigError."""
    from mnistfc.folder.study_record import is_study, study_sweeps
    from mnistfc.sweep.progress import sweep_status

    root = Path(results)
    folders = study_sweeps(root) if is_study(root) else [root]
    return {folder.name: sweep_status(folder) for folder in folders}


def load_results(results: PathLike) -> Results:
    """Read a results folder: the per-trial ``frame``, ``grid_table()``, ``budget_table()``,
    ``best_trial()``, and ``partial``/``missing``/``skipped`` for what is not there."""
    from mnistfc.report.aggregate import load_results as load

    return load(Path(results))


def _profile(
    executor: Executor | None, cluster: PathLike | None, cluster_overrides: Sequence[str]
) -> ClusterProfile:
    from mnistfc.launch import load_profile

    overrides = [*cluster_overrides, *([f"executor={executor}"] if executor else [])]
    return load_profile(None if cluster is None else Path(cluster), overrides)
