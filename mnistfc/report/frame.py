"""Selections on the per-trial results frame (one row per shard): which rows are results,
the one ranking every selection reads, the best trial, a grid's table, and what each drawn
trial scored. Pure functions of the frame, below both the loader and the estimators."""

from __future__ import annotations

import pandas as pd

from mnistfc.folder.schema import Status


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
