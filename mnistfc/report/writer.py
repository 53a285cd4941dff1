"""Write a results folder's tables, plots and report (rendered by ``render``)."""

from __future__ import annotations

import datetime
import os
from pathlib import Path

import numpy as np
import pandas as pd

from mnistfc.atomic import atomic_write_text
from mnistfc.errors import MnistfcError
from mnistfc.folder.plan import has_plan, load_plan
from mnistfc.folder.schema import Status
from mnistfc.folder.shards import list_shards, read_result
from mnistfc.folder.study_record import TRAIN_PART
from mnistfc.report.aggregate import Results, load_results, require_trials
from mnistfc.report.budget_section import random_section
from mnistfc.report.confirm_section import confirm_section
from mnistfc.report.frame import usable
from mnistfc.report.grid_section import grid_section
from mnistfc.report.render import Report, cell, performance_table, render

SELECTION_RULE = (
    "Models are selected on validation accuracy (by default the last 2,000 test images); the "
    "result of a selection is the test accuracy (the other 8,000) of the selected model. Where "
    "a table shows test accuracy for every trial (the grid's test-error table, results.csv), "
    "it is for inspection and is never used to choose. The exercise selected on test "
    "accuracy, which leaks the test set into the choice; the random-search section shows by "
    "how much that flatters."
)


_SINGLE_FIGURES = (
    ("accuracy.png", "Accuracy per epoch"),
    ("loss.png", "Loss per epoch"),
    ("confusion.png", "Test confusion matrix"),
    ("misclassified.png", "Misclassified test images"),
)


def write_report(
    results_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str] | None = None,
    table_format: str = "orgtbl",
) -> Report:
    """Aggregate a results folder into results.csv, tables, PNGs, report.md and report.html."""
    results = load_results(results_dir)
    require_trials(results, str(results_dir))
    out = Path(out_dir) if out_dir is not None else Path(results_dir) / "report"
    spec = results.plan.spec if results.plan else None
    report = Report(title=f"mnistfc report: {spec.name if spec else Path(results_dir).name}")
    csv_path = out / "results.csv"
    atomic_write_text(csv_path, results.frame.to_csv(index=False))
    report.files.append(csv_path)
    _overview(report, results, results_dir)
    if spec is not None and spec.kind == "grid" and len(spec.axes) == 2:
        grid_section(report, results, spec, out, table_format)
    elif spec is not None and spec.kind == "random" and results.plan is not None:
        random_section(report, results, results.plan, out, table_format)
    _best_section(report, results, table_format)
    report.files += render(report, out)
    return report


def write_report_job(results_dir: str, sweeps: list[str], table_format: str = "orgtbl") -> str:
    """The study report as a cluster job, after every part's jobs; return the HTML's path."""
    write_study_report(results_dir, sweeps, table_format)
    return str(Path(results_dir) / "report.html")


def write_study_report(
    results_dir: str | os.PathLike[str], sweeps: list[str], table_format: str = "orgtbl"
) -> Report:
    """Write one report for a whole study: the single model, then each sweep's report."""

    root = Path(results_dir)
    report = Report(title="mnistfc study: the exercise's single model, grid and random search")
    train = root / TRAIN_PART
    completed = []
    for path in list_shards(train):
        result = read_result(path)
        if result.status is Status.COMPLETED:
            completed.append(result)
    report.add("h2", "Single model")
    if completed:
        result = completed[0]
        config = ", ".join(f"{k}={v}" for k, v in result.config.to_dict().items())
        table = performance_table(result.metrics or {}, table_format)
        report.add("p", f"Config: {config}; best epoch {result.best_epoch}.")
        report.add("pre", table)
        report.text.append(f"Single model:\n{table}")
        for name, caption in _SINGLE_FIGURES:
            if (train / name).exists():
                report.add("img", (train / name, caption))
    else:
        report.add("p", f"No completed single-model shard in {train}.")
    for name in sweeps:
        try:
            part = write_report(root / name, table_format=table_format)
        except MnistfcError as exc:  # a part with nothing to show must not hide the others
            report.add("h2", f"{name}: no results")
            report.add("p", str(exc))
            report.text.append(f"[{name}] no results: {exc}")
            continue
        for kind, content in part.blocks:
            report.add(kind, f"{name}: {content}" if kind == "h2" else content)
        report.text += [f"[{name}] {t}" for t in part.text]
        report.files += part.files
    _split_shift_section(report, root, sweeps, table_format)
    confirm_section(report, root, sweeps, table_format)
    report.files += render(report, root)
    return report


