"""The report's grid section: per-cell lines, tables with noise marks, heatmaps.

Every number comes from the results frame (shards) through ``aggregate``; this module
decides how they are shown and says, in the report, what each one means.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mnistfc.report import estimators, plots
from mnistfc.report.aggregate import Results
from mnistfc.report.frame import best_trial, grid_table, usable
from mnistfc.report.render import Report
from mnistfc.trial.spec import SweepSpec

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
    ids = {(r[rows], r[cols]): r["trial_id"] for _, r in cells.iterrows()}
    paired = paired_near(results, ids, best)
    near = paired if paired is not None else _within_noise(valid, se, best)
    marks = {key: "*" if key == _key(best, rows, cols) else "~" for key in near}
    title = ("Validation accuracy ± binomial standard error (* best, ~ not told apart from "
             "the best)")  # fmt: skip
    se_of = se.to_dict()  # {column: {row: se}}
    _table(report, valid, title, fmt, lambda r, c, v: _with_se(v, se_of[c][r], marks.get((r, c))))
    report.add("p", _noise_note(best, near, se, paired=paired is not None))
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


def paired_near(results: Results, ids: dict[Any, str], best: pd.Series | None) -> list[Any] | None:
    """Cells the best cannot be told apart from on the same validation images: McNemar's
    exact test at 5% (None when a shard keeps no per-image labels: schema version 1)."""
    if best is None:
        return []
    top = results.correct(str(best["trial_id"]))
    if top is None:
        return None
    near = []
    for key, trial_id in ids.items():
        hits = results.correct(trial_id)
        if hits is None or len(hits) != len(top):
            return None
        if estimators.paired_p_value(top, hits) >= 0.05:
            near.append(key)
    return near


def _within_noise(valid: pd.DataFrame, se: pd.DataFrame, best: pd.Series | None) -> list[Any]:
    """Cells whose gap to the best is within 1.96 standard errors of a difference.

    For shards without per-image labels. Both accuracies are measured on the same images,
    so the errors are correlated and this unpaired test over-counts: it marks more cells
    than the paired one would.
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


def _noise_note(best: pd.Series | None, near: list[Any], se: pd.DataFrame, paired: bool) -> str:
    if best is None:
        return "No cell has a validation accuracy."
    known = se.to_numpy(dtype=float)
    typical = (f"; a validation accuracy here has a binomial standard error of about "
               f"{float(np.nanmedian(known)):.4f}" if np.isfinite(known).any() else "")  # fmt: skip
    test = (
        "McNemar's exact test on the same validation images, p >= 0.05: a paired comparison"
        if paired
        else "gap < 1.96 standard errors of a difference, unpaired: these shards keep no "
        "per-image labels, and an unpaired test over-counts"
    )
    return (
        f"{len(near)} cell(s), the best included, cannot be told apart from the best ({test}"
        f"{typical}): the grid does not single out one best cell among them."
    )


def _table(report: Report, table: pd.DataFrame, title: str, fmt: str, cell: Any) -> None:
    headers = [f"{table.index.name} \\ {table.columns.name}", *map(str, table.columns)]
    rows = [[str(r), *("" if not np.isfinite(table.loc[r, c]) else cell(r, c, table.loc[r, c])
                       for c in table.columns)] for r in table.index]  # fmt: skip
    report.add("p", f"{title} ({table.index.name} down, {table.columns.name} across):")
    report.add_table(title, headers, rows, fmt)


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
