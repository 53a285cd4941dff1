"""A pack's progress as a value, and its checkpoint on disk.

A checkpoint holds the pack's arrays (weights, Adam moments, best-epoch weights, step count)
and a ``PackState``: where the loop stands (last finished epoch, steps done in the next one
and their partial sums) and each trial's bookkeeping. Random streams are keyed on (seed,
epoch) and (seed, step), so a resumed pack continues exactly where the saved one stopped,
even mid-epoch. Files are written atomically: a reader sees the previous state or the new
one, never a mix.
"""

from __future__ import annotations

import json
import logging
import math
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mnistfc.atomic import atomic_path

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
_STATE_KEY = "__state__"

History = list[dict[str, float | None]]


@dataclass
class PackState:
    """Where a pack's epoch loop stands; everything but the arrays, JSON-safe."""

    trials: list[str]
    epoch: int = 0  # the last finished epoch
    next_step: int = 0  # steps already done in epoch + 1 (0: at an epoch boundary)
    partial_loss: list[float] = field(default_factory=list)  # their sums, per trial
    partial_correct: list[float] = field(default_factory=list)
    fit_s: float = 0.0
    history: list[History] = field(default_factory=list)
    best_val: list[float | None] = field(default_factory=list)
    best_epoch: list[int | None] = field(default_factory=list)
    diverged_at: list[int | None] = field(default_factory=list)
    started_at: str = ""  # UTC, when the pack first started (kept across resumes)
    epoch_s: list[float] = field(default_factory=list)  # each finished epoch's seconds

    @classmethod
    def fresh(cls, trials: list[str]) -> PackState:
        """Return the state of a pack that has not trained yet."""
        n = len(trials)
        return cls(
            trials=trials,
            history=[[] for _ in range(n)],
            best_val=[None] * n,
            best_epoch=[None] * n,
            diverged_at=[None] * n,
        )

    def record_epoch(
        self, epoch: int, loss: np.ndarray, acc: np.ndarray, train: Any, valid: Any
    ) -> np.ndarray:
        """Append an epoch to every live trial's history; return which trials improved.

        ``train`` and ``valid`` are (loss, accuracy) arrays (``train`` None: not measured
        this epoch, recorded as null). Only a strict improvement of
        validation accuracy counts, so the first best epoch is kept (Keras's
        ModelCheckpoint rule); a non-finite training loss ends the trial as diverged.
        """
        improved = np.zeros(len(self.trials), dtype=bool)
        for t in range(len(self.trials)):
            if self.diverged_at[t] is not None:
                continue
            finite = math.isfinite(loss[t])
            measured = finite and train is not None
            self.history[t].append(
                {
                    "epoch": epoch,
                    "loss": float(loss[t]),
                    "accuracy": float(acc[t]),
                    "val_loss": float(valid[0][t]),
                    "val_accuracy": float(valid[1][t]),
                    "train_loss": float(train[0][t]) if measured else None,
                    "train_acc": float(train[1][t]) if measured else None,
                }
            )
            best = self.best_val[t]
            if not finite:
                self.diverged_at[t] = epoch
            elif best is None or valid[1][t] > best:
                self.best_val[t], self.best_epoch[t], improved[t] = float(valid[1][t]), epoch, True
        self.epoch, self.next_step = epoch, 0
        self.partial_loss, self.partial_correct = [], []
        return improved

    @property
    def all_diverged(self) -> bool:
        """Return whether no trial of the pack is still training."""
        return all(d is not None for d in self.diverged_at)


def checkpoint_path(results_dir: str | Path, pack_id: str) -> Path:
    """Return where a pack's state lives under a results folder."""
    return Path(results_dir) / CHECKPOINT_DIR / f"{pack_id}.npz"


def save_state(path: Path, arrays: list[np.ndarray], state: PackState) -> None:
    """Write the arrays and the state to ``path`` atomically."""
    named: dict[str, Any] = {f"a{i}": a for i, a in enumerate(arrays)}
    named[_STATE_KEY] = np.array(json.dumps(asdict(state), allow_nan=False))
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **named)


def load_state(path: Path, trial_ids: list[str]) -> tuple[list[np.ndarray], PackState] | None:
    """Return the saved arrays and state, or None when absent, unreadable or another pack's.

    A checkpoint that cannot be used is never fatal: the pack starts from epoch one.
    """
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as saved:
            state = PackState(**json.loads(str(saved[_STATE_KEY])))
            arrays = [saved[f"a{i}"] for i in range(len(saved.files) - 1)]
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as exc:
        log.warning("ignoring unreadable checkpoint %s (%s); starting from epoch 1", path, exc)
        return None
    if state.trials != trial_ids:
        log.warning("ignoring checkpoint %s of another pack; starting from epoch 1", path)
        return None
    return arrays, state


def remove_state(path: Path) -> None:
    """Delete a finished pack's state (its shards now hold the results)."""
    path.unlink(missing_ok=True)
