"""The result schema: one JSON shard per trial, written atomically, read back with validation."""

from __future__ import annotations

import enum
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

from mnistfc.atomic import TMP_SUFFIX, atomic_write_text
from mnistfc.config import TrialConfig
from mnistfc.errors import ConfigError, ShardError

SCHEMA_VERSION = 1
SHARD_KEYS = (
    "schema_version",
    "sweep",
    "trial_id",
    "config",
    "seed",
    "status",
    "data",
    "metrics",
    "history",
    "timing",
    "env",
    "error",
)
SPLITS = ("train", "valid", "test")
SPLIT_METRICS = ("loss", "accuracy", "error_pct")
HISTORY_KEYS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "train_loss", "train_acc")
TIMING_KEYS = ("load_s", "fit_s", "eval_s", "total_s")


class Status(str, enum.Enum):
    """How a trial ended: ``diverged`` (non-finite loss) is a result, ``failed`` is a fault."""

    COMPLETED = "completed"
    FAILED = "failed"
    DIVERGED = "diverged"


@dataclass(frozen=True)
class TrialResult:
    """Everything a shard records about one trial; ``model`` stays in memory only."""

    config: TrialConfig
    status: Status
    metrics: dict[str, Any] | None
    history: list[dict[str, float | None]]
    timing: dict[str, float]
    env: dict[str, Any]
    data: dict[str, Any] | None = None
    sweep: dict[str, Any] | None = None
    error: str | None = None
    model: Any = field(default=None, compare=False, repr=False)

    @property
    def trial_id(self) -> str:
        """Return the config's stable id, which is also the shard's file name."""
        return self.config.trial_id

    def to_record(self) -> dict[str, Any]:
        """Return the shard as a JSON-safe dict in schema order (non-finite floats -> null)."""
        record = {
            "schema_version": SCHEMA_VERSION,
            "sweep": self.sweep,
            "trial_id": self.trial_id,
            "config": self.config.to_dict(),
            "seed": self.config.seed,
            "status": self.status.value,
            "data": self.data,
            "metrics": self.metrics,
            "history": self.history,
            "timing": self.timing,
            "env": self.env,
            "error": self.error,
        }
        return _json_safe(record)


def shard_dir(results_dir: str | os.PathLike[str]) -> Path:
    """Return the folder holding a results dir's shards."""
    return Path(results_dir) / "shards"


def shard_path(results_dir: str | os.PathLike[str], trial_id: str) -> Path:
    """Return where the shard of ``trial_id`` lives."""
    return shard_dir(results_dir) / f"{trial_id}.json"


def write_shard(results_dir: str | os.PathLike[str], result: TrialResult) -> Path:
    """Validate and atomically write a result's shard; return its path."""
    record = result.to_record()
    validate_record(record, "<new shard>")
    path = shard_path(results_dir, result.trial_id)
    atomic_write_text(path, json.dumps(record, indent=1, allow_nan=False) + "\n")
    return path


