"""Each figure draws the numbers it is given: read back from the figure each function
returns, not from the PNG's pixels; the PNG is written whole or not at all."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mnistfc.report import plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
HISTORY = [
    {"epoch": e, "loss": 1 / e, "accuracy": 1 - 1 / (e + 1),
     "val_loss": None if e == 2 else 2 / e, "val_accuracy": 0.9 + e / 100,
     "train_loss": 1.5 / e, "train_acc": 0.8 + e / 100}
    for e in (1, 2, 3)
]  # fmt: skip


def _lines(ax) -> dict[str, tuple[list[float], list[float]]]:
    return {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in ax.lines}


def test_history_draws_each_series_with_its_gap_and_the_best_epoch(tmp_path: Path) -> None:
    fig = plots.plot_history(HISTORY, "loss", tmp_path / "l.png", best_epoch=2)
    lines = _lines(fig.axes[0])
    assert lines["training (end of epoch)"] == ([1, 2, 3], [1.5, 0.75, 0.5])
    assert lines["training (running, dropout on)"][1] == [1.0, 0.5, pytest.approx(1 / 3)]
    val = lines["validation"][1]
    assert val[0] == 2.0 and math.isnan(val[1]) and val[2] == pytest.approx(2 / 3)
    assert lines["best epoch (2)"][0] == [2, 2]
    assert (tmp_path / "l.png").read_bytes()[:8] == PNG_MAGIC
    # A sweep's trial without the end-of-epoch pass: no solid training line, no best epoch.
    bare = [{k: v for k, v in h.items() if k != "train_acc"} for h in HISTORY]
    fig = plots.plot_history(bare, "accuracy", tmp_path / "a.png", best_epoch=None)
    assert set(_lines(fig.axes[0])) == {"training (running, dropout on)", "validation"}


def test_confusion_draws_percent_of_each_true_class(tmp_path: Path) -> None:
    y_true = np.array([0, 0, 0, 0, 1, 1, 2])
    y_pred = np.array([0, 0, 0, 1, 1, 2, 2])
    fig = plots.plot_confusion(y_true, y_pred, plots.class_names("mnist"), tmp_path / "c.png")
    ax = fig.axes[0]
    drawn = ax.images[0].get_array()
    assert drawn[0, :3].tolist() == [75.0, 25.0, 0.0]
    assert drawn[1, :3].tolist() == [0.0, 50.0, 50.0]
    assert drawn[2, 2] == 100.0 and drawn[5].sum() == 0.0  # a class with no images: blank
    assert "7 images, accuracy 71.43%" in ax.get_title()
    assert {t.get_text() for t in ax.texts} >= {"75.0", "25.0", "50.0", "100.0"}


def test_predictions_and_misclassified_show_the_given_images(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = rng.random((6, 784), dtype=np.float32)
    probs = np.eye(10)[[3, 1, 4, 1, 5, 9]]
    y_true = np.array([3, 1, 4, 7, 5, 2])
    names = plots.class_names("fashion_mnist")
    fig = plots.plot_predictions(images[:3], probs[:3], y_true[:3], names, tmp_path / "p.png")
    image_axes, bar_axes = fig.axes[0::2], fig.axes[1::2]
    np.testing.assert_array_equal(image_axes[1].images[0].get_array(), images[1].reshape(28, 28))
    assert [p.get_height() for p in bar_axes[2].patches] == probs[2].tolist()
    assert image_axes[0].get_title() == "true T-shirt/top, right".replace("T-shirt/top", names[3])

    y_pred = probs.argmax(1)
    fig = plots.plot_misclassified(images, y_true, y_pred, names, tmp_path / "m.png", 2, 2)
    titled = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titled == [f"#3: {names[7]} -> {names[1]}", f"#5: {names[2]} -> {names[9]}"]
    assert "first 2 of 2" in fig.get_suptitle()
    none = plots.plot_misclassified(images, y_true, y_true, names, tmp_path / "n.png", 1, 2)
    assert not any(ax.images for ax in none.axes) and "first 0 of 0" in none.get_suptitle()


def test_heatmap_draws_the_table_blank_where_nan_with_marks(tmp_path: Path) -> None:
    table = pd.DataFrame(
        [[0.97, 0.98], [0.96, np.nan]],
        index=pd.Index([0.0, 0.5], name="dropout"),
        columns=pd.Index([64, 128], name="units"),
    )
    fig = plots.plot_grid_heatmap(table, "valid", tmp_path / "h.png", marks={(0.0, 128): "*"})
    ax = fig.axes[0]
    np.testing.assert_array_equal(ax.images[0].get_array().filled(np.nan), table.to_numpy())
    assert sorted(t.get_text() for t in ax.texts) == ["0.960", "0.970", "0.980 *"]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("units", "dropout")


def test_budget_curve_draws_expectations_bars_bands_and_the_exercise(tmp_path: Path) -> None:
    table = pd.DataFrame({
        "budget": [10, 20, 40],
        "valid_expected": [0.970, 0.975, 0.978], "valid_std": [0.004, 0.003, np.nan],
        "valid_band_lo": [0.968, 0.973, np.nan], "valid_band_hi": [0.972, 0.977, np.nan],
        "test_expected": [0.968, 0.972, 0.975], "test_std": [0.005, 0.004, 0.002],
        "test_band_lo": [np.nan] * 3, "test_band_hi": [np.nan] * 3,
        "exercise_expected": [0.969, 0.973, 0.976], "select_on_test": [np.nan] * 3,
    })  # fmt: skip
    exercise = {10: (0.9757, 0.0012), 20: (0.9781, 0.0005)}
    fig = plots.plot_budget_curve(table, exercise, "t", tmp_path / "b.png")
    ax = fig.axes[0]
    (valid, _, (valid_bars,)), (test, _, _), (ex, _, (ex_bars,)) = ax.containers
    assert list(valid.get_ydata()) == [0.970, 0.975, 0.978]
    # A missing spread draws no bar (0), not a made-up one.
    heights = [seg[1][1] - seg[0][1] for seg in valid_bars.get_segments()]
    assert heights == pytest.approx([0.008, 0.006, 0.0])
    assert list(test.get_ydata()) == [0.968, 0.972, 0.975]
    assert list(ex.get_xdata()) == [10, 20] and list(ex.get_ydata()) == [0.9757, 0.9781]
    assert [seg[1][1] - seg[0][1] for seg in ex_bars.get_segments()] == pytest.approx(
        [0.0024, 0.0010]
    )
    # One band (validation's, two estimable budgets); test's band has no estimable budget.
    (band,) = [c for c in ax.collections if "95% interval" in c.get_label()]
    assert "expected best validation" in band.get_label()
    ys = band.get_paths()[0].vertices[:, 1]
    assert (ys.min(), ys.max()) == pytest.approx((0.968, 0.977))
    labels = [line.get_label() for line in ax.lines]
    assert any("the exercise's rule" in label for label in labels)
    assert not any("selecting on test" in label for label in labels)


def test_a_figure_that_fails_to_save_leaves_no_file(tmp_path: Path) -> None:
    """matplotlib raises while writing (bad mathtext in the title): no PNG, no temp file."""
    table = pd.DataFrame([[0.9]], index=pd.Index([0.0], name="d"), columns=pd.Index([8], name="u"))
    with pytest.raises(ValueError):
        plots.plot_grid_heatmap(table, r"$\notacommand{$", tmp_path / "bad.png")
    plots.plot_grid_heatmap(table, "fine", tmp_path / "ok.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.png"]
