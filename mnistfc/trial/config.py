"""Typed, validated configuration: what one trial is, as a frozen value with a stable id."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from mnistfc.errors import ConfigError, format_problems

DATASETS = ("mnist", "fashion_mnist")
VALID_SPLITS = ("exercise", "stratified")
# Fields added after the first release, at the value every older trial implicitly had: left
# out of the canonical form while at it, so every older trial id (and spec hash) stays valid.
_LATER_DEFAULTS = {"valid_split": "exercise"}
ACTIVATIONS = ("relu", "elu", "selu", "gelu", "sigmoid", "tanh", "softplus", "swish", "linear")


@dataclass(frozen=True, kw_only=True)
class TrialConfig:
    """One trial of the exercise's network: 784 -> Dense(units) -> Dropout -> Dense(10) softmax.

    Field names are Keras's own argument names. Defaults are the exercise's single model.
    ``valid_size`` images are taken from the *end* of the test split for validation, as the
    exercise did (valid = test[8000:], test = test[:8000]); ``valid_split = "stratified"``
    draws them instead with a fixed seed, class by class, so the two slices are alike
    (the exercise's validation slice is easier than its test slice: see README).
    """

    dataset: str = "mnist"
    units: int = 128
    dropout: float = 0.3
    activation: str = "relu"
    learning_rate: float = 1e-3
    batch_size: int = 1000
    epochs: int = 10
    seed: int = 0
    valid_size: int = 2000
    valid_split: str = "exercise"

    def __post_init__(self) -> None:
        # Coerce ints given for float fields so TrialConfig(dropout=0) hashes like dropout=0.0,
        # and -0.0 to 0.0: equal configs must have one id (json.dumps keeps the sign).
        problems: list[str] = []
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.type == "float" and type(value) in (int, float):
                try:
                    object.__setattr__(self, field.name, float(value) + 0.0)
                except OverflowError:
                    problems.append(f"{field.name}: expected float, got an integer too large")
        problems = problems or _type_problems(self) or _value_problems(self)
        if problems:
            raise ConfigError(format_problems("invalid trial config", problems))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrialConfig:
        """Build a config from a mapping, rejecting unknown keys and listing the valid ones."""
        valid = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(valid), key=repr)
        if unknown:
            raise ConfigError(
                f"unknown trial config key(s) {', '.join(map(repr, unknown))}; "
                f"valid keys: {', '.join(valid)}"
            )
        return cls(**dict(data))

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-safe mapping that ``from_dict`` reads back and the id hashes.

        Fields added after the first release are left out while at their default, so a
        config an older mnistfc wrote reads back to the same trial.
        """
        data = asdict(self)
        for key, default in _LATER_DEFAULTS.items():
            if data[key] == default:
                del data[key]
        return data

    @property
    def trial_id(self) -> str:
        """Return the first 12 hex digits of the SHA-256 of the canonical JSON config."""
        canonical = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:12]


_FIELD_TYPES: dict[str, tuple[type, ...]] = {"int": (int,), "float": (float, int), "str": (str,)}


def _type_problems(cfg: Any) -> list[str]:
    problems = []
    for field in dataclasses.fields(cfg):
        value = getattr(cfg, field.name)
        allowed = _FIELD_TYPES[str(field.type)]
        # bool is an int subclass; a True where a number belongs is always a typo.
        if isinstance(value, bool) or not isinstance(value, allowed):
            problems.append(f"{field.name}: expected {field.type}, got {value!r}")
    return problems


def _value_problems(cfg: TrialConfig) -> list[str]:
    problems = []
    if cfg.dataset not in DATASETS:
        problems.append(f"dataset: {cfg.dataset!r} is not one of {', '.join(DATASETS)}")
    if cfg.valid_split not in VALID_SPLITS:
        problems.append(f"valid_split: {cfg.valid_split!r} is not one of {', '.join(VALID_SPLITS)}")
    if cfg.activation not in ACTIVATIONS:
        problems.append(f"activation: {cfg.activation!r} is not one of {', '.join(ACTIVATIONS)}")
    for name in ("units", "batch_size", "epochs", "valid_size"):
        if getattr(cfg, name) < 1:
            problems.append(f"{name}: must be a positive integer, got {getattr(cfg, name)}")
        elif getattr(cfg, name) >= 2**31:  # TensorFlow sizes are 32-bit: fail here, not later
            problems.append(f"{name}: must be below 2**31, got {getattr(cfg, name)}")
    if not (0.0 <= cfg.dropout < 1.0):
        problems.append(f"dropout: must be in [0, 1), got {cfg.dropout}")
    if not (math.isfinite(cfg.learning_rate) and cfg.learning_rate > 0):
        problems.append(f"learning_rate: must be a finite number > 0, got {cfg.learning_rate}")
    if not (0 <= cfg.seed < 2**32):
        problems.append(f"seed: must be in [0, 2**32), got {cfg.seed}")
    return problems
