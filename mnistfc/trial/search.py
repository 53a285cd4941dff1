"""Expand a sweep spec into trials, deterministically, and group them into chunks.

Random draws come from SHA-256 of (spec seed, draw key, setting), not from a library RNG
whose stream may change between versions: the same spec gives the same trials anywhere.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from mnistfc.errors import ConfigError
from mnistfc.trial.config import TrialConfig
from mnistfc.trial.spec import SweepSpec

T = TypeVar("T")


@dataclass(frozen=True)
class PlannedTrial:
    """A trial of a sweep and the draws it stands for (random search: repeat and budget)."""

    config: TrialConfig
    tags: tuple[tuple[tuple[str, Any], ...], ...] = ()

    @property
    def trial_id(self) -> str:
        """Return the config's stable id."""
        return self.config.trial_id


def expand(spec: SweepSpec) -> list[PlannedTrial]:
    """Return the spec's trials in a stable order, each trial id once."""
    if spec.kind == "grid":
        return _expand_grid(spec)
    if spec.kind == "list":
        return _merge([(trial, ()) for trial in spec.trials])
    keys: list[tuple[str, tuple[tuple[str, Any], ...]]]
    if spec.protocol == "pool":
        keys = [(f"pool/{i}", (("pool", i),)) for i in range(spec.pool_size)]
    else:
        keys = [
            (f"r{r}/n{n}/{i}", (("repeat", r), ("budget", n), ("draw", i)))
            for r in range(spec.repeats)
            for n in spec.budgets
            for i in range(n)
        ]
    return _merge([(_draw(spec, key), tag) for key, tag in keys])


def chunk(trials: Sequence[T], size: int) -> list[list[T]]:
    """Split trials into consecutive chunks of at most ``size`` (one array task each)."""
    if size < 1:
        raise ConfigError(f"chunk size must be >= 1, got {size}")
    return [list(trials[i : i + size]) for i in range(0, len(trials), size)]


def _expand_grid(spec: SweepSpec) -> list[PlannedTrial]:
    names = [name for name, _ in spec.axes]
    combos = itertools.product(*(values for _, values in spec.axes))
    return _merge(
        [(dataclasses.replace(spec.base, **dict(zip(names, c, strict=True))), ()) for c in combos]
    )


def _draw(spec: SweepSpec, key: str) -> TrialConfig:
    chosen = {
        name: values[_uniform(spec.seed, key, name, len(values))] for name, values in spec.axes
    }
    # Each draw trains a fresh network, as in the exercise: its own initialisation seed, so
    # two draws of the same settings are two trials, not one.
    if "seed" not in chosen:
        chosen["seed"] = _uniform(spec.seed, key, "seed", 2**31)
    return dataclasses.replace(spec.base, **chosen)


def _uniform(seed: int, key: str, name: str, n: int) -> int:
    digest = hashlib.sha256(f"{seed}/{key}/{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % n


def _merge(
    drawn: list[tuple[TrialConfig, tuple[tuple[str, Any], ...]]],
) -> list[PlannedTrial]:
    by_id: dict[str, tuple[TrialConfig, list[tuple[tuple[str, Any], ...]]]] = {}
    for config, tag in drawn:
        entry = by_id.setdefault(config.trial_id, (config, []))
        if tag:
            entry[1].append(tag)
    return [PlannedTrial(config, tuple(tags)) for config, tags in by_id.values()]
