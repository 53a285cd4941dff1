"""The report's random-search section: best-of-N tables (``budget.csv``), the gains between
budgets, the budget curve, and the exercise's published table decomposed (``exercise.csv``).

Every number comes from the results frame (shards) through ``budget``, ``estimators`` and
``exercise``; this module decides how they are shown and says what each one means.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mnistfc.atomic import atomic_write_text
from mnistfc.folder.plan import Plan
from mnistfc.report import estimators, exercise, plots
from mnistfc.report.aggregate import Results
from mnistfc.report.budget import COLUMNS, best_of_n_pool, best_of_n_repeats
from mnistfc.report.exercise import EXERCISE_BUDGETS
from mnistfc.report.render import Report, cell

DIVERGED_RULE = (
    "A trial whose loss went non-finite (diverged) is still a draw of the search: it counts "
    "with its best finite epoch, or with accuracy 0 when it has none, so it is never selected "
    "unless every draw diverged. Failed trials are faults, not draws, and are left out."
)
SHIFT = (
    "The exercise's validation slice (the last 2,000 test images) is easier than its test "
    "slice (the first 8,000): a 1-nearest-neighbour classifier on 50 PCA components errs on "
    "{valid}% of the first and {test}% of the second (benchmarks/split_shift.py). That "
    "suggests part of the gap between validation and test accuracy in these tables is the "
    "slices, not over-fitting to validation; the study report measures it with networks "
    '(the grid under both splits). `valid_split = "stratified"` draws two alike slices.'
)
SHIFT_ERRORS = {"valid": "1.45", "test": "3.11"}  # measured: README, Data
REPEATS_SPREAD = (
    "Spread: sample standard deviation over the searches (ddof 1, which estimates the spread "
    "of all searches of N; the exercise's np.std has ddof 0, narrower by sqrt((R-1)/R)); "
    "undefined with one search."
)


def random_section(report: Report, results: Results, plan: Plan, out: Path, fmt: str) -> None:
    """The best-of-N tables (also ``budget.csv``), the gains between budgets, the budget
    curve, and the exercise's published table decomposed against ours."""
    spec = plan.spec
    pool = spec.protocol == "pool"
    table = best_of_n_pool(results.frame, list(spec.budgets)) if pool else best_of_n_repeats(
        results.frame, plan)  # fmt: skip
    m = int(table["pool"].max()) if pool and len(table) else 0
    title = (f"Best of N from one pool of {m} trials" if pool else
             f"Best of N over {spec.repeats} independent searches per budget")  # fmt: skip
    report.add("h2", "Random search: " + title)
    csv_path = out / "budget.csv"
    atomic_write_text(csv_path, table.to_csv(index=False, na_rep=""))
    report.files.append(csv_path)
    for caption, columns in (
        ("Validation: the best of N", _VALID_VIEW),
        ("Test: the trial each search selects on validation, and what other rules report",
         _TEST_VIEW),
    ):  # fmt: skip
        headers, rows = _budget_view(table, columns)
        report.add("p", caption + ":")
        report.add_table(f"{title}, {caption.split(':')[0].lower()}", headers, rows, fmt)
    shown = [c for c in COLUMNS if table[c].notna().any()]
    report.add("p", "Columns of budget.csv (empty where not estimable): " + "; ".join(
        f"`{c}`: {COLUMNS[c]}" for c in shown) + ".")  # fmt: skip
    if pool:
        note = _estimable_note(table, m)
        if note:
            report.add("p", note)
            report.text.append(note)
        _gain_table(report, table, fmt)
    else:
        report.add("p", REPEATS_SPREAD)
    report.add("p", DIVERGED_RULE)
    report.add("p", SHIFT.format(**SHIFT_ERRORS))
    decomposed = None
    if spec.base.dataset == "mnist":
        decomposed = _exercise_section(report, results, list(spec.budgets), out, fmt)
    png = out / "budget_curve.png"
    published = EXERCISE_BUDGETS if spec.base.dataset == "mnist" else {}
    plots.plot_budget_curve(table, published, f"{title} (no bar or band where not estimable)",
                            png, exercise_rule=decomposed)  # fmt: skip
    report.add("img", (png, "Best-of-N accuracy against budget N"))
    report.files.append(png)


# The two views of budget.csv the report shows: (header, column or (low, high) columns).
_VALID_VIEW = (("N", "budget"), ("M", "pool"), ("expected best", "valid_expected"),
               ("95% interval", ("valid_band_lo", "valid_band_hi")),
               ("spread of one search (sd)", "valid_std"),
               ("with replacement (biased)", "valid_expected_with_replacement"))  # fmt: skip
_TEST_VIEW = (("N", "budget"), ("selected on valid.", "test_expected"),
              ("95% interval", ("test_band_lo", "test_band_hi")),
              ("spread of one search (sd)", "test_std"), ("select on test", "select_on_test"),
              ("optimism", "optimism"), ("exercise's rule", "exercise_expected"))  # fmt: skip


