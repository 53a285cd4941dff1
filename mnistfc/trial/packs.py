"""Trials that run together: a ``Pack`` trains in one process (in one compiled step under the
packed engine, one trial after another under Keras), a ``Task`` is the packs one job runs.

One definition from planning to status: ``launch.tasks`` plans them, ``folder.plan`` records
them in ``sweep.json`` by trial id (and reads them back as these classes), the worker gets
its ``Task`` pickled and runs each pack as given, and ``sweep.progress`` joins them with job
states. A pack's id names its checkpoint and heartbeat, so only the same set of trials can
resume a checkpoint.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from mnistfc.trial.config import TrialConfig
from mnistfc.trial.search import PlannedTrial


def pack_id(trial_ids: Iterable[str]) -> str:
    """Return the stable name of a set of trials: the hash of their sorted ids."""
    joined = ",".join(sorted(trial_ids))
    return hashlib.sha256(joined.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Pack:
    """Trials that train together, in their planned order."""

    trials: tuple[PlannedTrial, ...]

    def __post_init__(self) -> None:
        ids = self.trial_ids
        if not ids or len(set(ids)) != len(ids):
            raise ValueError(f"a pack holds each trial once and at least one, got {ids}")

    @property
    def id(self) -> str:
        """Return the pack's name (its checkpoint's and heartbeat's)."""
        return pack_id(self.trial_ids)

    @property
    def trial_ids(self) -> tuple[str, ...]:
        """Return the trial ids in planned order."""
        return tuple(t.trial_id for t in self.trials)

    @property
    def configs(self) -> tuple[TrialConfig, ...]:
        """Return the trials' configs in planned order."""
        return tuple(t.config for t in self.trials)

    def __len__(self) -> int:
        return len(self.trials)

    def without(self, done: Iterable[str]) -> Pack | None:
        """Return the pack minus trials finished elsewhere (itself, id and all, when none
        are; None when all are)."""
        gone = set(done)
        left = tuple(t for t in self.trials if t.trial_id not in gone)
        if len(left) == len(self.trials):
            return self
        return Pack(left) if left else None


@dataclass(frozen=True)
class Task:
    """The packs one job runs, in order."""

    packs: tuple[Pack, ...]

    @property
    def trial_ids(self) -> tuple[str, ...]:
        """Return every trial id of the task, pack by pack."""
        return tuple(i for pack in self.packs for i in pack.trial_ids)

    @property
    def n_trials(self) -> int:
        """Return how many trials the task holds."""
        return sum(len(p) for p in self.packs)

    def to_json(self) -> list[list[str]]:
        """Return the form kept in sweep.json: each pack's trial ids."""
        return [list(pack.trial_ids) for pack in self.packs]

    @classmethod
    def from_json(cls, data: object, trials: Mapping[str, PlannedTrial]) -> Task:
        """Read a recorded task against the plan's trials (ValueError/TypeError/KeyError
        when malformed or naming a trial the plan lacks)."""
        if not isinstance(data, list) or not all(isinstance(p, list) for p in data):
            raise TypeError(f"a task must be a list of packs (lists of trial ids), got {data!r}")
        return cls(tuple(Pack(tuple(trials[str(i)] for i in pack)) for pack in data))
