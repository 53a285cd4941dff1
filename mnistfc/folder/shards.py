"""Shards on disk: where they live, written atomically, read back validated and typed."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mnistfc.atomic import TMP_SUFFIX, atomic_write_text
from mnistfc.errors import ShardError
from mnistfc.folder.result import SweepRef, TrialResult, failed_result
from mnistfc.folder.schema import validate_record
from mnistfc.trial.config import TrialConfig


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


def write_failed(
    results_dir: str | os.PathLike[str] | None,
    configs: Sequence[TrialConfig],
    error: str,
    *,
    env: dict[str, Any],
    timing: dict[str, float] | None = None,
    data: dict[str, Any] | None = None,
    sweep: SweepRef | None = None,
) -> None:
    """Record that each of these trials raised ``error`` (a traceback), when there is a
    results folder: its ``failed`` shard is how status and --rerun-failed learn of it."""
    if results_dir is None:
        return
    for config in configs:
        write_shard(results_dir, failed_result(config, error, env=env, timing=timing, data=data,
                                               sweep=sweep))  # fmt: skip


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