def _budget_view(table: pd.DataFrame, view: Any) -> tuple[list[str], list[list[str]]]:
    present = [(h, c) for h, c in view if table[c if isinstance(c, str) else c[0]].notna().any()]
    rows = []
    for row in table.to_dict("records"):
        line = []
        for _, column in present:
            if isinstance(column, str):
                value = row[column]
                line.append(str(int(value)) if column in ("budget", "pool") and
                            np.isfinite(value) else cell(value))  # fmt: skip
            else:
                low, high = row[column[0]], row[column[1]]
                line.append(f"{low:.4f} – {high:.4f}" if np.isfinite(low) else "")
        rows.append(line)
    return [h for h, _ in present], rows


def _gain_table(report: Report, table: pd.DataFrame, fmt: str) -> None:
    """What a larger search buys, in the selected trial's test accuracy: the difference of
    two rows of the budget table, with an interval where both rows have one."""
    rows = []
    known = table.dropna(subset=["test_expected"]).to_dict("records")
    for a, b in itertools.pairwise(known):
        gain = b["test_expected"] - a["test_expected"]
        if np.isfinite(a["test_band_lo"]) and np.isfinite(b["test_band_lo"]):
            low, high = estimators.gain_interval(
                (a["test_band_lo"], a["test_band_hi"]), (b["test_band_lo"], b["test_band_hi"])
            )
            interval = f"{100 * low:+.2f} to {100 * high:+.2f}"
        else:
            interval = "not estimable"
        rows.append([f"{int(a['budget'])} -> {int(b['budget'])}", f"{100 * gain:+.2f}", interval])
    if not rows:
        return
    headers = ["budgets", "gain in test accuracy [points]", "95% interval [points]"]
    report.add("p", "Is a smaller search enough? What the next budget gains in the test "
               "accuracy of the selected trial (exact from the pool; the interval holds "
               "whenever both budgets' intervals do: drawn only where both are):")  # fmt: skip
    report.add_table("Gains between budgets", headers, rows, fmt)


def _estimable_note(table: pd.DataFrame, m: int) -> str:
    hidden = [str(int(n)) for n, s in zip(table["budget"], table["valid_std"], strict=True)
              if math.isnan(s)]  # fmt: skip
    if not hidden:
        return ""
    return (
        f"No spread or interval for N = {', '.join(hidden)} from a pool of {m}: simulation "
        f"(tests/test_estimators.py) finds the spread within 5% of the truth and the "
        f"intervals covering at least 93% only for {estimators.MIN_BAND_BUDGET} <= N <= M/8 "
        f"and M >= {estimators.MIN_POOL}. The expected values are exact averages over "
        "subsets for every N."
    )


def _exercise_section(
    report: Report, results: Results, budgets: list[int], out: Path, fmt: str
) -> pd.DataFrame | None:
    """The decomposition's table and summary (also ``exercise.csv``); return the table."""
    table = exercise.decompose(results.frame, budgets)
    report.add("h2", "The exercise's published table, recomputed from this pool")
    if table is None or table.empty:
        report.add("p", "Not computable: these shards do not record the final epoch's scores "
                   "(schema version 1) or share no budget with the exercise's.")  # fmt: skip
        return None
    csv_path = out / "exercise.csv"
    atomic_write_text(csv_path, table.to_csv(index=False))
    report.files.append(csv_path)
    headers = ["N", "published", "ours", "+ select on test", "+ final epoch",
               "+ all 10,000", "= exercise's rule", "remaining", "3 repeats: 95% range",
               "sd of 3: published / simulated median, 95%; share <= published"]  # fmt: skip
    rows = [
        [str(int(r["budget"])), f"{r['published']:.4f}", f"{r['ours']:.4f}",
         *(f"{100 * r[k]:+.2f}" for k in ("selection", "epoch", "test_slice")),
         f"{r['exercise_rule']:.4f}", f"{100 * r['remaining']:+.2f}",
         f"{r['repeats_lo']:.4f} – {r['repeats_hi']:.4f}" + (" ✓" if r["within_noise"] else ""),
         f"{r['published_sd']:.4f} / {r['sd_median']:.4f}, {r['sd_hi']:.4f}; "
         f"{100 * r['sd_share_below']:.0f}%"]
        for r in table.to_dict("records")
    ]  # fmt: skip
    report.add("p", "The exercise reported the mean over 3 searches of N of the best *test* "
               "accuracy, each trial at its final epoch. Each column below changes one rule, "
               "starting from ours (differences in points of accuracy); the last columns "
               "are the range in which 95% of 3-search studies drawn from this pool land, "
               "and the spread among their 3 searches (ddof 0, as published).")  # fmt: skip
    report.add_table("Exercise decomposed", headers, rows, fmt)
    summary = exercise.summary(table)
    report.add("p", summary)
    report.text.append(summary)
    return table
