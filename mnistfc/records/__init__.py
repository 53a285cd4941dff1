"""The result record: one JSON shard per trial, written atomically, read back typed.

This package is the only place that opens a shard. It owns the schema both ways
(``TrialResult`` to JSON and back, validated once on read), ``Status`` with the one rule for
which trials are final, and the one builder of a failed result.
"""

from __future__ import annotations

from mnistfc.records.result import SweepRef, TrialResult, failed_result
from mnistfc.records.schema import (
    HISTORY_KEYS,
    SCHEMA_VERSION,
    SHARD_KEYS,
    SPLIT_METRICS,
    SPLITS,
    TIMING_KEYS,
    Status,
    validate_record,
)
from mnistfc.records.store import (
    final_result,
    list_shards,
    read_result,
    read_shard,
    shard_dir,
    shard_path,
    write_failed,
    write_shard,
)

__all__ = [
    "HISTORY_KEYS",
    "SCHEMA_VERSION",
    "SHARD_KEYS",
    "SPLITS",
    "SPLIT_METRICS",
    "TIMING_KEYS",
    "Status",
    "SweepRef",
    "TrialResult",
    "failed_result",
    "final_result",
    "list_shards",
    "read_result",
    "read_shard",
    "shard_dir",
    "shard_path",
    "validate_record",
    "write_failed",
    "write_shard",
]
