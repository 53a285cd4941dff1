"""A trial's result as a typed value, to JSON and back, and the one failed-result builder."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from mnistfc.folder.schema import (
    ROW_CONFIG_ORDER,
    SCHEMA_VERSION,
    SPLIT_METRICS,
    SPLITS,
    TIMING_KEYS,
    Status,
    validate_record,
)
from mnistfc.trial.config import TrialConfig


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
    predictions: dict[str, Any] | None = None  # per-image labels (``records.labels``)
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
            "predictions": self.predictions,
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
            predictions=record.get("predictions"),  # absent before schema version 2
        )

    @property
    def best_epoch(self) -> int | None:
        """Return the epoch whose weights were restored (best validation accuracy)."""
        return (self.metrics or {}).get("best_epoch")

    def accuracy(self, split: str) -> float | None:
        """Return the accuracy on ``train``, ``valid`` or ``test`` (None if not measured)."""
        return ((self.metrics or {}).get(split) or {}).get("accuracy")

    def last_accuracy(self, split: str) -> float | None:
        """Return the final epoch's accuracy on ``valid`` or ``test`` (None: not recorded, as
        in shards before schema version 2, or the final epoch diverged)."""
        return (((self.metrics or {}).get("last") or {}).get(split) or {}).get("accuracy")

    def to_row(self) -> dict[str, Any]:
        """Return the flat row of the per-trial table (``results.csv``): config, metrics,
        timing and where it ran; NaN for what the trial did not measure."""
        row: dict[str, Any] = {"trial_id": self.trial_id, "status": self.status.value}
        row.update({k: getattr(self.config, k) for k in ROW_CONFIG_ORDER})
        metrics = self.metrics or {}
        for split in SPLITS:
            for name in SPLIT_METRICS:
                row[f"{split}_{name}"] = (metrics.get(split) or {}).get(name, math.nan)
        row["best_epoch"] = metrics.get("best_epoch")
        for split in ("valid", "test"):
            last = self.last_accuracy(split)
            row[f"{split}_accuracy_last"] = math.nan if last is None else last
        for key in TIMING_KEYS:
            row[key] = self.timing.get(key, math.nan)
        # A packed trial is charged its share (total_s) but ran for the whole pack (elapsed_s).
        row["elapsed_s"] = self.timing.get("elapsed_s", row["total_s"])
        data = self.data or {}
        row["n_valid"], row["n_test"] = data.get("n_valid"), data.get("n_test")
        row["host"] = self.env.get("host")
        row["device"] = self.env.get("device")
        slurm = self.env.get("slurm") or {}
        row["slurm_job"] = slurm.get("slurm_array_job_id") or slurm.get("slurm_job_id")
        row["slurm_task"] = slurm.get("slurm_array_task_id")
        # Provenance: what made the numbers (shards before these keys say null / "").
        container = self.env.get("container")
        if not isinstance(container, dict):  # earlier shards: the image name as a string
            container = {"image": container, "digest": None}
        row["engine"] = self.env.get("engine") or ""
        row["mnistfc"] = self.env.get("mnistfc") or ""
        row["git_commit"] = self.env.get("git_commit") or ""
        row["tensorflow"] = self.env.get("tensorflow") or ""
        row["image"] = container.get("image") or ""
        row["image_digest"] = container.get("digest") or ""
        row["started_at"] = self.env.get("started_at") or ""
        row["finished_at"] = self.env.get("finished_at") or ""
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


def _json_safe(value: Any) -> Any:
    # JSON has no NaN/inf; a diverged loss is recorded as null rather than invalid JSON.
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value
