"""Turn a results folder's shards into tables: per-trial rows, the grid, best-of-N budgets.

Only shards are read, through ``records`` (plus the sweep plan, for what was expected and
the random-search tags), so every number here traces back to a JSON file on disk. Models
are selected on validation accuracy; test accuracy is reported for the selected trials only.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mnistfc.errors import MnistfcError, ShardError
from mnistfc.folder import labels
from mnistfc.folder.plan import Plan, has_plan, load_plan
from mnistfc.folder.shards import list_shards, read_result, shard_dir
from mnistfc.report.budget import best_of_n_pool, best_of_n_repeats
from mnistfc.report.frame import best_trial, grid_table

log = logging.getLogger(__name__)

CONFIG_COLUMNS = ("units", "dropout", "activation", "learning_rate", "batch_size", "epochs", "seed")


@dataclass
class Results:
    """Every readable shard of a folder as one row, and what could not be used."""

    frame: pd.DataFrame
    skipped: dict[str, str] = field(default_factory=dict)
    plan: Plan | None = None
    predictions: dict[str, dict[str, Any]] = field(default_factory=dict)  # by trial id

    def correct(self, trial_id: str, split: str = "valid") -> np.ndarray | None:
        """Return which images of ``split`` a trial's selected (best-epoch) model got right
        (None: its shard keeps no per-image labels, as before schema version 2)."""
        predictions = self.predictions.get(trial_id)
        return None if predictions is None else labels.correct(predictions, "best", split)

    @property
    def missing(self) -> list[str]:
        """Return planned trial ids with no usable shard."""
        if not self.plan:
            return []
        have = set(self.frame["trial_id"]) if len(self.frame) else set()
        return [t for t in self.plan.trial_ids if t not in have]

    @property
    def partial(self) -> bool:
        """Return whether the sweep is unfinished (planned trials without a shard)."""
        return bool(self.missing)

    def best_trial(self) -> pd.Series | None:
        """Return the row of the trial with the best validation accuracy (None: no results)."""
        return best_trial(self.frame)

    def grid_table(self, value: str = "valid_accuracy") -> pd.DataFrame | None:
        """Return a two-axis grid's table of one column (None: not such a grid)."""
        if self.plan is None or self.plan.spec.kind != "grid" or len(self.plan.spec.axes) != 2:
            return None
        rows, cols = (name for name, _ in self.plan.spec.axes)
        return grid_table(self.frame, rows, cols, value)

    def budget_table(self) -> pd.DataFrame | None:
        """Return a random search's best-of-N table, by its protocol (None: not one)."""
        if self.plan is None or self.plan.spec.kind != "random":
            return None
        if self.plan.spec.protocol == "repeats":
            return best_of_n_repeats(self.frame, self.plan)
        return best_of_n_pool(self.frame, list(self.plan.spec.budgets))


def load_results(results_dir: str | os.PathLike[str]) -> Results:
    """Read every shard into a DataFrame; invalid shards are named in ``skipped``, not fatal."""
    rows, skipped, predictions = [], {}, {}
    for path in list_shards(results_dir):
        try:
            result = read_result(path)
            rows.append(result.to_row())
            if result.predictions is not None:
                predictions[result.trial_id] = result.predictions
        except ShardError as exc:
            skipped[path.name] = str(exc).splitlines()[0]
            log.warning("skipping %s: %s", path, skipped[path.name])
    frame = pd.DataFrame(rows)
    if frame.empty:
        frame = pd.DataFrame(columns=["trial_id", "status", *CONFIG_COLUMNS])
    plan = load_plan(results_dir) if has_plan(results_dir) else None
    if plan is not None:
        # A table is about one sweep: a shard copied in from elsewhere must not join it.
        planned = set(plan.trial_ids)
        for trial_id in sorted(set(frame["trial_id"]) - planned):
            skipped[f"{trial_id}.json"] = "not a trial of this folder's sweep plan"
        frame = frame[frame["trial_id"].isin(planned)]
    return Results(
        frame=frame.sort_values("trial_id", ignore_index=True),
        skipped=skipped,
        plan=plan,
        predictions=predictions,
    )


def require_trials(results: Results, where: str) -> None:
    """Raise a clear error when a folder has nothing to aggregate."""
    if results.frame.empty:
        skipped = f" ({len(results.skipped)} invalid shard(s) skipped)" if results.skipped else ""
        raise MnistfcError(f"{where}: no readable shards in {shard_dir(where)}{skipped}")
