"""Draw every figure from plain arrays and records, and save each PNG atomically.

Figures are built with matplotlib's object API (no pyplot), so nothing depends on a display
or on global state, and a batch job never opens a window. Each function returns the figure
it saved, so a test can read back the data it drew.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from mnistfc.atomic import atomic_path

if TYPE_CHECKING:
    from matplotlib.figure import Figure

FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip


def class_names(dataset: str) -> tuple[str, ...]:
    """Return display names of the ten classes of a dataset."""
    return FASHION_CLASSES if dataset == "fashion_mnist" else tuple(str(i) for i in range(10))


def plot_history(
    history: Sequence[dict[str, Any]],
    metric: str,
    path: str | os.PathLike[str],
    best_epoch: int | None,
) -> Figure:
    """Plot training and validation ``accuracy`` or ``loss`` per epoch.

    The solid training line is the true end-of-epoch value (inference mode, whole training
    set); Keras's running mean over the epoch, with dropout on, is drawn dotted for reference.
    """
    keys = {
        "accuracy": ("train_acc", "accuracy", "val_accuracy"),
        "loss": ("train_loss", "loss", "val_loss"),
    }
    true_key, running_key, val_key = keys[metric]
    epochs = [h["epoch"] for h in history]
    fig, ax = _figure(6.4, 4.2)
    if any(h.get(true_key) is not None for h in history):  # a sweep's trial may not have it
        ax.plot(epochs, _series(history, true_key), "o-", label="training (end of epoch)")
    ax.plot(
        epochs,
        _series(history, running_key),
        ":",
        color="C0",
        alpha=0.6,
        label="training (running, dropout on)",
    )
    ax.plot(epochs, _series(history, val_key), "s-", color="C1", label="validation")
    if best_epoch is not None:
        ax.axvline(
            best_epoch,
            color="grey",
            linestyle="--",
            linewidth=1,
            label=f"best epoch ({best_epoch})",
        )
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric.capitalize()} per epoch")
    ax.grid(alpha=0.3)
    ax.legend()
    _save(fig, path)
    return fig


def plot_confusion(
    y_true: np.ndarray, y_pred: np.ndarray, names: Sequence[str], path: str | os.PathLike[str]
) -> Figure:
    """Plot the confusion matrix in percent of each true class, every cell annotated."""
    n = len(names)
    counts = np.zeros((n, n), dtype=np.int64)
    np.add.at(counts, (y_true, y_pred), 1)
    percent = 100.0 * counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    fig, ax = _figure(7.5, 6.5)
    image = ax.imshow(percent, cmap="Blues", vmin=0, vmax=100)
    fig.colorbar(image, ax=ax, label="% of true class")
    for i in range(n):
        for j in range(n):
            ax.text(j, i, f"{percent[i, j]:.1f}", ha="center", va="center", fontsize=7,
                    color="white" if percent[i, j] > 50 else "black")  # fmt: skip
    ax.set_xticks(range(n), names, rotation=45, ha="right")
    ax.set_yticks(range(n), names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    accuracy = 100.0 * np.trace(counts) / max(counts.sum(), 1)
    ax.set_title(f"Confusion matrix (test, {counts.sum()} images, accuracy {accuracy:.2f}%)")
    _save(fig, path)
    return fig


def plot_predictions(
    images: np.ndarray, probabilities: np.ndarray, y_true: np.ndarray, names: Sequence[str],
    path: str | os.PathLike[str],
) -> Figure:  # fmt: skip
    """Show each image beside its predicted class probabilities, the true class highlighted."""
    rows = len(images)
    fig, axes = _figure(8.0, 1.6 * rows, nrows=rows, ncols=2, width_ratios=(1, 3))
    axes = np.atleast_2d(axes)
    for i in range(rows):
        pred = int(np.argmax(probabilities[i]))
        axes[i, 0].imshow(images[i].reshape(28, 28), cmap="gray_r")
        axes[i, 0].set_axis_off()
        verdict = "right" if pred == y_true[i] else "WRONG"
        axes[i, 0].set_title(f"true {names[y_true[i]]}, {verdict}", fontsize=8)
        colors = ["C7"] * len(names)
        colors[pred] = "C3"
        colors[int(y_true[i])] = "C2"
        axes[i, 1].bar(range(len(names)), probabilities[i], color=colors)
        axes[i, 1].set_ylim(0, 1)
        axes[i, 1].set_xticks(range(len(names)), names, fontsize=7)
        axes[i, 1].tick_params(axis="y", labelsize=7)
    fig.suptitle("First test images: probabilities (green = true class, red = wrong prediction)")
    _save(fig, path)
    return fig


def plot_misclassified(
    images: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray, names: Sequence[str],
    path: str | os.PathLike[str], rows: int = 4, cols: int = 8,
) -> Figure:  # fmt: skip
    """Show up to rows x cols misclassified images, each titled 'true -> predicted'."""
    wrong = np.flatnonzero(y_true != y_pred)[: rows * cols]
    fig, axes = _figure(1.5 * cols, 1.7 * rows, nrows=rows, ncols=cols)
    for ax, index in zip(
        np.ravel(axes), [*wrong, *[None] * (rows * cols - len(wrong))], strict=True
    ):
        ax.set_axis_off()
        if index is None:
            continue
        ax.imshow(images[index].reshape(28, 28), cmap="gray_r")
        ax.set_title(f"#{index}: {names[y_true[index]]} -> {names[y_pred[index]]}", fontsize=7)
    total = int(np.sum(y_true != y_pred))
    fig.suptitle(f"Misclassified test images (first {len(wrong)} of {total}; true -> predicted)")
    _save(fig, path)
    return fig


def plot_grid_heatmap(
    table: Any, title: str, path: str | os.PathLike[str], fmt: str = ".3f",
    marks: dict[Any, str] | None = None,
) -> Figure:  # fmt: skip
    """Draw a rows x columns table of one metric as an annotated heatmap (NaN cells blank);
    ``marks`` adds a symbol to cells keyed (row, column), e.g. "*" for the best."""
    values = table.to_numpy(dtype=float)
    fig, ax = _figure(1.2 * values.shape[1] + 2.5, 0.8 * values.shape[0] + 1.8)
    image = ax.imshow(values, cmap="viridis", aspect="auto")
    fig.colorbar(image, ax=ax)
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            if np.isfinite(values[i, j]):
                mark = (marks or {}).get((table.index[i], table.columns[j]))
                label = format(values[i, j], fmt) + (f" {mark}" if mark else "")
                colour = "black" if values[i, j] > np.nanmean(values) else "white"
                ax.text(j, i, label, ha="center", va="center", fontsize=9, color=colour)
    ax.set_xticks(range(values.shape[1]), [str(c) for c in table.columns])
    ax.set_yticks(range(values.shape[0]), [str(r) for r in table.index])
    ax.set_xlabel(str(table.columns.name))
    ax.set_ylabel(str(table.index.name))
    ax.set_title(title)
    _save(fig, path)
    return fig


def plot_budget_curve(
    table: Any, exercise: dict[int, tuple[float, float]], title: str,
    path: str | os.PathLike[str], exercise_rule: Any = None,
) -> Figure:  # fmt: skip
    """Plot best-of-N against N: each line and its error bars named in the legend.

    ``table`` has budget.csv's columns. Bars are the spread of one search's outcome from one
    search of N to the next (drawn only where estimable); the shaded bands are the 95%
    intervals of the expectations themselves (only where estimable); the exercise's own
    points, if given, are its mean and std (ddof 0) over 3 repeats of the best *test*
    accuracy, beside its rule recomputed from the pool: on all 10,000 test images where
    ``exercise_rule`` (exercise.csv's budget and exercise_rule columns) is given, else on
    the test slice (budget.csv's exercise_expected).
    """
    budgets = table["budget"].to_numpy(dtype=float)
    fig, ax = _figure(7.2, 4.8)
    ax.errorbar(
        budgets,
        table["valid_expected"],
        yerr=table["valid_std"].fillna(0.0),
        fmt="o-",
        capsize=4,
        color="C0",
        label="best validation accuracy of N (expected); bars: spread of one search (±1 sd)",
    )
    band = table["valid_band_lo"].notna().to_numpy()
    if band.any():
        ax.fill_between(budgets[band], table["valid_band_lo"][band], table["valid_band_hi"][band],
                        color="C0", alpha=0.2,
                        label="95% interval of the expected best validation accuracy")  # fmt: skip
    ax.errorbar(budgets, table["test_expected"], yerr=table["test_std"].fillna(0.0), fmt="s-",
                capsize=4, color="C1",
                label="test accuracy of the trial selected on validation; bars: same")  # fmt: skip
    test_band = table["test_band_lo"].notna().to_numpy()
    if test_band.any():
        ax.fill_between(budgets[test_band], table["test_band_lo"][test_band],
                        table["test_band_hi"][test_band], color="C1", alpha=0.2,
                        label="95% interval of the expected test accuracy (selected)")  # fmt: skip
    if exercise_rule is not None and len(exercise_rule):
        ax.plot(exercise_rule["budget"], exercise_rule["exercise_rule"], "^:", color="C4",
                label="the exercise's rule from the pool: best final-epoch accuracy of N on "
                "all 10,000 test images")  # fmt: skip
    elif table["exercise_expected"].notna().any():
        ax.plot(budgets, table["exercise_expected"], "^:", color="C4", alpha=0.8,
                label="best final-epoch test accuracy of N (the exercise's rule)")  # fmt: skip
    if table["select_on_test"].notna().any():
        ax.plot(
            budgets,
            table["select_on_test"],
            "v--",
            color="C3",
            alpha=0.8,
            label="best test accuracy of N (selecting on test, best-validation epoch)",
        )
    shown = [(n, *exercise[n]) for n in exercise if n in set(budgets.astype(int))] or [
        (n, *v) for n, v in exercise.items()]  # fmt: skip
    if shown:
        n, mean, std = (np.array(col, dtype=float) for col in zip(*shown, strict=True))
        ax.errorbar(
            n,
            mean,
            yerr=std,
            fmt="D",
            capsize=4,
            color="C2",
            markerfacecolor="none",
            label="the exercise: best test accuracy of N, mean ± sd of 3 repeats",
        )
    ax.set_xscale("log")
    ax.minorticks_off()
    ax.set_xticks(list(budgets), [str(int(b)) for b in budgets])
    ax.set_xlabel("budget N (trials per search)")
    ax.set_ylabel("accuracy")
    ax.set_title(textwrap.fill(title, 70), fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    _save(fig, path)
    return fig


def _series(history: Sequence[dict[str, Any]], key: str) -> list[float]:
    return [np.nan if h.get(key) is None else h[key] for h in history]


def _figure(width: float, height: float, nrows: int = 1, ncols: int = 1, **gridspec: Any) -> Any:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(nrows, ncols, gridspec_kw=gridspec or None)
    return fig, axes


def _save(fig: Any, path: str | os.PathLike[str]) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
