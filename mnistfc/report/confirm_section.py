"""The study report's confirm section: the searches' winners on new seeds (``confirm.csv``),
and seed noise beside each difference the study's conclusions rest on."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from mnistfc.atomic import atomic_write_text
from mnistfc.folder.study_record import CONFIRM_PART, TRAIN_PART
from mnistfc.report import confirm
from mnistfc.report.aggregate import Results
from mnistfc.report.estimators import Z_95
from mnistfc.report.frame import best_trial, ranked
from mnistfc.report.grid_section import paired_near
from mnistfc.report.render import Report

_SETTING_HEADERS = ("units", "dropout", "act.", "lr", "batch")


def confirm_section(report: Report, root: Path, parts: list[str], fmt: str) -> None:
    """The retrained winners' table, whether each search's winner stands out, the pooled seed
    sd beside the study's differences, and what the stage cost."""
    loaded = confirm.load_parts(root, {*parts, CONFIRM_PART, TRAIN_PART})
    table = confirm.confirm_table(loaded)
    if table is None:
        return
    out = root / CONFIRM_PART / "report"
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "confirm.csv", table.to_csv(index=False, na_rep=""))
    report.files.append(out / "confirm.csv")
    seeds = int(table["seeds"].max())
    report.add("h2", "The winners, retrained on new seeds")
    report.add("p", "Each search's top configurations by validation accuracy, retrained with "
               f"{seeds} new seeds each (initialisation, batch order, dropout masks). Test "
               "accuracy over the new seeds: mean ± sd. The winner's lead is its mean minus the "
               "row's; p is the exact two-sided permutation test of the two means over the "
               "new seeds (no test accuracy here took part in any selection).")  # fmt: skip
    headers = ["search", "rank", *_SETTING_HEADERS, "search valid", "search test", "seeds",
               "test over seeds", "winner's lead [points]", "p"]  # fmt: skip
    rows = [[r["source"], str(r["rank"]), str(r["units"]), f"{r['dropout']:g}",
             r["activation"], f"{r['learning_rate']:g}", str(r["batch_size"]),
             f"{r['search_valid']:.4f}", f"{r['search_test']:.4f}", str(r["seeds"]),
             _mean_sd(r["test_mean"], r["test_sd"]), _points(r["winner_lead"]),
             "" if math.isnan(r["p_value"]) else f"{r['p_value']:.3f}"]
            for r in confirm.records(table)]  # fmt: skip
    report.add_table("Winners on new seeds", headers, rows, fmt)
    for line in _verdicts(table):
        report.add("p", line)
        report.text.append(line)
    sd_test, sd_valid = confirm.seed_sd(table, "test"), confirm.seed_sd(table, "valid")
    noise = (f"Seed noise: one configuration's test accuracy varies with its seed by sd "
             f"{100 * sd_test:.2f} points (validation: {100 * sd_valid:.2f}), pooled over the "
             "retrained configurations; two single-seed trials of one configuration differ "
             f"by sd {100 * math.sqrt(2) * sd_test:.2f} points.")  # fmt: skip
    report.add("p", noise)
    report.text.append(noise)
    _differences(report, loaded, table, sd_test, sd_valid, fmt)
    spent, total = confirm.cost_share(loaded)
    if total > 0:
        cost = (f"Cost: the confirm stage's trials took {spent / 60:.1f} min of trial time "
                f"(each trial's share of its pack), {100 * spent / total:.1f}% of the "
                f"study's {total / 60:.1f} min.")  # fmt: skip
        report.add("p", cost)
        report.text.append(cost)


def _verdicts(table: pd.DataFrame) -> list[str]:
    """Per search: is its winner better than its runners-up on new seeds, worse, or neither."""
    lines = []
    for source in dict.fromkeys(table["source"]):
        rows = confirm.records(table[table["source"] == source])
        winner, others = rows[0], rows[1:]
        if not others:
            continue
        apart = [r for r in others if r["p_value"] < 0.05]
        better = [str(r["rank"]) for r in apart if r["winner_lead"] > 0]
        worse = [str(r["rank"]) for r in apart if r["winner_lead"] < 0]
        best_mean = max(rows, key=lambda r: r["test_mean"])
        verdict = (
            f"better than {len(better)} (rank {', '.join(better) or '-'}), worse than "
            f"{len(worse)} (rank {', '.join(worse) or '-'}), not told apart from "
            f"{len(others) - len(apart)}"
        )
        lines.append(
            f"{source}: the winner (rank {winner['rank']}) scores "
            f"{_mean_sd(winner['test_mean'], winner['test_sd'])} on test over new seeds. "
            f"Against its {len(others)} runners-up (p < 0.05): {verdict}. The best mean over "
            f"seeds is rank {best_mean['rank']}'s, {best_mean['test_mean']:.4f}."
        )
    return lines


