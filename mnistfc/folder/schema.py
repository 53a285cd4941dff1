"""What a shard is: its keys, its statuses and the checks a record must pass to be read."""

from __future__ import annotations

import enum
import math
from typing import Any, TypeGuard

from mnistfc.errors import ConfigError, ShardError
from mnistfc.folder.labels import SCORED, check_predictions
from mnistfc.trial.config import TrialConfig

# Version 2 added the final epoch's metrics (``metrics.last``) and per-image labels
# (``predictions``); version 1 shards still load, and tables that need those say so.
SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)
SHARD_KEYS = (
    "schema_version",
    "sweep",
    "trial_id",
    "config",
    "seed",
    "status",
    "data",
    "metrics",
    "predictions",
    "history",
    "timing",
    "env",
    "error",
)
SPLITS = ("train", "valid", "test")
SPLIT_METRICS = ("loss", "accuracy", "error_pct")
HISTORY_KEYS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "train_loss", "train_acc")
TIMING_KEYS = ("load_s", "fit_s", "eval_s", "total_s")
# results.csv's config columns: the searched settings first, as the exercise's tables read.
ROW_CONFIG_ORDER = (
    "units", "dropout", "activation", "learning_rate", "batch_size", "epochs", "seed",
    "dataset", "valid_size", "valid_split",
)  # fmt: skip


class Status(str, enum.Enum):
    """How a trial ended: ``diverged`` (non-finite loss) is a result, ``failed`` is a fault."""

    COMPLETED = "completed"
    FAILED = "failed"
    DIVERGED = "diverged"

    @property
    def is_result(self) -> bool:
        """Return whether the trial is a draw of the study (completed or diverged), not a fault."""
        return self is not Status.FAILED

    def is_final(self, *, rerun_failed: bool = False) -> bool:
        """Return whether a trial with this status is never run again.

        Completed and diverged trials are results; a failed one is final too, unless the
        user asks for failed trials to be rerun (``--rerun-failed``).
        """
        return self.is_result or not rerun_failed


def validate_record(record: Any, where: str) -> None:
    """Check a shard dict against the schema; raise ShardError naming the first problem."""
    if not isinstance(record, dict):
        raise ShardError(f"{where}: a shard must be a JSON object, got {type(record).__name__}")
    version = record.get("schema_version")
    if type(version) is not int or version not in READABLE_VERSIONS:
        readable = " and ".join(map(str, READABLE_VERSIONS))
        raise ShardError(
            f"{where}: unknown schema_version {version!r}; this mnistfc reads versions "
            f"{readable} (upgrade mnistfc, or re-run the trial)"
        )
    keys = SHARD_KEYS if version >= 2 else tuple(k for k in SHARD_KEYS if k != "predictions")
    missing = [k for k in keys if k not in record]
    extra = [k for k in record if k not in keys]
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
    data = record["data"] if record["data"] is not None else {}  # null: a failed trial's
    if not isinstance(data, dict):
        raise ShardError(f"{where}: data must be an object or null, got {data!r}")
    sizes = {split: data.get(f"n_{split}") for split in SCORED}
    check_predictions(record.get("predictions"), sizes, where)
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
    last = metrics.get("last")  # the final epoch (version 2; null: it diverged)
    if last is None:
        return
    if not isinstance(last, dict) or not _is_int(last.get("epoch")):
        raise ShardError(f"{where}: metrics.last must hold the final epoch's number")
    for split in SCORED:
        values = last.get(split)
        if not isinstance(values, dict) or not all(
            _is_finite(values.get(name)) for name in SPLIT_METRICS
        ):
            raise ShardError(f"{where}: metrics.last.{split} must hold finite {SPLIT_METRICS}")
        if not 0.0 <= values["accuracy"] <= 1.0:
            raise ShardError(f"{where}: metrics.last.{split}.accuracy outside [0, 1]")


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
