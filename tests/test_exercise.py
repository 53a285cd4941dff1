"""The exercise's published table decomposed, and the grid's paired comparison, over shards
with per-image labels written by the test itself; numbers recomputed independently."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest

from mnistfc.cli import main as cli
from mnistfc.folder.labels import predictions_record
from mnistfc.folder.plan import save_plan
from mnistfc.folder.result import TrialResult
from mnistfc.folder.schema import Status
from mnistfc.folder.shards import write_shard
from mnistfc.report import estimators, exercise
from mnistfc.report.aggregate import load_results
from mnistfc.trial.config import TrialConfig
from mnistfc.trial.search import expand
from mnistfc.trial.spec import spec_from_dict

N_VALID, N_TEST = 2000, 8000


def labelled_result(
    config: TrialConfig, hits: dict[str, np.ndarray], last: dict[str, np.ndarray] | None = None
) -> TrialResult:
    """A completed trial whose accuracies are those of its per-image hits (True = right)."""
    truth = {split: np.arange(len(hits[split])) % 10 for split in ("valid", "test")}

    def predicted(right: np.ndarray, split: str) -> np.ndarray:
        return np.where(right, truth[split], (truth[split] + 1) % 10)

    def split(right: np.ndarray) -> dict[str, float]:
        acc = float(np.mean(right))
        return {"loss": 1 - acc, "accuracy": acc, "error_pct": 100 * (1 - acc)}

    last = last or hits
    metrics = {
        "train": split(hits["valid"]),
        **{s: split(hits[s]) for s in ("valid", "test")},
        "best_epoch": 1,
        "last": {"epoch": 2, **{s: split(last[s]) for s in ("valid", "test")}},
    }
    return TrialResult(
        config=config,
        status=Status.COMPLETED,
        metrics=metrics,
        history=[],
        timing={"total_s": 1.0},
        env={"host": "test"},
        data={"name": "mnist", "n_train": 60000, "n_valid": N_VALID, "n_test": N_TEST},
        predictions=predictions_record(
            truth,
            {s: predicted(hits[s], s) for s in ("valid", "test")},
            {s: predicted(last[s], s) for s in ("valid", "test")},
        ),
    )


def _hits(rng: np.random.Generator, n: int, accuracy: float) -> np.ndarray:
    return rng.random(n) < accuracy


def test_the_grid_compares_cells_paired_on_the_same_images(tmp_path: Path) -> None:
    """Two cells 0.5 points apart: unpaired, within noise; paired, told apart, since the
    lesser cell errs on every image the best errs on and ten more."""
    spec = spec_from_dict({"kind": "grid", "name": "g", "base": {"epochs": 2},
                           "grid": {"dropout": [0.0, 0.5], "units": [16, 32]}})  # fmt: skip
    trials = expand(spec)
    save_plan(tmp_path, spec, trials, data_dir=None)
    rng = np.random.default_rng(0)
    best = _hits(rng, N_VALID, 0.95)
    close = best.copy()
    close[np.flatnonzero(best)[:10]] = False  # 10 fewer right, all on the same images
    tied = best.copy()
    tied[np.flatnonzero(best)[:3]] = False  # 3 fewer: McNemar cannot tell these apart
    tied[np.flatnonzero(~best)[:1]] = True
    far = _hits(rng, N_VALID, 0.80)
    test = _hits(rng, N_TEST, 0.9)
    for trial, hits in zip(trials, (best, close, tied, far), strict=True):
        write_shard(tmp_path, labelled_result(trial.config, {"valid": hits, "test": test}))
    results = load_results(tmp_path)
    by_id = {t.trial_id: h for t, h in zip(trials, (best, close, tied, far), strict=True)}
    for trial_id, hits in by_id.items():
        np.testing.assert_array_equal(results.correct(trial_id), hits)
    only_best, only_close = int(np.sum(best & ~close)), int(np.sum(close & ~best))
    n = only_best + only_close  # exact binomial test: outcomes no likelier than the one seen
    probability = [math.comb(n, k) / 2**n for k in range(n + 1)]
    seen = probability[only_best]
    p_value = sum(p for p in probability if p <= seen * (1 + 1e-9))
    assert (only_best, only_close) == (10, 0)
    assert estimators.paired_p_value(best, close) == pytest.approx(p_value)
    assert estimators.paired_p_value(best, tied) > 0.05
    assert cli.main(["aggregate", str(tmp_path)]) == 0
    md = (tmp_path / "report" / "report.md").read_text()
    assert "2 cell(s), the best included, cannot be told apart from the best (McNemar" in md


def test_the_exercise_rule_is_recomputed_and_its_gap_taken_apart(tmp_path: Path) -> None:
    spec = spec_from_dict({"kind": "random", "name": "p", "protocol": "pool", "pool_size": 12,
                           "budgets": [1, 10],
                           "space": {"units": [8, 16, 32, 64],
                                     "dropout": [0.0, 0.2, 0.5]}})  # fmt: skip
    trials = expand(spec)
    save_plan(tmp_path, spec, trials, data_dir=None)
    rng = np.random.default_rng(4)
    scores = []
    for trial in trials:
        best = {"valid": _hits(rng, N_VALID, rng.uniform(0.95, 0.98)),
                "test": _hits(rng, N_TEST, rng.uniform(0.94, 0.98))}  # fmt: skip
        last = {"valid": _hits(rng, N_VALID, rng.uniform(0.95, 0.98)),
                "test": _hits(rng, N_TEST, rng.uniform(0.94, 0.98))}  # fmt: skip
        write_shard(tmp_path, labelled_result(trial.config, best, last))
        scores.append([best["valid"].mean(), best["test"].mean(), last["valid"].mean(),
                       last["test"].mean()])  # fmt: skip
    table = exercise.decompose(load_results(tmp_path).frame, [1, 10]).set_index("budget")
    assert list(table.index) == [10]  # the exercise's budgets only
    row = table.loc[10]
    valid, test, valid_last, test_last = np.array(scores).T
    all_last = (N_VALID * valid_last + N_TEST * test_last) / (N_VALID + N_TEST)
    subsets = [list(s) for s in itertools.combinations(range(12), 10)]
    ours = np.mean([test[s][np.argmax(valid[s])] for s in subsets])  # no ties here
    on_test = np.mean([test[s].max() for s in subsets])
    final = np.mean([test_last[s].max() for s in subsets])
    rule = np.mean([all_last[s].max() for s in subsets])
    assert row["ours"] == pytest.approx(ours)
    assert row["selection"] == pytest.approx(on_test - ours)
    assert row["epoch"] == pytest.approx(final - on_test)
    assert row["test_slice"] == pytest.approx(rule - final)
    assert row["exercise_rule"] == pytest.approx(rule)
    published = exercise.EXERCISE_BUDGETS[10][0]
    assert row["remaining"] == pytest.approx(published - rule)
    # A best of 10 of 12 is at least the pool's third best, so every study's mean is too.
    top = np.sort(all_last)
    assert top[-3] - 1e-12 <= row["repeats_lo"] <= row["repeats_hi"] <= top[-1] + 1e-12
    assert row["within_noise"] == (row["repeats_lo"] <= published <= row["repeats_hi"])
    assert cli.main(["aggregate", str(tmp_path)]) == 0
    md = (tmp_path / "report" / "report.md").read_text()
    assert "The exercise's published table, recomputed from this pool" in md
    assert (tmp_path / "report" / "exercise.csv").is_file()
    assert "exercise_expected" in (tmp_path / "report" / "budget.csv").read_text()


def test_shards_without_the_final_epoch_say_the_decomposition_is_absent(tmp_path: Path) -> None:
    spec = spec_from_dict({"kind": "random", "name": "p", "protocol": "pool", "pool_size": 10,
                           "budgets": [10], "space": {"units": [8, 16, 32, 64]}})  # fmt: skip
    trials = expand(spec)
    save_plan(tmp_path, spec, trials, data_dir=None)
    rng = np.random.default_rng(5)
    for trial in trials:
        hits = {"valid": _hits(rng, N_VALID, 0.97), "test": _hits(rng, N_TEST, 0.96)}
        result = labelled_result(trial.config, hits)
        metrics = {k: v for k, v in result.metrics.items() if k != "last"}
        write_shard(tmp_path, TrialResult(**{**result.__dict__, "metrics": metrics}))
    assert exercise.decompose(load_results(tmp_path).frame, [10]) is None
    assert cli.main(["aggregate", str(tmp_path)]) == 0
    md = (tmp_path / "report" / "report.md").read_text()
    assert "Not computable: these shards do not record the final epoch's scores" in md