def _split_shift_section(report: Report, root: Path, sweeps: list[str], fmt: str) -> None:
    """The grid under both splits: how much of validation's lead over test is the slices."""
    rows = []
    for name in sweeps:
        if not has_plan(root / name) or load_plan(root / name).spec.kind != "grid":
            continue
        cells = usable(load_results(root / name).frame).dropna(subset=["valid_accuracy"])
        if cells.empty:
            continue
        gap = cells["valid_accuracy"] - cells["test_accuracy"]
        split = "/".join(sorted(set(cells["valid_split"])))
        rows.append([name, split, str(len(cells)), cell(cells["valid_accuracy"].mean()),
                     cell(cells["test_accuracy"].mean()), f"{100 * gap.mean():+.2f}",
                     f"{100 * gap.std(ddof=1) / np.sqrt(len(gap)):.2f}" if len(gap) > 1
                     else ""])  # fmt: skip
    if len(rows) < 2:
        return
    headers = ["part", "valid split", "cells", "mean valid", "mean test",
               "valid - test [points]", "its standard error"]  # fmt: skip
    report.add("h2", "The split shift, measured with networks")
    report.add("p", "The same grid trained and scored under both splits. Under the exercise's "
               "split validation is the last 2,000 test images and test the first 8,000; "
               "stratified draws both alike. The difference between the two gaps is what "
               "the choice of slices, not over-fitting to validation, adds.")  # fmt: skip
    report.add_table("Split shift", headers, rows, fmt)


def _overview(report: Report, results: Results, results_dir: str | os.PathLike[str]) -> None:
    frame = results.frame
    spec = results.plan.spec if results.plan else None
    counts = frame["status"].value_counts().to_dict()
    planned = len(results.plan.trials) if results.plan else len(frame)
    lines = [
        f"Results folder `{Path(results_dir).resolve()}`; spec `{spec.name if spec else '-'}` "
        f"({spec.kind if spec else 'trials'}"
        + (f", protocol {spec.protocol}" if spec and spec.kind == "random" else "")
        + f", spec hash {spec.spec_hash if spec else '-'}).",
        f"Trials: {planned} planned, {counts.get('completed', 0)} completed, "
        f"{counts.get('diverged', 0)} diverged, {counts.get('failed', 0)} failed, "
        f"{len(results.missing)} missing, {len(results.skipped)} invalid shard(s) skipped.",
        f"Compute: {frame['total_s'].sum() / 3600:.2f} h of trial time (sum over shards); "
        f"wall time {_wall_s(results_dir, frame) / 3600:.2f} h (first trial start to last end).",
        _provenance_line(frame),
        SELECTION_RULE,
    ]
    report.add("h2", "What was run")
    for line in lines:
        report.add("p", line)
    mixed = _mixed(frame)
    if mixed:
        report.add("p", f"**MIXED**: these shards were not all made alike ({mixed}); "
                        "compare their numbers with care (per trial: results.csv).")  # fmt: skip
        report.text.append(f"MIXED: {mixed}")
    if results.partial:
        report.add("p", f"**PARTIAL**: {len(results.missing)} planned trial(s) have no shard yet; "
                        "the numbers below use the trials that finished.")  # fmt: skip
    for name, problem in results.skipped.items():
        report.add("p", f"Skipped invalid shard `{name}`: {problem}")
    failed = frame[frame["status"] == Status.FAILED.value]
    if len(failed):
        report.add(
            "p", f"Failed trials (tracebacks in their shards): {', '.join(failed['trial_id'])}"
        )
    report.text += [line for line in lines[:4]]


