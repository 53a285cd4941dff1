"""The Python API for notebooks: train one model, run a sweep, load its results.

Each call is what the matching CLI verb does, with the same validation and the same files
on disk, so a notebook and a batch job can share a results folder.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mnistfc.config import TrialConfig
from mnistfc.spec import SweepSpec

if TYPE_CHECKING:  # pandas, TensorFlow and submitit load only when a call needs them
    from mnistfc.aggregate import Results
    from mnistfc.plan import Submission
    from mnistfc.records import TrialResult

PathLike = str | os.PathLike[str]


def train_model(
    out: PathLike, *, data_dir: PathLike | None = None, verbose: int = 0, **settings: Any
) -> TrialResult:
    """Train one model (``mnistfc train``): its shard, history, weights and plots go to ``out``.

    ``settings`` are TrialConfig fields (``units=256, dropout=0.5, ...``); the defaults are
    the exercise's model. The result's ``model`` is the Keras model with the best
    validation epoch's weights.
    """
    from mnistfc.single import run_single

    return run_single(TrialConfig.from_dict(settings), out, data_dir, verbose=verbose).result


def run_sweep(
    spec: PathLike | SweepSpec,
    results: PathLike,
    *,
    executor: str | None = None,
    cluster: PathLike | None = None,
    overrides: Sequence[str] = (),
    cluster_overrides: Sequence[str] = (),
    data_dir: PathLike | None = None,
    pack: bool | None = None,
    rerun_failed: bool = False,
    wait: bool | None = None,
) -> Submission:
    """Run a sweep's unfinished trials (``mnistfc sweep``); return what was submitted.

    ``spec`` is a TOML path (with ``overrides`` such as ``"base.epochs=1"``) or a SweepSpec.
    ``executor`` ("local", "debug", "slurm") overrides the ``cluster`` profile's. Local and
    debug sweeps are waited for; SLURM ones are not unless ``wait=True``.
    """
    from mnistfc import sweep
    from mnistfc.launch.profile import load_profile
    from mnistfc.spec import load_spec

    loaded = spec if isinstance(spec, SweepSpec) else load_spec(Path(spec), list(overrides))
    profile_overrides = [*cluster_overrides, *([f"executor={executor}"] if executor else [])]
    profile = load_profile(None if cluster is None else Path(cluster), profile_overrides)
    plan = sweep.plan_submission(
        loaded,
        profile,
        results,
        data_dir=None if data_dir is None else str(data_dir),
        rerun_failed=rerun_failed,
        pack=pack,
    )
    submission, _failed = sweep.submit(plan, wait=wait)
    return submission


def load_results(results: PathLike) -> Results:
    """Read a results folder: the per-trial ``frame``, ``grid_table()``, ``budget_table()``,
    ``best_trial()``, and ``partial``/``missing``/``skipped`` for what is not there."""
    from mnistfc.aggregate import load_results as load

    return load(Path(results))
