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
from mnistfc.plan import Plan, has_plan, load_plan
from mnistfc.records import Status, labels, list_shards, read_result

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
        from mnistfc.budget import best_of_n_pool, best_of_n_repeats

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


def usable(frame: pd.DataFrame) -> pd.DataFrame:
    """Return the trials that are results: completed, or diverged (failed ones are faults)."""
    return frame[frame["status"].map(lambda s: Status(s).is_result)]


def grid_table(frame: pd.DataFrame, rows: str, cols: str, value: str) -> pd.DataFrame:
    """Pivot one metric over two grid axes (rows x columns), NaN where a cell is missing."""
    cells = usable(frame)
    return (
        cells.pivot_table(index=rows, columns=cols, values=value, aggfunc="first")
        .sort_index(axis=0)
        .sort_index(axis=1)
    )


def ranked(frame: pd.DataFrame) -> pd.DataFrame:
    """Return the usable trials with a validation accuracy, best first (ties: first by id):
    the one order every selection (best trial, the confirm stage's top) reads."""
    cells = usable(frame).dropna(subset=["valid_accuracy"])
    return cells.sort_values(["valid_accuracy", "trial_id"], ascending=[False, True])


def best_trial(frame: pd.DataFrame) -> pd.Series | None:
    """Return the best trial by validation accuracy, with the tie rule applied.

    Trials tied on validation are one choice: the returned row is the first by id, its
    ``test_accuracy`` the mean over the tied trials and ``tied`` how many there were.
    """
    ordered = ranked(frame)
    if ordered.empty:
        return None
    tied = ordered[ordered["valid_accuracy"] == ordered["valid_accuracy"].iloc[0]]
    best = tied.iloc[0].copy()
    best["test_accuracy"] = float(tied["test_accuracy"].mean())
    best["tied"] = len(tied)
    return best


def scores(frame: pd.DataFrame) -> pd.DataFrame:
    """Return each drawn trial's validation and test accuracy, at its best-validation epoch
    and at its final epoch (``valid_last``, ``test_last``), indexed by trial id.

    A diverged trial without a finite epoch was still drawn: it scores 0 there, so it is
    never selected unless every draw diverged. Failed trials are faults, not draws: left out.
    """
    cells = usable(frame).set_index("trial_id")
    diverged = cells["status"] == Status.DIVERGED.value
    columns = {"valid": "valid_accuracy", "test": "test_accuracy",
               "valid_last": "valid_accuracy_last", "test_last": "test_accuracy_last"}  # fmt: skip
    out = {}
    for name, column in columns.items():
        # Shards before schema version 2 lack the final epoch: NaN, and tables say so.
        values = cells[column] if column in cells else pd.Series(float("nan"), cells.index)
        out[name] = values.mask(diverged, values.fillna(0.0)).to_numpy(dtype=float)
    index = cells.index.rename(None)
    return pd.DataFrame({**out, "trial_id": index}, index=index)


def require_trials(results: Results, where: str) -> None:
    """Raise a clear error when a folder has nothing to aggregate."""
    if results.frame.empty:
        skipped = f" ({len(results.skipped)} invalid shard(s) skipped)" if results.skipped else ""
        raise MnistfcError(f"{where}: no readable shards in {where}/shards{skipped}")
