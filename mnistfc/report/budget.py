"""The random search's headline table: best-of-N accuracy for every budget N.

Two protocols give the same columns (``COLUMNS``; ``report/budget.csv``), so they can be
overlaid. ``pool`` estimates every budget from one pool of M trials, exactly
(``estimators``); ``repeats`` is the exercise's: for each budget, R independent searches of
N fresh draws, summarised by their mean and sample standard deviation.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from mnistfc.folder.plan import Plan
from mnistfc.report import estimators
from mnistfc.report.frame import scores

# Every column of budget.csv and what it means (the report prints these sentences).
COLUMNS = {
    "budget": "N, trials per search",
    "pool": "trials the row is computed from (pool: M; repeats: R x N)",
    "repeats": "complete independent searches of N (repeats protocol; empty for a pool)",
    "valid_expected": "expected best validation accuracy of a search of N (pool: exact "
    "average over all N-subsets, unbiased; repeats: mean over the R searches)",
    "valid_expected_with_replacement": "Dodge et al.'s with-replacement form of the same, "
    "biased low (pool only)",
    "valid_std": "spread of one search's outcome: the standard deviation of that best from "
    "one search of N to the next (pool: corrected for its known bias, within 5% in "
    "simulation where shown; repeats: sample std, ddof 1); empty where a pool of M cannot "
    "estimate it",
    "valid_band_lo": "95% interval of valid_expected itself, low end (pool only: jackknife, "
    "widened on the side of its skew; empty where its simulated coverage is below 93%)",
    "valid_band_hi": "95% interval of valid_expected itself, high end",
    "test_expected": "expected test accuracy of the trial each search selects on validation "
    "(trials tied on validation averaged): the study's headline",
    "test_std": "spread of one search's outcome on test (as valid_std)",
    "test_band_lo": "95% interval of test_expected itself, low end (as valid_band_lo)",
    "test_band_hi": "95% interval of test_expected itself, high end",
    "select_on_test": "expected best *test* accuracy of a search of N, each trial at its "
    "best-validation epoch: selecting on the test set flatters",
    "optimism": "select_on_test - test_expected: how much selecting on test flatters",
    "exercise_expected": "the exercise's rule as written: each trial's final-epoch weights, "
    "the best test accuracy among N (pool: exact average over N-subsets; repeats: mean over "
    "the R searches); empty where shards lack the final epoch (schema version 1)",
}


def best_of_n_pool(frame: pd.DataFrame, budgets: list[int]) -> pd.DataFrame:
    """Expected best-of-N for every budget from one pool (see ``estimators``).

    Spreads and bands are left empty (NaN) where ``estimators`` says a pool of this size
    cannot estimate them; the expectations are unbiased for every N <= M.
    """
    drawn = scores(frame).dropna(subset=["valid"])
    valid, test = drawn["valid"].to_numpy(), drawn["test"].to_numpy()
    last = drawn["test_last"].to_numpy()
    m = len(valid)
    records = []
    for n in budgets:
        row: dict[str, Any] = {column: math.nan for column in COLUMNS}
        row.update(budget=n, pool=m)
        if 1 <= n <= m:
            row["valid_expected"] = estimators.expected_max(valid, n)
            row["valid_expected_with_replacement"] = estimators.expected_max_with_replacement(
                valid, n
            )
            row["test_expected"], test_std = estimators.selected_test(valid, test, n)
            row["select_on_test"] = estimators.select_on_test(test, n)
            row["optimism"] = row["select_on_test"] - row["test_expected"]
            if not np.isnan(last).any():
                row["exercise_expected"] = estimators.expected_max(last, n)
            if estimators.estimable(n, m):
                row["valid_std"] = estimators.max_spread(valid, n)
                row["test_std"] = test_std
                row["valid_band_lo"], row["valid_band_hi"] = estimators.band(valid, n)
                row["test_band_lo"], row["test_band_hi"] = estimators.selected_test_band(
                    valid, test, n
                )
        records.append(row)
    return pd.DataFrame(records, columns=list(COLUMNS))


def best_of_n_repeats(frame: pd.DataFrame, plan: Plan) -> pd.DataFrame:
    """The exercise's protocol: for each budget N, the best of each repeat's own N draws.

    A repeat counts once all its N draws have a result. The spread is the sample standard
    deviation (ddof 1: R searches estimate the spread of all searches; the exercise's
    ``np.std`` has ddof 0, 1.22 times narrower with 3 repeats); undefined with one repeat.
    """
    drawn = scores(frame)
    records = []
    for n in plan.spec.budgets:
        valid, test, on_test, last = [], [], [], []
        for repeat in range(plan.spec.repeats):
            ids = plan.tagged(repeat=repeat, budget=n)
            found = drawn.reindex(ids).dropna(subset=["valid"])
            if len(found) < len(ids) or found.empty:
                continue
            best = found["valid"].max()
            valid.append(best)
            test.append(float(found.loc[found["valid"] == best, "test"].mean()))  # tie rule
            on_test.append(float(found["test"].max()))
            last.append(float(found["test_last"].max(skipna=False)))  # NaN: a shard lacks it
        row: dict[str, Any] = {column: math.nan for column in COLUMNS}
        row.update(budget=n, pool=len(valid) * n, repeats=len(valid))
        if valid:
            row.update(
                valid_expected=float(np.mean(valid)),
                valid_std=_sample_std(valid),
                test_expected=float(np.mean(test)),
                test_std=_sample_std(test),
                select_on_test=float(np.mean(on_test)),
                exercise_expected=float(np.mean(last)),
            )
            row["optimism"] = row["select_on_test"] - row["test_expected"]
        records.append(row)
    return pd.DataFrame(records, columns=list(COLUMNS))


def _sample_std(values: list[float]) -> float:
    return float(np.std(values, ddof=1)) if len(values) > 1 else math.nan
