"""Sweep specs: TOML files in jobs/, validated whole before anything runs.

Every problem in a file (and in its ``--set`` overrides) is collected and reported at once,
so a typo is found on the submitting host, never after waiting in the SLURM queue.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnistfc.trial.config import TrialConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib
from mnistfc.errors import ConfigError, format_problems

KINDS = ("grid", "random", "list")
PROTOCOLS = ("repeats", "pool")
MAX_TRIALS = 100_000  # a typo'd budget must not expand into a plan that fills the memory
_TOP_KEYS = {
    "grid": {"name", "kind", "base", "grid", "epoch_train_metrics"},
    "random": {
        "name",
        "kind",
        "base",
        "space",
        "epoch_train_metrics",
        "protocol",
        "seed",
        "budgets",
        "repeats",
        "pool_size",
    },
    "list": {"name", "kind", "base", "trials", "epoch_train_metrics"},
}
_TRIAL_FIELDS = tuple(f.name for f in dataclasses.fields(TrialConfig))


@dataclass(frozen=True, kw_only=True)
class SweepSpec:
    """A grid (every combination of ``axes``), a random search (draws from ``axes``) or a
    list (``trials``: explicit configs, e.g. the study's winners retrained on new seeds).

    ``axes`` keeps the file's order: the grid expands in it, and tables use it. A list's
    axes are the settings its trials vary, for display only.
    """

    name: str
    kind: str
    base: TrialConfig
    axes: tuple[tuple[str, tuple[Any, ...]], ...]
    protocol: str = "repeats"
    seed: int = 0
    budgets: tuple[int, ...] = ()
    repeats: int = 1
    pool_size: int = 0
    trials: tuple[TrialConfig, ...] = ()
    # The exercise's CalculateMetrics pass after every epoch (the whole training set, dropout
    # off), which its sweeps never ran: off, each trial's train metrics are measured once, on
    # the restored best epoch. It changes what a shard records, not what a trial trains.
    epoch_train_metrics: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Return the canonical JSON-safe form that the plan records and the hash covers."""
        data: dict[str, Any] = {"name": self.name, "kind": self.kind, "base": self.base.to_dict()}
        if self.kind == "list":
            # Every field, defaults included: an entry must not inherit a base's setting.
            data["trials"] = [dataclasses.asdict(trial) for trial in self.trials]
        else:
            data["grid" if self.kind == "grid" else "space"] = {k: list(v) for k, v in self.axes}
        if self.kind == "random":
            data.update(
                protocol=self.protocol,
                seed=self.seed,
                budgets=list(self.budgets),
                repeats=self.repeats,
                pool_size=self.pool_size,
            )
        if self.epoch_train_metrics:  # only when on: earlier folders keep their spec hash
            data["epoch_train_metrics"] = True
        return data

    @property
    def spec_hash(self) -> str:
        """Return a short hash identifying what this spec expands to."""
        canonical = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:12]


def read_toml(path: str | Path, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Read a TOML file and apply ``key.sub=value`` overrides (values parsed as TOML)."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: no such file") from exc
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from exc
    return apply_overrides(data, overrides)


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Set ``key.sub=value`` items in ``data``; a value that is not TOML is a plain string."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} must look like key=value or section.key=value")
        try:
            parsed = tomllib.loads(f"v = {raw}")
        except tomllib.TOMLDecodeError:
            parsed = {"v": raw}  # a bare word such as relu or pool
        except RecursionError as exc:
            raise ConfigError(f"override {item[:60]!r}...: value nested too deeply") from exc
        if set(parsed) != {"v"}:  # "1\nkind = 'x'" would set a second key behind our back
            raise ConfigError(f"override {item!r}: the value must be one TOML value")
        value = parsed["v"]
        *parents, leaf = key.strip().split(".")
        target = data
        for part in parents:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a table")
        target[leaf] = value
    return data


def load_spec(path: str | Path, overrides: Sequence[str] = ()) -> SweepSpec:
    """Load and validate a sweep spec; raise one ConfigError listing every problem."""
    return spec_from_dict(read_toml(path, overrides), where=str(path))


def spec_from_dict(data: Mapping[str, Any], where: str = "spec") -> SweepSpec:
    """Validate a spec mapping (as read from TOML) and build the SweepSpec."""
    problems: list[str] = []
    kind = data.get("kind")
    if kind not in KINDS:
        raise ConfigError(f"{where}: kind must be one of {', '.join(KINDS)}, got {kind!r}")
    unknown = sorted(set(data) - _TOP_KEYS[kind])
    if unknown:
        problems.append(f"unknown key(s) {unknown}; valid: {sorted(_TOP_KEYS[kind])}")
    name = data.get("name", kind)
    if not isinstance(name, str) or not name.replace("-", "").replace("_", "").isalnum():
        problems.append(f"name: must be letters, digits, - or _, got {name!r}")
    base = _base_config(data.get("base", {}), problems)
    extra: dict[str, Any] = {}
    if kind == "list":
        extra["trials"] = _list_trials(data.get("trials"), base or TrialConfig(), problems)
        axes = varied_settings(extra["trials"])
    else:
        axes_key = "grid" if kind == "grid" else "space"
        axes = _axes(data.get(axes_key), axes_key, base, problems)
    if kind == "random":
        extra = _random_settings(data, problems)
    epoch_train_metrics = data.get("epoch_train_metrics", False)
    if not isinstance(epoch_train_metrics, bool):
        problems.append(f"epoch_train_metrics: must be true or false, got {epoch_train_metrics!r}")
    extra["epoch_train_metrics"] = epoch_train_metrics
    if problems:
        raise ConfigError(format_problems(where, problems))
    return SweepSpec(name=name, kind=kind, base=base or TrialConfig(), axes=axes, **extra)