# Provenance columns (results.csv) a study's numbers must agree on to be compared.
_PROVENANCE = (("mnistfc", "mnistfc versions"), ("engine", "engines"),
               ("tensorflow", "TensorFlow versions"), ("image_digest", "images"))  # fmt: skip


def _provenance_line(frame: pd.DataFrame) -> str:
    def values(column: str) -> str:
        found = sorted({v for v in frame.get(column, pd.Series(dtype=str)) if v}) or ["unknown"]
        return "/".join(found)

    return (
        f"Made by mnistfc {values('mnistfc')} (commit {values('git_commit')}), engine "
        f"{values('engine')}, TensorFlow {values('tensorflow')}; image {values('image')} "
        f"({values('image_digest')})."
    )


def _mixed(frame: pd.DataFrame) -> str:
    parts = []
    for column, label in _PROVENANCE:
        found = sorted({v for v in frame.get(column, pd.Series(dtype=str)) if v})
        if len(found) > 1:
            parts.append(f"{len(found)} {label}: {', '.join(found)}")
    return "; ".join(parts)


def _best_section(report: Report, results: Results, fmt: str, top: int = 5) -> None:
    ranked = usable(results.frame).dropna(subset=["valid_accuracy"])
    ranked = ranked.sort_values(["valid_accuracy", "trial_id"], ascending=[False, True]).head(top)
    # Short headers, so the table fits a 1,280-px page; results.csv has the full names.
    columns = {"trial_id": "trial", "units": "units", "dropout": "dropout",
               "activation": "activation", "learning_rate": "lr", "batch_size": "batch",
               "epochs": "epochs", "valid_accuracy": "valid", "test_accuracy": "test",
               "best_epoch": "best epoch", "test_accuracy_last": "test, final epoch"}  # fmt: skip
    columns = {k: v for k, v in columns.items() if k in ranked}
    rows = [[cell(v) for v in row] for row in ranked[list(columns)].itertuples(index=False)]
    report.add("h2", f"Best {len(rows)} configurations (by validation accuracy)")
    report.add_table("Best configurations", list(columns.values()), rows, fmt)


def _pivot_rows(table: pd.DataFrame, number: str) -> tuple[list[str], list[list[str]]]:
    headers = [f"{table.index.name} \\ {table.columns.name}", *map(str, table.columns)]
    rows = [
        [str(index), *("" if np.isnan(v) else format(v, number) for v in row)]
        for index, row in zip(table.index, table.to_numpy(dtype=float), strict=True)
    ]
    return headers, rows


def _wall_s(results_dir: str | os.PathLike[str], frame: pd.DataFrame) -> float:
    """First start to last end, from the shards' started_at/finished_at (UTC).

    Shards written before those keys existed fall back to the file's modification time,
    which is when the trial (or its pack) ended, minus its elapsed time.
    """
    ends = {p.stem: p.stat().st_mtime for p in list_shards(results_dir)}
    starts, stops = [], []
    columns = [frame.get(c, pd.Series([None] * len(frame), dtype=object)) for c in
               ("trial_id", "elapsed_s", "started_at", "finished_at")]  # fmt: skip
    for trial_id, elapsed_s, started_at, finished_at in zip(*columns, strict=True):
        started, finished = _epoch_s(started_at), _epoch_s(finished_at)
        if started is not None and finished is not None:
            starts.append(started)
            stops.append(finished)
        elif str(trial_id) in ends:
            end = ends[str(trial_id)]
            starts.append(end - (0.0 if pd.isna(elapsed_s) else float(elapsed_s)))
            stops.append(end)
    return max(stops) - min(starts) if stops else 0.0


def _epoch_s(stamp: object) -> float | None:
    if not isinstance(stamp, str) or not stamp:
        return None
    try:
        parsed = datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        return None
    return parsed.replace(tzinfo=datetime.timezone.utc).timestamp()
