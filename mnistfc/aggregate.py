"""Turn a results folder's shards into tables: per-trial rows, the grid, best-of-N budgets.

Only shards are read, through ``records`` (plus the sweep plan, for what was expected and
the random-search tags), so every number here traces back to a JSON file on disk. Models
are selected on validation accuracy; test accuracy is reported for the selected trials only.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mnistfc.errors import MnistfcError, ShardError
from mnistfc.plan import Plan, has_plan, load_plan
from mnistfc.records import Status, list_shards, read_result

log = logging.getLogger(__name__)

CONFIG_COLUMNS = ("units", "dropout", "activation", "learning_rate", "batch_size", "epochs", "seed")


@dataclass
class Results:
    """Every readable shard of a folder as one row, and what could not be used."""

    frame: pd.DataFrame
    skipped: dict[str, str] = field(default_factory=dict)
    plan: Plan | None = None

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
    rows, skipped = [], {}
    for path in list_shards(results_dir):
        try:
            rows.append(read_result(path).to_row())
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
        frame=frame.sort_values("trial_id", ignore_index=True), skipped=skipped, plan=plan
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


def best_trial(frame: pd.DataFrame) -> pd.Series | None:
    """Return the trial with the highest validation accuracy (ties: the first by id)."""
    cells = usable(frame).dropna(subset=["valid_accuracy"])
    if cells.empty:
        return None
    return cells.sort_values(["valid_accuracy", "trial_id"], ascending=[False, True]).iloc[0]


def best_of_n_repeats(frame: pd.DataFrame, plan: Plan) -> pd.DataFrame:
    """The exercise's protocol: for each budget N, best-of-N over each repeat's own N draws.

    Returns one row per budget: mean and standard deviation over repeats of the selected
    trial's validation accuracy and of its test accuracy, and how many repeats were complete.
    """
    scores = _scores(frame)
    records = []
    for budget in plan.spec.budgets:
        valid, test, complete = [], [], 0
        for repeat in range(plan.spec.repeats):
            ids = plan.tagged(repeat=repeat, budget=budget)
            found = scores.reindex(ids).dropna(subset=["valid"])
            if len(found) < len(ids):
                continue  # a repeat is only counted once all its N draws have a result
            complete += 1
            pick = found.sort_values(["valid", "trial_id"], ascending=[False, True]).iloc[0]
            valid.append(pick["valid"])
            test.append(pick["test"])
        records.append(_summary(budget, valid, test, complete))
    return pd.DataFrame(records)


def best_of_n_pool(
    frame: pd.DataFrame, budgets: list[int], n_boot: int = 1000, seed: int = 0
) -> pd.DataFrame:
    """Expected best-of-N from one pool of M trials (Dodge et al. 2019, "Show Your Work").

    With validation scores sorted v(1) <= ... <= v(M): with replacement
    E[max_N] = sum_i v(i) [(i/M)^N - ((i-1)/M)^N]; without replacement (N <= M, unbiased)
    E[max_N] = sum_i v(i) C(i-1, N-1) / C(M, N). The test accuracy of the selected trial is
    the same weighted sum over the test scores in validation order. Bands: 2.5 and 97.5
    percentiles of the with-replacement estimate over bootstrap resamples of the pool.
    """
    scores = _scores(frame).dropna(subset=["valid"]).sort_values(["valid", "trial_id"])
    valid, test = scores["valid"].to_numpy(), scores["test"].to_numpy()
    m = len(valid)
    # Resample the pool once and sort each resample once; every budget reuses them.
    rng = np.random.default_rng(seed)
    boot = rng.integers(0, m, size=(n_boot, m)) if m else np.zeros((0, 0), dtype=int)
    order = np.argsort(valid[boot], axis=1, kind="stable")
    boot_valid = np.take_along_axis(valid[boot], order, axis=1)
    boot_test = np.take_along_axis(test[boot], order, axis=1)
    records = []
    for n in budgets:
        row: dict[str, Any] = {"budget": n, "pool": m}
        if m == 0:
            records.append(row)
            continue
        w = _weights_with_replacement(m, n)
        row["valid_mean"] = float(w @ valid)
        row["test_mean"] = float(w @ test)
        if n <= m:
            u = _weights_without_replacement(m, n)
            row["valid_unbiased"] = float(u @ valid)
            row["test_unbiased"] = float(u @ test)
        row["valid_lo"], row["valid_hi"] = np.percentile(boot_valid @ w, [2.5, 97.5]).tolist()
        row["test_lo"], row["test_hi"] = np.percentile(boot_test @ w, [2.5, 97.5]).tolist()
        records.append(row)
    return pd.DataFrame(records)


def _weights_with_replacement(m: int, n: int) -> np.ndarray:
    i = np.arange(1, m + 1, dtype=np.float64)
    return (i / m) ** n - ((i - 1) / m) ** n


def _weights_without_replacement(m: int, n: int) -> np.ndarray:
    # C(i-1, N-1) / C(M, N), in logs so that M = 1,000 and N = 200 do not overflow.
    i = np.arange(1, m + 1)
    log_c = _log_comb(i - 1, n - 1) - _log_comb(np.array([m]), n)[0]
    weights = np.where(i >= n, np.exp(log_c), 0.0)
    return weights


def _log_comb(n: np.ndarray, k: int) -> np.ndarray:
    from math import lgamma

    return np.array(
        [lgamma(x + 1) - lgamma(k + 1) - lgamma(x - k + 1) if x >= k else -np.inf for x in n]
    )


def _scores(frame: pd.DataFrame) -> pd.DataFrame:
    # A diverged trial without any finite epoch was still drawn: it scores 0, never selected
    # unless every draw diverged. Failed trials are faults, not draws, and are left out.
    cells = usable(frame).set_index("trial_id")
    diverged = cells["status"] == Status.DIVERGED.value
    valid = cells["valid_accuracy"].mask(diverged, cells["valid_accuracy"].fillna(0.0))
    test = cells["test_accuracy"].mask(diverged, cells["test_accuracy"].fillna(0.0))
    index = cells.index.rename(None)
    return pd.DataFrame(
        {"valid": valid.to_numpy(), "test": test.to_numpy(), "trial_id": index}, index=index
    )


def _summary(budget: int, valid: list[float], test: list[float], complete: int) -> dict[str, Any]:
    def stats(values: list[float]) -> tuple[float, float]:
        if not values:
            return math.nan, math.nan
        return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0

    (valid_mean, valid_std), (test_mean, test_std) = stats(valid), stats(test)
    return {
        "budget": budget,
        "repeats": complete,
        "valid_mean": valid_mean,
        "valid_std": valid_std,
        "test_mean": test_mean,
        "test_std": test_std,
    }


def require_trials(results: Results, where: str) -> None:
    """Raise a clear error when a folder has nothing to aggregate."""
    if results.frame.empty:
        skipped = f" ({len(results.skipped)} invalid shard(s) skipped)" if results.skipped else ""
        raise MnistfcError(f"{where}: no readable shards in {where}/shards{skipped}")
