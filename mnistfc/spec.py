"""Sweep specs and cluster profiles: TOML files in jobs/, validated whole before anything runs.

Every problem in a file (and in its ``--set`` overrides) is collected and reported at once,
so a typo is found on the submitting host, never after waiting in the SLURM queue.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mnistfc.config import TrialConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib
from mnistfc.errors import ConfigError

KINDS = ("grid", "random")
PROTOCOLS = ("repeats", "pool")
EXECUTORS = ("slurm", "local", "debug")
MAX_TRIALS = 100_000  # a typo'd budget must not expand into a plan that fills the memory
_TOP_KEYS = {
    "grid": {"name", "kind", "base", "grid"},
    "random": {
        "name",
        "kind",
        "base",
        "space",
        "protocol",
        "seed",
        "budgets",
        "repeats",
        "pool_size",
    },
}
_TRIAL_FIELDS = tuple(f.name for f in dataclasses.fields(TrialConfig))


@dataclass(frozen=True, kw_only=True)
class SweepSpec:
    """A grid (every combination of ``axes``) or a random search (draws from ``axes``).

    ``axes`` keeps the file's order: the grid expands in it, and tables use it.
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

    def to_dict(self) -> dict[str, Any]:
        """Return the canonical JSON-safe form that the plan records and the hash covers."""
        data: dict[str, Any] = {"name": self.name, "kind": self.kind, "base": self.base.to_dict()}
        data["grid" if self.kind == "grid" else "space"] = {k: list(v) for k, v in self.axes}
        if self.kind == "random":
            data.update(
                protocol=self.protocol,
                seed=self.seed,
                budgets=list(self.budgets),
                repeats=self.repeats,
                pool_size=self.pool_size,
            )
        return data

    @property
    def spec_hash(self) -> str:
        """Return a short hash identifying what this spec expands to."""
        canonical = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:12]


@dataclass(frozen=True, kw_only=True)
class ClusterProfile:
    """Where and how array tasks run: submitit executor, sbatch resources, container image."""

    executor: str = "local"
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    gpus_per_task: int = 0
    cpus_per_task: int = 2
    mem_gb: float = 8.0
    timeout_min: int = 60
    array_parallelism: int = 32
    chunk: int = 0  # trials per task; 0 = auto (slurm: 1, local/debug: one task per lane)
    max_parallel: int = 0
    pack: bool = True  # trials sharing batch size and epochs train in one step (pack.py)
    pack_mb: float = 1024.0  # memory budget of one pack
    signal_delay_s: int = 90  # SLURM signals a task this long before its time limit (requeue)
    container: str | None = None
    container_binds: tuple[str, ...] = ()
    setup: tuple[str, ...] = ()
    sbatch: Mapping[str, Any] = field(default_factory=dict)


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
    axes_key = "grid" if kind == "grid" else "space"
    axes = _axes(data.get(axes_key), axes_key, base, problems)
    extra: dict[str, Any] = {}
    if kind == "random":
        extra = _random_settings(data, problems)
    if problems:
        raise ConfigError(_format(where, problems))
    return SweepSpec(name=name, kind=kind, base=base or TrialConfig(), axes=axes, **extra)


def load_profile(path: str | Path | None, overrides: Sequence[str] = ()) -> ClusterProfile:
    """Load a cluster profile (None: the local defaults); report every problem at once."""
    data = read_toml(path, overrides) if path is not None else apply_overrides({}, overrides)
    where = str(path) if path is not None else "default profile"
    problems: list[str] = []
    valid = {f.name: f for f in dataclasses.fields(ClusterProfile)}
    unknown = sorted(set(data) - set(valid))
    if unknown:
        problems.append(f"unknown key(s) {unknown}; valid: {sorted(valid)}")
    values = {k: v for k, v in data.items() if k in valid}
    for key in ("partition", "account", "qos", "container"):
        if values.get(key) == "":
            values[key] = None  # TOML has no null: an empty string means unset
    for key in ("container_binds", "setup"):
        if key in values:
            if not isinstance(values[key], list) or not all(
                isinstance(s, str) for s in values[key]
            ):
                problems.append(f"{key}: must be a list of strings, got {values[key]!r}")
            else:
                values[key] = tuple(values[key])
    if "sbatch" in values and not isinstance(values["sbatch"], dict):
        problems.append(
            f"sbatch: must be a table of extra sbatch parameters, got {values['sbatch']!r}"
        )
    profile = ClusterProfile()
    try:
        profile = ClusterProfile(**values)
    except TypeError as exc:
        problems.append(str(exc))
    problems += _profile_problems(profile)
    if problems:
        raise ConfigError(_format(where, problems))
    return profile


def _profile_problems(p: ClusterProfile) -> list[str]:
    problems = []
    if p.executor not in EXECUTORS:
        problems.append(f"executor: {p.executor!r} is not one of {', '.join(EXECUTORS)}")
    if p.executor == "slurm" and not p.partition:
        problems.append("partition: a slurm profile needs a partition (see `sinfo -s`)")
    for key in ("cpus_per_task", "timeout_min", "array_parallelism"):
        value = getattr(p, key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            problems.append(f"{key}: must be a positive integer, got {value!r}")
    for key in ("gpus_per_task", "max_parallel", "chunk", "signal_delay_s"):
        value = getattr(p, key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            problems.append(f"{key}: must be an integer >= 0, got {value!r}")
    for key in ("mem_gb", "pack_mb"):
        if not _is_positive_number(getattr(p, key)):
            problems.append(f"{key}: must be a finite number > 0, got {getattr(p, key)!r}")
    if not isinstance(p.pack, bool):
        problems.append(f"pack: must be true or false, got {p.pack!r}")
    for key in ("partition", "account", "qos", "container"):
        value = getattr(p, key)
        if value is not None and not isinstance(value, str):
            problems.append(f"{key}: must be a string, got {value!r}")
    return problems


def _base_config(base: Any, problems: list[str]) -> TrialConfig | None:
    if not isinstance(base, dict):
        problems.append(f"base: must be a table of trial settings, got {base!r}")
        return None
    try:
        return TrialConfig.from_dict(base)
    except ConfigError as exc:
        problems.append(f"base: {exc}")
        return None


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


def _is_positive_number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value) and value > 0
    except OverflowError:  # an integer too large for a float
        return False


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _format(where: str, problems: list[str]) -> str:
    if len(problems) == 1:
        return f"{where}: {problems[0]}"
    return f"{where} ({len(problems)} problems):\n" + "\n".join(f"  - {p}" for p in problems)