def _base_config(base: Any, problems: list[str]) -> TrialConfig | None:
    if not isinstance(base, dict):
        problems.append(f"base: must be a table of trial settings, got {base!r}")
        return None
    try:
        return TrialConfig.from_dict(base)
    except ConfigError as exc:
        problems.append(f"base: {exc}")
        return None


def list_spec(name: str, trials: Sequence[TrialConfig]) -> SweepSpec:
    """Return a list spec of these trials (the first is the base); validated like a file's."""
    data = {"name": name, "kind": "list", "base": trials[0].to_dict() if trials else {},
            "trials": [dataclasses.asdict(trial) for trial in trials]}  # fmt: skip
    return spec_from_dict(data, where=f"{name} (list)")


def varied_settings(trials: Sequence[TrialConfig]) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    """Return the settings whose values differ between trials, each with its values."""
    axes = []
    for name in _TRIAL_FIELDS:
        values = tuple(dict.fromkeys(getattr(trial, name) for trial in trials))
        if len(values) > 1:
            axes.append((name, values))
    return tuple(axes)


def _list_trials(table: Any, base: TrialConfig, problems: list[str]) -> tuple[TrialConfig, ...]:
    if not isinstance(table, list) or not table:
        problems.append(f"trials: must be a non-empty list of tables of settings, got {table!r}")
        return ()
    if len(table) > MAX_TRIALS:
        problems.append(f"trials: {len(table)} trials; a sweep holds at most {MAX_TRIALS}")
        return ()
    trials = []
    for i, entry in enumerate(table):
        if not isinstance(entry, dict):
            problems.append(f"trials[{i}]: must be a table of settings, got {entry!r}")
            continue
        try:
            trials.append(TrialConfig.from_dict({**base.to_dict(), **entry}))
        except ConfigError as exc:
            problems.append(f"trials[{i}]: {exc}")
    return tuple(trials)


def _axes(
    table: Any, key: str, base: TrialConfig | None, problems: list[str]
) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    if not isinstance(table, dict) or not table:
        problems.append(f"[{key}]: must be a table of setting = [values, ...], got {table!r}")
        return ()
    axes = []
    for name, values in table.items():
        if name not in _TRIAL_FIELDS:
            problems.append(f"{key}.{name}: unknown setting; valid: {', '.join(_TRIAL_FIELDS)}")
        elif not isinstance(values, list) or not values:
            problems.append(f"{key}.{name}: must be a non-empty list, got {values!r}")
        else:
            checked = [
                _checked_value(base or TrialConfig(), name, v, key, problems) for v in values
            ]
            if len(set(map(repr, checked))) != len(checked):
                problems.append(f"{key}.{name}: repeated values in {values!r}")
            axes.append((name, tuple(checked)))
    return tuple(axes)


def _checked_value(base: TrialConfig, name: str, value: Any, key: str, problems: list[str]) -> Any:
    # Validate through TrialConfig itself, so a spec accepts exactly what a trial accepts,
    # and keep its coerced value (0 -> 0.0 for dropout) so ids match hand-made configs.
    try:
        return getattr(dataclasses.replace(base, **{name: value}), name)
    except ConfigError as exc:
        problems.append(f"{key}.{name}: {str(exc).split(': ', 2)[-1]}")
    return value


def _random_settings(data: Mapping[str, Any], problems: list[str]) -> dict[str, Any]:
    protocol = data.get("protocol", "repeats")
    if protocol not in PROTOCOLS:
        problems.append(f"protocol: {protocol!r} is not one of {', '.join(PROTOCOLS)}")
    seed, repeats = data.get("seed", 0), data.get("repeats", 1)
    if not _is_int(seed) or seed < 0:
        problems.append(f"seed: must be an integer >= 0, got {seed!r}")
    if not _is_int(repeats) or repeats < 1:
        problems.append(f"repeats: must be a positive integer, got {repeats!r}")
    budgets = data.get("budgets")
    if (
        not isinstance(budgets, list)
        or not budgets
        or not all(_is_int(b) and b > 0 for b in budgets)
    ):
        problems.append(f"budgets: must be a non-empty list of positive integers, got {budgets!r}")
        budgets = [1]
    pool_size = data.get("pool_size", max(budgets))
    if not _is_int(pool_size) or pool_size < 1:
        problems.append(f"pool_size: must be a positive integer, got {pool_size!r}")
    elif max(budgets) > pool_size:
        problems.append(
            f"budgets: budget {max(budgets)} is larger than the pool ({pool_size} trials)"
        )
    elif _is_int(repeats):
        planned = pool_size if protocol == "pool" else repeats * sum(budgets)
        if planned > MAX_TRIALS:
            what = "pool_size" if protocol == "pool" else "budgets x repeats"
            problems.append(f"{what}: {planned} trials; a sweep holds at most {MAX_TRIALS}")
    return {
        "protocol": protocol,
        "seed": seed,
        "budgets": tuple(sorted(set(budgets))),
        "repeats": repeats,
        "pool_size": pool_size,
    }


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
