"""Aggregation over shards written by the test itself, with numbers recomputed independently."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mnistfc.cli import main as cli
from mnistfc.folder.plan import save_plan
from mnistfc.folder.result import TrialResult
from mnistfc.folder.schema import Status
from mnistfc.folder.shards import write_shard
from mnistfc.report import estimators
from mnistfc.report.aggregate import load_results
from mnistfc.report.budget import best_of_n_pool, best_of_n_repeats
from mnistfc.trial.config import TrialConfig
from mnistfc.trial.search import expand
from mnistfc.trial.spec import spec_from_dict

GRID = {
    "kind": "grid",
    "name": "g",
    "base": {"epochs": 2},
    "grid": {"dropout": [0.0, 0.5], "units": [16, 32]},
}
SPACE = {"units": [8, 16, 32], "learning_rate": [0.001, 0.01], "dropout": [0.0, 0.2]}


def fake_result(
    config: TrialConfig,
    valid: float,
    test: float,
    status: Status = Status.COMPLETED,
    last_test: float | None = None,
) -> TrialResult:
    def split(acc: float) -> dict[str, float]:
        return {"loss": 1 - acc, "accuracy": acc, "error_pct": 100 * (1 - acc)}

    metrics = {"train": split(valid), "valid": split(valid), "test": split(test), "best_epoch": 1}
    if last_test is not None:  # the final epoch, as version 2 shards record it
        metrics["last"] = {"epoch": 2, "valid": split(valid), "test": split(last_test)}
    return TrialResult(
        config=config,
        status=status,
        metrics=metrics if status is Status.COMPLETED else None,
        history=[],
        timing={"load_s": 1.0, "fit_s": 10.0, "eval_s": 1.0, "total_s": 12.0},
        env={"host": "test"},
        data={"name": "mnist", "n_train": 60000, "n_valid": 2000, "n_test": 8000},
        error="Traceback\nRuntimeError: boom" if status is Status.FAILED else None,
    )


def make_sweep(folder: Path, spec_dict: dict, score) -> list:
    spec = spec_from_dict(spec_dict)
    trials = expand(spec)
    save_plan(folder, spec, trials, data_dir=None)
    for trial in trials:
        result = score(trial)
        if result is not None:
            write_shard(folder, result)
    return trials


def test_grid_tables_report_and_csv_trace_back_to_shards(tmp_path: Path, capsys) -> None:
    def score(trial):
        c = trial.config
        return fake_result(
            c, valid=0.9 + c.units / 1000 - c.dropout / 10, test=0.8 + c.units / 1000
        )

    make_sweep(tmp_path, GRID, score)
    assert cli.main(["aggregate", str(tmp_path), "--table-format", "github"]) == 0
    out = capsys.readouterr().out
    # validation accuracy ± its binomial standard error on 2,000 images; * best, ~ within noise
    assert "| 0.0               | 0.9160 ±0.0062 ~ | 0.9320 ±0.0056 * |" in out
    assert "| 0.5               | 0.8660 ±0.0076   | 0.8820 ±0.0072   |" in out
    assert "Test error rate [%] of every cell: for inspection only, not used to select" in out
    best = "Best cell by validation accuracy: dropout = 0.0, units = 32: validation 0.9320"
    assert f"{best}, test 0.8320" in out
    report = tmp_path / "report"
    md = (report / "report.md").read_text()
    assert "dropout = 0.50, 16 neurons -> accuracy 0.866, error rate = 13.4% (validation)" in md
    # These shards keep no per-image labels: the unpaired test, and the report says so.
    assert "2 cell(s), the best included, cannot be told apart from the best" in md
    assert "unpaired: these shards keep no per-image labels" in md
    assert "selected on validation accuracy" in md and "PARTIAL" not in md
    html = (report / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 2 and "<table>" in html
    rows = (report / "results.csv").read_text().splitlines()
    assert len(rows) == 5 and rows[0].startswith("trial_id,status,units")


def test_partial_sweep_and_invalid_shards_are_reported_not_hidden(tmp_path: Path, capsys) -> None:
    trials = make_sweep(
        tmp_path, GRID, lambda t: fake_result(t.config, 0.9, 0.8) if t.config.units == 16 else None
    )
    bad = tmp_path / "shards" / "bad.json"
    bad.write_text(json.dumps({"schema_version": 7}))
    (tmp_path / "shards" / "torn.json").write_text('{"schema_version": 1, "trial')
    results = load_results(tmp_path)
    assert len(results.frame) == 2 and results.partial and len(results.missing) == 2
    assert set(results.skipped) == {"bad.json", "torn.json"}
    assert "unknown schema_version 7" in results.skipped["bad.json"]
    assert cli.main(["aggregate", str(tmp_path)]) == 0
    md = (tmp_path / "report" / "report.md").read_text()
    assert "**PARTIAL**: 2 planned trial(s) have no shard yet" in md
    assert "Skipped invalid shard `bad.json`" in md
    assert len(trials) == 4


def test_repeats_protocol_matches_a_direct_recomputation(tmp_path: Path) -> None:
    spec = {
        "kind": "random",
        "name": "r",
        "seed": 5,
        "budgets": [2, 4],
        "repeats": 3,
        "space": SPACE,
    }
    rng = np.random.default_rng(1)
    scores = {}

    def score(trial):
        valid, test = float(rng.uniform(0.5, 1)), float(rng.uniform(0.5, 1))
        scores[trial.trial_id] = (valid, test)
        return fake_result(trial.config, valid, test)

    trials = make_sweep(tmp_path, spec, score)
    results = load_results(tmp_path)
    table = best_of_n_repeats(results.frame, results.plan).set_index("budget")
    for budget in (2, 4):
        picked = []
        for repeat in range(3):
            ids = [
                t.trial_id
                for t in trials
                for tag in t.tags
                if dict(tag) | {"draw": 0} == {"repeat": repeat, "budget": budget, "draw": 0}
            ]
            assert len(ids) == budget
            best = max(ids, key=lambda i: scores[i][0])
            picked.append(scores[best])
        valid, test = np.array(picked).T
        assert table.loc[budget, "valid_expected"] == pytest.approx(valid.mean())
        assert table.loc[budget, "valid_std"] == pytest.approx(valid.std(ddof=1))
        assert table.loc[budget, "test_expected"] == pytest.approx(test.mean())
        assert table.loc[budget, "repeats"] == 3
        assert np.isnan(table.loc[budget, "exercise_expected"])  # no shard has a final epoch


def test_the_exercises_rule_needs_every_shard_of_a_search_to_have_its_final_epoch(
    tmp_path: Path,
) -> None:
    spec = {"kind": "random", "name": "r", "seed": 5, "budgets": [2], "repeats": 2,
            "space": SPACE}  # fmt: skip
    rng = np.random.default_rng(1)
    lasts: dict[str, float] = {}

    def score(trial):
        last = float(rng.uniform(0.5, 1))
        first = len(lasts) == 0  # one shard of version 1's kind: no final epoch
        lasts[trial.trial_id] = last
        return fake_result(trial.config, 0.9, 0.8, last_test=None if first else last)

    make_sweep(tmp_path, spec, score)
    results = load_results(tmp_path)
    table = best_of_n_repeats(results.frame, results.plan).set_index("budget")
    # One search lacks a final epoch, so the mean over searches is not known: NaN, never
    # the mean of what is there.
    assert np.isnan(table.loc[2, "exercise_expected"])
    assert results.frame["test_accuracy_last"].notna().sum() == len(lasts) - 1


def test_pool_estimators_match_brute_force(tmp_path: Path) -> None:
    spec = {
        "kind": "random",
        "name": "p",
        "protocol": "pool",
        "pool_size": 7,
        "budgets": [1, 3, 7],
        "space": SPACE,
    }
    rng = np.random.default_rng(2)
    make_sweep(
        tmp_path,
        spec,
        lambda t: fake_result(t.config, float(rng.uniform(0.5, 1)), float(rng.uniform(0.5, 1))),
    )
    frame = load_results(tmp_path).frame
    table = best_of_n_pool(frame, [1, 3, 7]).set_index("budget")
    pairs = list(zip(frame["valid_accuracy"], frame["test_accuracy"], strict=True))
    for n in (1, 3, 7):
        subsets = list(itertools.combinations(pairs, n))  # without replacement
        assert table.loc[n, "valid_expected"] == pytest.approx(
            np.mean([max(s)[0] for s in subsets])
        )
        assert table.loc[n, "test_expected"] == pytest.approx(np.mean([max(s)[1] for s in subsets]))
        assert table.loc[n, "select_on_test"] == pytest.approx(
            np.mean([max(t for _, t in s) for s in subsets])
        )
        draws = list(itertools.product(pairs, repeat=n))  # with replacement
        assert table.loc[n, "valid_expected_with_replacement"] == pytest.approx(
            np.mean([max(d)[0] for d in draws])
        )
        # A pool of 7 cannot say how much the best of N varies (it needs M >= 100): empty.
        assert np.isnan(table.loc[n, "valid_std"]) and np.isnan(table.loc[n, "test_std"])
        assert np.isnan(table.loc[n, "valid_band_lo"])  # a band needs 5 <= N <= M/8 too


def test_pool_table_shows_spreads_and_intervals_only_where_estimable() -> None:
    rng = np.random.default_rng(3)
    m = 100
    frame = pd.DataFrame({
        "trial_id": [f"t{i:03d}" for i in range(m)], "status": "completed",
        "valid_accuracy": np.round(rng.uniform(0.9, 1.0, m), 2),  # ties, as on 2,000 images
        "test_accuracy": rng.uniform(0.8, 1.0, m),
    })  # fmt: skip
    table = best_of_n_pool(frame, [2, 5, 12, 13]).set_index("budget")
    valid, test = frame["valid_accuracy"].to_numpy(), frame["test_accuracy"].to_numpy()
    chosen = []
    for subset in itertools.combinations(range(m), 2):
        top = max(valid[list(subset)])
        chosen.append(np.mean([test[i] for i in subset if valid[i] == top]))  # tie rule
    assert table.loc[2, "test_expected"] == pytest.approx(np.mean(chosen))
    # N = 2 < 5: a search's spread is mostly the chance of a rare bad draw; not shown.
    assert table.loc[[2, 13], ["valid_std", "test_std", "valid_band_lo"]].isna().all().all()

    def jackknife_variance(stat) -> float:  # type: ignore[no-untyped-def]
        loo = np.array([stat(np.delete(valid, k), np.delete(test, k)) for k in range(m)])
        return (m - 1) / m * float(np.sum((loo - loo.mean()) ** 2))

    for n in (5, 12):  # 5 <= N <= 100 / 8: spreads and intervals shown
        # The spread across searches: the subsets' own, plus the jackknife variance of the
        # mean (tests/test_estimators.py holds both to brute force over every subset).
        raw = estimators.max_spread(valid, n) ** 2 - jackknife_variance(
            lambda v, t, n=n: estimators.expected_max(v, n)
        )
        assert table.loc[n, "valid_std"] == pytest.approx(estimators.max_spread(valid, n))
        assert 0 < raw < table.loc[n, "valid_std"] ** 2
        assert table.loc[n, "test_std"] == pytest.approx(
            estimators.selected_test(valid, test, n)[1]
        )
        for column in ("valid", "test"):
            low, high = table.loc[n, f"{column}_band_lo"], table.loc[n, f"{column}_band_hi"]
            assert low < table.loc[n, f"{column}_expected"] < high


def test_diverged_trials_are_draws_and_failed_ones_are_not(tmp_path: Path) -> None:
    spec = {
        "kind": "random",
        "name": "p",
        "protocol": "pool",
        "pool_size": 4,
        "budgets": [4],
        "space": SPACE,
    }

    def score(trial):
        i = dict(trial.tags[0])["pool"]
        status = [Status.COMPLETED, Status.DIVERGED, Status.FAILED, Status.COMPLETED][i]
        return fake_result(trial.config, 0.6 + i / 10, 0.5, status)

    make_sweep(tmp_path, spec, score)
    table = best_of_n_pool(load_results(tmp_path).frame, [1]).set_index("budget")
    assert table.loc[1, "pool"] == 3  # completed, completed, diverged (scored 0)
    assert table.loc[1, "valid_expected"] == pytest.approx((0.6 + 0.9 + 0.0) / 3)


def test_empty_folder_is_a_clear_error(tmp_path: Path, capsys) -> None:
    assert cli.main(["aggregate", str(tmp_path)]) == 1
    assert "no readable shards" in capsys.readouterr().err


def test_shards_outside_the_plan_are_named_and_left_out(tmp_path: Path) -> None:
    make_sweep(tmp_path, GRID, lambda t: fake_result(t.config, 0.9, 0.8))
    stray = TrialConfig(units=999, epochs=2)
    write_shard(tmp_path, fake_result(stray, 0.99, 0.99))
    results = load_results(tmp_path)
    assert len(results.frame) == 4 and stray.trial_id not in set(results.frame["trial_id"])
    assert results.skipped[f"{stray.trial_id}.json"] == "not a trial of this folder's sweep plan"


def test_report_names_what_made_the_numbers_flags_a_mix_and_times_from_stamps(
    tmp_path: Path, capsys
) -> None:
    """Wall time comes from started_at/finished_at; two engines in one folder are flagged."""

    def score(trial):
        result = fake_result(trial.config, valid=0.9, test=0.8)
        minute = trial.config.units // 16  # trials start 1 and 2 minutes in, last 10 minutes
        env = {"host": "n1", "mnistfc": "0.1.0", "tensorflow": "2.21.0",
               "engine": "packed-v1" if trial.config.dropout == 0.0 else "keras-v1",
               "started_at": f"2026-12-01T10:0{minute}:00Z",
               "finished_at": f"2026-12-01T10:1{minute}:00Z"}  # fmt: skip
        return TrialResult(**{**result.__dict__, "env": env})

    make_sweep(tmp_path, GRID, score)
    assert cli.main(["aggregate", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "wall time 0.18 h (first trial start to last end)" in out  # 10:01 to 10:12
    assert "Made by mnistfc 0.1.0 (commit unknown), engine keras-v1/packed-v1" in out
    assert "MIXED: 2 engines: keras-v1, packed-v1" in out
    csv = pd.read_csv(tmp_path / "report" / "results.csv")
    assert set(csv["engine"]) == {"keras-v1", "packed-v1"}