def _differences(report: Report, parts: Mapping[str, Results], table: pd.DataFrame,
                 sd_test: float, sd_valid: float, fmt: str) -> None:  # fmt: skip
    """Each difference a conclusion rests on, beside the seed sd of the quantity it compares."""
    rows: list[list[str]] = []
    grid_note = ""
    if "grid" in parts:
        rows, grid_note = _grid_rows(parts["grid"], sd_valid)
    if "random" in parts:
        budget = parts["random"].budget_table()
        if budget is not None and "test_expected" in budget:
            known = confirm.records(budget.dropna(subset=["test_expected"]))
            for a, b in itertools.pairwise(known):
                gain = b["test_expected"] - a["test_expected"]
                rows.append([f"random: expected test gain, N = {int(a['budget'])} -> "
                             f"{int(b['budget'])}", _points(gain), _sd(sd_test),
                             _ratio(gain, sd_test)])  # fmt: skip
            for r in known:
                gap = r.get("optimism", float("nan"))
                rows.append([f"random: what selecting on test flatters at N = "
                             f"{int(r['budget'])} (optimism)", _points(gap), _sd(sd_test),
                             _ratio(gap, sd_test)])  # fmt: skip
    for r in confirm.records(table[table["winner_lead"].notna()]):
        lead = r["winner_lead"]
        rows.append([f"{r['source']}: winner's lead over rank {r['rank']}, over seeds",
                     _points(lead), _sd(sd_test), _ratio(lead, sd_test)])  # fmt: skip
    if not rows:
        return
    report.add("p", "The differences the study's conclusions rest on, beside the seed sd of "
               "one trial's accuracy (validation for the grid's cells, which are compared on "
               "validation; test otherwise). A difference well below one seed sd is one that "
               "another seed could reverse for a single trial.")  # fmt: skip
    report.add_table("Differences beside seed noise",
                     ["difference", "value [points]", "seed sd [points]", "value / sd"], rows,
                     fmt)  # fmt: skip
    if grid_note:
        report.add("p", grid_note)
        report.text.append(grid_note)


def _grid_rows(results: Results, sd_valid: float) -> tuple[list[list[str]], str]:
    """The best cell's lead over the next, and the cells within noise of the best once seed
    noise joins McNemar's test (a cell is near when either cannot tell it apart)."""
    cells = ranked(results.frame)
    best = best_trial(results.frame)
    if best is None or len(cells) < 2:
        return [], ""
    lead = float(cells["valid_accuracy"].iloc[0] - cells["valid_accuracy"].iloc[1])
    ids = dict(zip(cells["trial_id"], cells["trial_id"], strict=True))
    paired = paired_near(results, ids, best)
    seed_gap = Z_95 * math.sqrt(2) * sd_valid
    by_seed = {t for t, v in zip(cells["trial_id"], cells["valid_accuracy"], strict=True)
               if best["valid_accuracy"] - v <= seed_gap}  # fmt: skip
    rows = [["grid: best cell's validation lead over the next", _points(lead),
             _sd(sd_valid), _ratio(lead, sd_valid)]]  # fmt: skip
    note = ""
    if paired is not None and np.isfinite(seed_gap):
        either = set(paired) | by_seed
        note = (f"Grid cells not told apart from the best, seed noise folded in: {len(paired)} "
                f"by McNemar's paired test on the validation images, {len(by_seed)} by seed "
                f"noise (validation gap to the best within 1.96·√2 seed sd = "
                f"{100 * seed_gap:.2f} points), {len(either)} by either.")  # fmt: skip
    return rows, note


def _mean_sd(mean: float, sd: float) -> str:
    return f"{mean:.4f}" + (f" ± {sd:.4f}" if np.isfinite(sd) else "")


def _points(value: float) -> str:
    return f"{100 * value:+.2f}" if np.isfinite(value) else ""


def _sd(value: float) -> str:
    return f"{100 * value:.2f}" if np.isfinite(value) else ""


def _ratio(value: float, sd: float) -> str:
    return f"{value / sd:+.1f}" if np.isfinite(sd) and sd > 0 and np.isfinite(value) else ""