def read_shard(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate one shard.

    Raises:
        ShardError: unreadable, not JSON, unknown schema version, or a field of the wrong kind.
    """
    path = Path(path)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ShardError(f"{path}: not a readable JSON shard ({exc})") from exc
    validate_record(record, str(path))
    return record


def list_shards(results_dir: str | os.PathLike[str]) -> list[Path]:
    """Return a results dir's shard files, sorted, skipping temp files of unfinished writes."""
    folder = shard_dir(results_dir)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*.json") if not _is_temp(p))


def _is_temp(path: Path) -> bool:
    return path.name.startswith(".") or TMP_SUFFIX in path.name


def validate_record(record: Any, where: str) -> None:
    """Check a shard dict against the schema; raise ShardError naming the first problem."""
    if not isinstance(record, dict):
        raise ShardError(f"{where}: a shard must be a JSON object, got {type(record).__name__}")
    version = record.get("schema_version")
    if type(version) is not int or version != SCHEMA_VERSION:
        raise ShardError(
            f"{where}: unknown schema_version {version!r}; this mnistfc reads version "
            f"{SCHEMA_VERSION} (upgrade mnistfc, or re-run the trial)"
        )
    missing = [k for k in SHARD_KEYS if k not in record]
    extra = [k for k in record if k not in SHARD_KEYS]
    if missing or extra:
        raise ShardError(f"{where}: missing keys {missing}, unexpected keys {extra}")
    try:
        config = TrialConfig.from_dict(_require(record, "config", dict, where))
    except ConfigError as exc:
        raise ShardError(f"{where}: invalid config: {exc}") from exc
    missing = sorted(set(config.to_dict()) - set(record["config"]))
    if missing:  # a default filled in here could differ from what the trial ran with
        raise ShardError(f"{where}: config lacks {', '.join(missing)}")
    if record["trial_id"] != config.trial_id:
        raise ShardError(
            f"{where}: trial_id {record['trial_id']!r} does not match its config "
            f"(hash {config.trial_id}); the file was edited or mixed up"
        )
    if record["seed"] != config.seed or isinstance(record["seed"], bool):
        raise ShardError(f"{where}: seed {record['seed']!r} differs from config.seed")
    try:
        status = Status(record["status"])
    except ValueError as exc:
        raise ShardError(f"{where}: unknown status {record['status']!r}") from exc
    if status is Status.COMPLETED:
        _check_metrics(_require(record, "metrics", dict, where), where, complete=True)
    elif record["metrics"] is not None:  # a diverged trial may keep its best finite epoch
        _check_metrics(_require(record, "metrics", dict, where), where, complete=False)
    if status is Status.FAILED and not isinstance(record["error"], str):
        raise ShardError(f"{where}: a failed shard must carry its error traceback")
    for entry in _require(record, "history", list, where):
        if not isinstance(entry, dict) or not all(
            _is_finite_or_null(entry.get(k)) for k in HISTORY_KEYS
        ):
            raise ShardError(f"{where}: malformed history entry {entry!r}")
    for key, value in _require(record, "timing", dict, where).items():  # TIMING_KEYS and more
        if not (_is_finite_or_null(value) and (value or 0) >= 0):
            raise ShardError(f"{where}: timing.{key} must be seconds >= 0, got {value!r}")
    env = _require(record, "env", dict, where)
    if not isinstance(env.get("slurm") or {}, dict):
        raise ShardError(f"{where}: env.slurm must be an object, got {env['slurm']!r}")


def _check_metrics(metrics: dict[str, Any], where: str, complete: bool) -> None:
    # A completed trial has every number; a diverged one may have none (null) or some.
    for split in SPLITS:
        values = metrics.get(split)
        if values is None and not complete:
            continue
        if not isinstance(values, dict):
            raise ShardError(f"{where}: metrics.{split} missing")
        for name in SPLIT_METRICS:
            value = values.get(name)
            if not (_is_finite(value) or (value is None and not complete)):
                raise ShardError(
                    f"{where}: metrics.{split}.{name} must be a finite number, got {value!r}"
                )
        if values.get("accuracy") is not None and not 0.0 <= values["accuracy"] <= 1.0:
            raise ShardError(
                f"{where}: metrics.{split}.accuracy {values['accuracy']} outside [0, 1]"
            )
    best_epoch = metrics.get("best_epoch")
    if not (_is_int(best_epoch) or (best_epoch is None and not complete)):
        raise ShardError(f"{where}: metrics.best_epoch must be an integer, got {best_epoch!r}")


def _require(record: dict[str, Any], key: str, kind: type, where: str) -> Any:
    value = record[key]
    if not isinstance(value, kind):
        raise ShardError(f"{where}: {key} must be a {kind.__name__}, got {type(value).__name__}")
    return value


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_finite(value: Any) -> TypeGuard[int | float]:
    # JSON allows NaN, Infinity and integers too large for a float; none is a measurement.
    try:
        return _is_number(value) and math.isfinite(value)
    except OverflowError:
        return False


def _is_finite_or_null(value: Any) -> bool:
    return value is None or _is_finite(value)


def _json_safe(value: Any) -> Any:
    # JSON has no NaN/inf; a diverged loss is recorded as null rather than invalid JSON.
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value
