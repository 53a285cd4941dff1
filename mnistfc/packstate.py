"""Save a pack's training state at each epoch end, so a killed or requeued task resumes.

Why: a preempted or timed-out array task would otherwise lose every epoch of every trial in
its pack. The state is the arrays (weights, Adam moments, best-epoch weights, step count)
plus the per-trial bookkeeping; random streams are keyed on (seed, epoch) and (seed, step),
so a resumed pack continues exactly where the saved one stopped. Files are written
atomically: a reader sees the previous epoch's state or the new one, never a mix.
"""

from __future__ import annotations

import json
import logging
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from mnistfc.atomic import atomic_path

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
_STATE_KEY = "__state__"


def checkpoint_path(results_dir: str | Path, pack_id: str) -> Path:
    """Return where a pack's state lives under a results folder."""
    return Path(results_dir) / CHECKPOINT_DIR / f"{pack_id}.npz"


def save_state(path: Path, arrays: list[np.ndarray], state: dict[str, Any]) -> None:
    """Write the arrays and the JSON-safe state to ``path`` atomically."""
    named: dict[str, Any] = {f"a{i}": a for i, a in enumerate(arrays)}
    named[_STATE_KEY] = np.array(json.dumps(state))
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **named)


def load_state(path: Path, trial_ids: list[str]) -> tuple[list[np.ndarray], dict[str, Any]] | None:
    """Return the saved arrays and state, or None when absent, unreadable or another pack's.

    A checkpoint that cannot be used is never fatal: the pack starts from epoch one.
    """
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as saved:
            state = json.loads(str(saved[_STATE_KEY]))
            arrays = [saved[f"a{i}"] for i in range(len(saved.files) - 1)]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
        log.warning("ignoring unreadable checkpoint %s (%s); starting from epoch 1", path, exc)
        return None
    if state.get("trials") != trial_ids:
        log.warning("ignoring checkpoint %s of another pack; starting from epoch 1", path)
        return None
    return arrays, state


def remove_state(path: Path) -> None:
    """Delete a finished pack's state (its shards now hold the results)."""
    path.unlink(missing_ok=True)
