"""The report's sweep sections: the grid's tables, and the random search's budget curve.

Every number comes from the results frame (shards) through ``aggregate`` and ``budget``;
this module decides how they are shown and says, in the report, what each one means.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tabulate import tabulate

from mnistfc import plots
from mnistfc.aggregate import Results, best_trial, grid_table, usable
from mnistfc.atomic import atomic_write_text
from mnistfc.budget import COLUMNS, best_of_n_pool, best_of_n_repeats
from mnistfc.estimators import MIN_BAND_BUDGET
from mnistfc.plan import Plan
from mnistfc.render import Report, cell
from mnistfc.spec import SweepSpec

# The exercise's own random-search table (its notebook, MNIST): for each budget N, the best
# *test* accuracy of N fresh draws, mean and np.std (ddof 0) over its 3 repeats.
EXERCISE_BUDGETS = {10: (0.9752, 0.0064), 20: (0.9797, 0.0008), 50: (0.9820, 0.0003),
                    100: (0.9810, 0.0012)}  # fmt: skip
DIVERGED_RULE = (
    "A trial whose loss went non-finite (diverged) is still a draw of the search: it counts "
    "with its best finite epoch, or with accuracy 0 when it has none, so it is never selected "
    "unless every draw diverged. Failed trials are faults, not draws, and are left out."
)
SHIFT = (
    "The exercise's validation slice (the last 2,000 test images) is easier than its test "
    "slice (the first 8,000): a 1-nearest-neighbour classifier on 50 PCA components errs on "
    "{valid}% of the first and {test}% of the second (benchmarks/split_shift.py), so most of "
    "the gap between validation and test accuracy in these tables is this shift, not "
    'over-fitting to validation. `valid_split = "stratified"` draws two alike slices.'
)
SHIFT_ERRORS = {"valid": "1.45", "test": "3.11"}  # measured: README, Data
REPEATS_SPREAD = (
    "Spread: sample standard deviation over the searches (ddof 1, which estimates the spread "
    "of all searches of N; the exercise's np.std has ddof 0, narrower by sqrt((R-1)/R)); "
    "undefined with one search."
)
Z_95 = 1.96


def grid_section(report: Report, results: Results, spec: SweepSpec, out: Path, fmt: str) -> None:
    """The exercise's per-cell lines, validation accuracy with binomial standard errors and
    the cells within noise of the best marked, test error for inspection, heatmaps."""
    rows, cols = (name for name, _ in spec.axes)
    frame = results.frame
    report.add("h2", f"Grid: {rows} x {cols}")
    cells = usable(frame).sort_values([rows, cols])
    report.add("pre", "\n".join(_cell_line(r, rows, cols) for _, r in cells.iterrows()))
    best = best_trial(frame)
    valid = grid_table(frame, rows, cols, "valid_accuracy")
    n_valid = grid_table(frame, rows, cols, "n_valid").reindex_like(valid).astype(float)
    se = (valid * (1 - valid) / n_valid) ** 0.5  # NaN where the shards do not say n
    near = _within_noise(valid, se, best)
    marks = {key: "*" if key == _key(best, rows, cols) else "~" for key in near}
    title = "Validation accuracy ± binomial standard error (* best, ~ within noise of the best)"
    se_of = se.to_dict()  # {column: {row: se}}
    _table(report, valid, title, fmt, lambda r, c, v: _with_se(v, se_of[c][r], marks.get((r, c))))
    report.add("p", _noise_note(best, near, se))
    test = grid_table(frame, rows, cols, "test_error_pct")
    _table(report, test, "Test error rate [%] of every cell: for inspection only, not used to "
           "select", fmt, lambda r, c, v: format(v, ".2f"))  # fmt: skip
    for table, value, title, number in (
        (valid, "valid_accuracy", "Validation accuracy", ".4f"),
        (test, "test_error_pct", "Test error rate [%] (not used to select)", ".2f"),
    ):
        png = out / f"grid_{value}.png"
        plots.plot_grid_heatmap(table, f"{title} (* best, ~ within noise, by validation)", png,
                                number, marks)  # fmt: skip
        report.add("img", (png, title))
        report.files.append(png)
    if best is not None:
        sentence = (
            f"Best cell by validation accuracy: {rows} = {best[rows]}, {cols} = {best[cols]}: "
            f"validation {best['valid_accuracy']:.4f}, test {best['test_accuracy']:.4f} "
            f"(trial {best['trial_id']}"
            + (
                f"; tied with {best['tied'] - 1} other cell(s), test averaged over them)"
                if best["tied"] > 1
                else ")."
            )  # fmt: skip
        )
        report.add("p", sentence)
        report.text.append(sentence)


def random_section(report: Report, results: Results, plan: Plan, out: Path, fmt: str) -> None:
    """The best-of-N table (also ``budget.csv``), the budget curve, the exercise beside it."""
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
    shown = [c for c in COLUMNS if table[c].notna().any()]
    rows = [[cell(v) for v in row] for row in table[shown].itertuples(index=False)]
    report.add("table", (shown, rows))
    report.text.append(
        f"{title}:\n" + tabulate(rows, headers=shown, tablefmt=fmt, disable_numparse=True)
    )
    report.add("p", "Columns (also in budget.csv, empty where not estimable): " + "; ".join(
        f"`{c}`: {COLUMNS[c]}" for c in shown) + ".")  # fmt: skip
    if pool:
        note = _estimable_note(table, m)
        if note:
            report.add("p", note)
            report.text.append(note)
    else:
        report.add("p", REPEATS_SPREAD)
    report.add("p", DIVERGED_RULE)
    report.add("p", SHIFT.format(**SHIFT_ERRORS))
    _exercise_table(report, table, fmt)
    png = out / "budget_curve.png"
    exercise = EXERCISE_BUDGETS if spec.base.dataset == "mnist" else {}
    plots.plot_budget_curve(table, exercise, f"{title} (no bar or band where not estimable)", png)
    report.add("img", (png, "Best-of-N accuracy against budget N"))
    report.files.append(png)


def _estimable_note(table: pd.DataFrame, m: int) -> str:
    budgets = table["budget"].astype(int)
    no_spread = [str(n) for n, s in zip(budgets, table["valid_std"], strict=True) if math.isnan(s)]
    no_band = [str(n) for n, b in zip(budgets, table["valid_band_lo"], strict=True)
               if math.isnan(b) and str(n) not in no_spread]  # fmt: skip
    parts = []
    if no_spread:
        parts.append(f"Not estimable from a pool of {m}: the spread and the band for N = "
                     f"{', '.join(no_spread)} (the spread needs N <= M/4).")  # fmt: skip
    if no_band:
        parts.append(f"No band for N = {', '.join(no_band)}: the interval covers honestly "
                     f"only for {MIN_BAND_BUDGET} <= N <= M/8.")  # fmt: skip
    if parts:
        parts.append("The expected values are exact for every N; tests/test_estimators.py "
                     "simulates pools to draw these limits.")  # fmt: skip
    return " ".join(parts)


def _exercise_table(report: Report, table: pd.DataFrame, fmt: str) -> None:
    headers = ["N", "exercise: best test acc. (3 repeats, ddof 0)", "ours: select on test",
               "ours: test of best-by-validation", "optimism of selecting on test"]  # fmt: skip
    rows = []
    for row in table.to_dict("records"):
        n = int(row["budget"])
        ex = EXERCISE_BUDGETS.get(n)
        rows.append([
            str(n), f"{ex[0]:.4f} ± {ex[1]:.4f}" if ex else "", cell(row["select_on_test"]),
            _pm(float(row["test_expected"]), float(row["test_std"])), cell(row["optimism"]),
        ])  # fmt: skip
    report.add("p", "The exercise's rule selects the trial with the best test accuracy and "
                    "reports that accuracy; the honest value is the test accuracy of the trial "
                    "selected on validation. From the same trials:")  # fmt: skip
    report.add("table", (headers, rows))
    report.text.append(
        "Exercise side by side:\n"
        + tabulate(rows, headers=headers, tablefmt=fmt, disable_numparse=True)
    )


def _within_noise(valid: pd.DataFrame, se: pd.DataFrame, best: pd.Series | None) -> list[Any]:
    """Cells whose gap to the best is within 1.96 standard errors of a difference.

    Both accuracies are measured on the same images, so the errors are correlated and this
    unpaired test is conservative: it marks more cells, never fewer.
    """
    if best is None:
        return []
    top, top_se = float(best["valid_accuracy"]), 0.0
    keys = [(r, c) for r in valid.index for c in valid.columns if np.isfinite(valid.loc[r, c])]
    top_se = max((float(se.loc[k]) for k in keys if valid.loc[k] == top), default=0.0)
    near = []
    for key in keys:
        gap = top - float(valid.loc[key])
        noise = Z_95 * math.sqrt(np.nan_to_num(top_se) ** 2 + np.nan_to_num(se.loc[key]) ** 2)
        if gap <= noise:
            near.append(key)
    return near


def _noise_note(best: pd.Series | None, near: list[Any], se: pd.DataFrame) -> str:
    if best is None:
        return "No cell has a validation accuracy."
    known = se.to_numpy(dtype=float)
    typical = (f"; a validation accuracy here has a binomial standard error of about "
               f"{float(np.nanmedian(known)):.4f}" if np.isfinite(known).any() else "")  # fmt: skip
    return (
        f"{len(near)} cell(s) are within noise of the best (gap < 1.96 standard errors of a "
        f"difference{typical}): the grid does not single out one best cell among them."
    )


def _table(report: Report, table: pd.DataFrame, title: str, fmt: str, cell: Any) -> None:
    headers = [f"{table.index.name} \\ {table.columns.name}", *map(str, table.columns)]
    rows = [[str(r), *("" if not np.isfinite(table.loc[r, c]) else cell(r, c, table.loc[r, c])
                       for c in table.columns)] for r in table.index]  # fmt: skip
    report.add("p", f"{title} ({table.index.name} down, {table.columns.name} across):")
    report.add("table", (headers, rows))
    report.text.append(
        f"{title}:\n" + tabulate(rows, headers=headers, tablefmt=fmt, disable_numparse=True)
    )


def _with_se(value: float, se: float, mark: str | None) -> str:
    text = f"{value:.4f}" + (f" ±{se:.4f}" if np.isfinite(se) else "")
    return text + (f" {mark}" if mark else "")


def _key(best: pd.Series | None, rows: str, cols: str) -> Any:
    return None if best is None else (best[rows], best[cols])


def _cell_line(r: pd.Series, rows: str, cols: str) -> str:
    if (rows, cols) == ("dropout", "units"):
        return (f"{rows} = {r[rows]:.2f}, {r[cols]} neurons -> accuracy {r['valid_accuracy']:.3f}"
                f", error rate = {100 - 100 * r['valid_accuracy']:.1f}% (validation); "
                f"test accuracy {r['test_accuracy']:.3f}")  # fmt: skip
    return (f"{rows} = {r[rows]}, {cols} = {r[cols]} -> validation accuracy "
            f"{r['valid_accuracy']:.3f}, test accuracy {r['test_accuracy']:.3f}")  # fmt: skip


def _pm(value: float, spread: float) -> str:
    return cell(value) + (f" ± {spread:.4f}" if np.isfinite(spread) else "")
