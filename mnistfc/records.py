"""The result record: one JSON shard per trial, written atomically, read back typed.

This is the only module that opens a shard. It owns the schema both ways (``TrialResult``
to JSON and back, validated once on read), ``Status`` with the one rule for which trials are
final, and the one builder of a failed result.
"""

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
# results.csv's config columns: the searched settings first, as the exercise's tables read.
ROW_CONFIG_ORDER = (
    "units", "dropout", "activation", "learning_rate", "batch_size", "epochs", "seed",
    "dataset", "valid_size",
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


@dataclass(frozen=True)
class SweepRef:
    """Which sweep a trial belongs to: its name and the hash of its spec (None: no spec)."""

    name: str
    spec_hash: str | None = None

    def to_json(self) -> dict[str, Any]:
        """Return the shard's ``sweep`` object."""
        return {"name": self.name, "spec_hash": self.spec_hash}

    @classmethod
    def from_json(cls, data: Any) -> SweepRef | None:
        """Read a shard's ``sweep`` object (None or a malformed one: no reference)."""
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            return None
        spec_hash = data.get("spec_hash")
        return cls(name=data["name"], spec_hash=spec_hash if isinstance(spec_hash, str) else None)


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
    sweep: SweepRef | None = None
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
            "sweep": self.sweep.to_json() if self.sweep else None,
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

    @classmethod
    def from_json(cls, record: dict[str, Any], where: str = "<shard>") -> TrialResult:
        """Build the result a shard records; the record is validated first."""
        validate_record(record, where)
        return cls(
            config=TrialConfig.from_dict(record["config"]),
            status=Status(record["status"]),
            metrics=record["metrics"],
            history=record["history"],
            timing=record["timing"],
            env=record["env"],
            data=record["data"],
            sweep=SweepRef.from_json(record["sweep"]),
            error=record["error"],
        )

    @property
    def best_epoch(self) -> int | None:
        """Return the epoch whose weights were restored (best validation accuracy)."""
        return (self.metrics or {}).get("best_epoch")

    def accuracy(self, split: str) -> float | None:
        """Return the accuracy on ``train``, ``valid`` or ``test`` (None if not measured)."""
        return ((self.metrics or {}).get(split) or {}).get("accuracy")

    def to_row(self) -> dict[str, Any]:
        """Return the flat row of the per-trial table (``results.csv``): config, metrics,
        timing and where it ran; NaN for what the trial did not measure."""
        row: dict[str, Any] = {"trial_id": self.trial_id, "status": self.status.value}
        config = self.config.to_dict()
        row.update({k: config[k] for k in ROW_CONFIG_ORDER})
        metrics = self.metrics or {}
        for split in SPLITS:
            for name in SPLIT_METRICS:
                row[f"{split}_{name}"] = (metrics.get(split) or {}).get(name, math.nan)
        row["best_epoch"] = metrics.get("best_epoch")
        for key in TIMING_KEYS:
            row[key] = self.timing.get(key, math.nan)
        # A packed trial is charged its share (total_s) but ran for the whole pack (elapsed_s).
        row["elapsed_s"] = self.timing.get("elapsed_s", row["total_s"])
        row["host"] = self.env.get("host")
        row["device"] = self.env.get("device")
        slurm = self.env.get("slurm") or {}
        row["slurm_job"] = slurm.get("slurm_array_job_id") or slurm.get("slurm_job_id")
        row["slurm_task"] = slurm.get("slurm_array_task_id")
        return row

    def last_error_line(self) -> str:
        """Return the last non-empty line of a failed trial's traceback ("" if none)."""
        lines = [line for line in (self.error or "").strip().splitlines() if line.strip()]
        return lines[-1].strip() if lines else ""


def failed_result(
    config: TrialConfig,
    error: str,
    *,
    env: dict[str, Any],
    timing: dict[str, float] | None = None,
    data: dict[str, Any] | None = None,
    sweep: SweepRef | None = None,
) -> TrialResult:
    """Return the record of a trial that raised: its traceback, and whatever was known."""
    return TrialResult(
        config=config,
        status=Status.FAILED,
        metrics=None,
        history=[],
        timing=timing or {},
        env=env,
        data=data,
        sweep=sweep,
        error=error,
    )


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
    """Read and validate one shard as its raw JSON object (``read_result`` gives it typed).

    Raises:
        ShardError: unreadable, not JSON, unknown schema version, or a field of the wrong kind.
    """
    record = _load_json(Path(path))
    validate_record(record, str(path))
    return record


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ShardError(f"{path}: not a readable JSON shard ({exc})") from exc


def read_result(path: str | os.PathLike[str]) -> TrialResult:
    """Read one shard as a typed result (validated; ShardError when it is not usable)."""
    path = Path(path)
    result = TrialResult.from_json(_load_json(path), str(path))
    if path.stem != result.trial_id:  # a copy under another name would count twice
        raise ShardError(f"{path}: file name does not match trial_id {result.trial_id}")
    return result


def final_result(
    results_dir: str | os.PathLike[str], trial_id: str, *, rerun_failed: bool = False
) -> TrialResult | None:
    """Return a trial's result if its shard is final (see ``Status.is_final``), else None.

    A missing, torn or invalid shard is not final: the trial runs (again).
    """
    path = shard_path(results_dir, trial_id)
    if not path.exists():
        return None
    try:
        result = read_result(path)
    except ShardError:
        return None
    return result if result.status.is_final(rerun_failed=rerun_failed) else None


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
