from __future__ import annotations

from pathlib import Path

import numpy as np

from mnistfc import plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_every_figure_is_a_png_and_no_temp_file_remains(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = rng.random((40, 784), dtype=np.float32)
    y_true = rng.integers(0, 10, 40)
    probs = rng.dirichlet(np.ones(10), 40)
    y_pred = probs.argmax(1)
    history = [
        {"epoch": e, "loss": 1 / e, "accuracy": 1 - 1 / (e + 1),
         "val_loss": None if e == 2 else 1 / e,
         "val_accuracy": 0.9, "train_loss": 1 / e, "train_acc": 0.8}
        for e in (1, 2, 3)
    ]  # fmt: skip
    names = plots.class_names("fashion_mnist")
    plots.plot_history(history, "accuracy", tmp_path / "a.png", best_epoch=2)
    plots.plot_history(history, "loss", tmp_path / "l.png", best_epoch=None)
    plots.plot_confusion(y_true, y_pred, names, tmp_path / "c.png")
    plots.plot_predictions(images[:10], probs[:10], y_true[:10], names, tmp_path / "p.png")
    plots.plot_misclassified(images, y_true, y_pred, names, tmp_path / "m.png")
    plots.plot_misclassified(images[:1], y_true[:1], y_true[:1], names, tmp_path / "none.png")
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == ["a.png", "c.png", "l.png", "m.png", "none.png", "p.png"]
    assert all((tmp_path / n).read_bytes()[:8] == PNG_MAGIC for n in written)
