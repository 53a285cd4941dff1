"""A running pack's progress on disk: one small JSON per pack, rewritten at each epoch end.

Shards appear only when a pack ends, which for a big pack is many minutes; ``status`` and
the progress bar read these files to show epochs done and an ETA from measured epoch
times. A heartbeat is advisory: a missing, stale or torn one only makes progress coarser,
and the shards stay the only record of results.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from mnistfc.atomic import atomic_write_text

HEARTBEAT_DIR = "running"


@dataclass(frozen=True)
class Heartbeat:
    """Where one pack stands: its trials, epochs done of how many, and each epoch's seconds."""

    pack_id: str
    trials: tuple[str, ...]
    epoch: int
    epochs: int
    epoch_s: tuple[float, ...]
    host: str = ""
    job_id: str = ""
    updated: float = 0.0  # time.time() of the write

    @property
    def mean_epoch_s(self) -> float | None:
        """Return the mean measured seconds per epoch (None before the first epoch ends)."""
        return sum(self.epoch_s) / len(self.epoch_s) if self.epoch_s else None

    @property
    def remaining_s(self) -> float | None:
        """Return the seconds its remaining epochs should take at the mean measured pace."""
        mean = self.mean_epoch_s
        return None if mean is None else (self.epochs - self.epoch) * mean


def heartbeat_path(results_dir: str | os.PathLike[str], pack_id: str) -> Path:
    """Return where a pack's heartbeat lives."""
    return Path(results_dir) / HEARTBEAT_DIR / f"{pack_id}.json"


def write_heartbeat(results_dir: str | os.PathLike[str], beat: Heartbeat) -> None:
    """Write (replace) a pack's heartbeat atomically."""
    beat = dataclasses.replace(beat, updated=time.time())
    atomic_write_text(heartbeat_path(results_dir, beat.pack_id), json.dumps(asdict(beat)) + "\n")


def clear_heartbeat(results_dir: str | os.PathLike[str], pack_id: str) -> None:
    """Remove a finished pack's heartbeat (its shards now say it all)."""
    heartbeat_path(results_dir, pack_id).unlink(missing_ok=True)


def read_heartbeats(results_dir: str | os.PathLike[str]) -> list[Heartbeat]:
    """Return every readable heartbeat of a results folder (unreadable ones are skipped)."""
    folder = Path(results_dir) / HEARTBEAT_DIR
    beats = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            data["trials"] = tuple(data["trials"])
            data["epoch_s"] = tuple(float(s) for s in data["epoch_s"])
            beats.append(Heartbeat(**data))
        except (OSError, ValueError, TypeError, KeyError):
            continue
    return beats
