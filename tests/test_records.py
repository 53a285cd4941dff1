from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from mnistfc.errors import ShardError
from mnistfc.folder.labels import encode_labels, predictions_record
from mnistfc.folder.result import TrialResult
from mnistfc.folder.schema import SCHEMA_VERSION, Status
from mnistfc.folder.shards import list_shards, read_result, read_shard, shard_path, write_shard
from mnistfc.trial.config import TrialConfig

# Golden: changing this set is a schema change and needs a SCHEMA_VERSION bump.
GOLDEN_KEYS = {
    "schema_version", "sweep", "trial_id", "config", "seed", "status", "data",
    "metrics", "predictions", "history", "timing", "env", "error",
}  # fmt: skip


def make_result(status: Status = Status.COMPLETED, **config: object) -> TrialResult:
    split = {"loss": 0.1, "accuracy": 0.97, "error_pct": 3.0}
    return TrialResult(
        config=TrialConfig(**config),  # type: ignore[arg-type]
        status=status,
        metrics={"train": split, "valid": split, "test": split, "best_epoch": 2}
        if status is Status.COMPLETED
        else None,
        history=[
            {
                "epoch": 1,
                "loss": 0.5,
                "accuracy": 0.8,
                "val_loss": 0.3,
                "val_accuracy": 0.9,
                "train_loss": 0.4,
                "train_acc": 0.85,
            },
            {
                "epoch": 2,
                "loss": math.nan,
                "accuracy": 0.8,
                "val_loss": math.inf,
                "val_accuracy": 0.9,
                "train_loss": None,
                "train_acc": None,
            },
        ],  # fmt: skip
        timing={"load_s": 0.1, "fit_s": 1.0, "eval_s": 0.1, "total_s": 1.2},
        env={"host": "h"},
        error="Traceback ...\nValueError: boom" if status is Status.FAILED else None,
    )


def test_round_trip_and_golden_keys(tmp_path: Path) -> None:
    result = make_result(units=64)
    path = write_shard(tmp_path, result)
    assert (
        path
        == shard_path(tmp_path, result.trial_id)
        == tmp_path / "shards" / f"{result.trial_id}.json"
    )
    record = read_shard(path)
    assert set(record) == GOLDEN_KEYS
    assert record["schema_version"] == SCHEMA_VERSION == 2
    assert record["config"] == result.config.to_dict()
    assert record["metrics"]["valid"]["accuracy"] == 0.97
    # JSON has no NaN: non-finite history values are stored as null, and the file stays strict JSON
    assert record["history"][1]["loss"] is None and record["history"][1]["val_loss"] is None
    json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"non-standard JSON {c}"))


def test_temp_files_of_unfinished_writes_are_never_listed(tmp_path: Path) -> None:
    write_shard(tmp_path, make_result())
    folder = tmp_path / "shards"
    (folder / ".abc.json.123.tmp").write_text("{half")
    (folder / "abc.json.123.tmp").write_text("{half")
    assert [p.name for p in list_shards(tmp_path)] == [f"{make_result().trial_id}.json"]
    assert list_shards(tmp_path / "missing") == []


def test_an_interrupted_write_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_shard(tmp_path, make_result())
    before = read_shard(shard_path(tmp_path, make_result().trial_id))
    monkeypatch.setattr("mnistfc.folder.shards.atomic_write_text", lambda p, t: _fail_midway(p))
    with pytest.raises(OSError, match="No space"):
        write_shard(tmp_path, make_result())
    assert read_shard(shard_path(tmp_path, make_result().trial_id)) == before
    assert sorted(p.name for p in (tmp_path / "shards").iterdir()) == [
        f"{make_result().trial_id}.json"
    ]


def _fail_midway(path: Path) -> None:
    from mnistfc.atomic import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text("{partial")
        raise OSError(28, "No space left on device")


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda r: r.update(schema_version=99),
            "unknown schema_version 99; this mnistfc reads versions 1 and 2",
        ),
        (lambda r: r.pop("history"), "missing keys ['history']"),
        (lambda r: r.update(surprise=1), "unexpected keys ['surprise']"),
        (lambda r: r.update(trial_id="000000000000"), "does not match its config"),
        (lambda r: r.update(status="exploded"), "unknown status 'exploded'"),
        (lambda r: r["config"].update(units=-1), "invalid config"),
        (
            lambda r: r["metrics"]["test"].update(accuracy=None),
            "metrics.test.accuracy must be a finite number",
        ),
        (lambda r: r["metrics"]["test"].update(accuracy=1.5), "outside [0, 1]"),
        (lambda r: r["history"].append("x"), "malformed history entry"),
        (lambda r: r.update(timing=[]), "timing must be a dict"),
    ],
)
def test_malformed_shards_raise_a_clear_shard_error(tmp_path: Path, mutate, message: str) -> None:
    path = write_shard(tmp_path, make_result())
    record = json.loads(path.read_text())
    mutate(record)
    path.write_text(json.dumps(record))
    with pytest.raises(ShardError, match=message.replace("[", r"\[").replace("(", r"\(")) as err:
        read_shard(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("content", [b"", b"{not json", b"\xff\xfe\x00", b"[1, 2]"])
def test_garbage_is_a_shard_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "x.json"
    path.write_bytes(content)
    with pytest.raises(ShardError):
        read_shard(path)


def test_failed_and_diverged_shards(tmp_path: Path) -> None:
    failed = read_shard(write_shard(tmp_path, make_result(Status.FAILED, units=8)))
    assert failed["status"] == "failed" and "ValueError: boom" in failed["error"]
    diverged = read_shard(write_shard(tmp_path, make_result(Status.DIVERGED, units=16)))
    assert diverged["status"] == "diverged" and diverged["metrics"] is None
    record = make_result(Status.FAILED, units=32).to_record()
    record["error"] = None
    with pytest.raises(ShardError, match="must carry its error"):
        from mnistfc.folder.schema import validate_record

        validate_record(record, "x")


def test_a_version_1_shard_still_loads_and_says_its_final_epoch_is_absent(tmp_path: Path) -> None:
    record = make_result(units=32).to_record()
    del record["predictions"]
    record["schema_version"] = 1
    path = shard_path(tmp_path, record["trial_id"])
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(record))
    result = read_result(path)
    assert result.predictions is None and result.last_accuracy("test") is None
    row = result.to_row()
    assert math.isnan(row["test_accuracy_last"]) and math.isnan(row["valid_accuracy_last"])
    record["schema_version"] = 2  # a version 2 shard must carry the key
    path.write_text(json.dumps(record))
    with pytest.raises(ShardError, match="missing keys \\['predictions'\\]"):
        read_result(path)


def test_damaged_labels_in_a_shard_are_a_shard_error_naming_them(tmp_path: Path) -> None:
    labels = np.arange(28) % 10
    result = make_result(units=16)
    data = {"name": "mnist", "n_train": 100, "n_valid": 28, "n_test": 28}
    good = predictions_record({"valid": labels, "test": labels},
                              {"valid": labels, "test": labels}, None)  # fmt: skip
    record = TrialResult(**{**result.__dict__, "data": data, "predictions": good}).to_record()
    path = shard_path(tmp_path, record["trial_id"])
    path.parent.mkdir(parents=True)
    for damage, message in (
        (lambda p: p["best"].update(test="not base64!"), "predictions.best.test: undecodable"),
        (lambda p: p["true"].update(valid=encode_labels(labels[:5])),
         "predictions.true.valid has 5 labels for 28 images"),
        (lambda p: p.update(encoding="json"), "predictions must be an object with encoding"),
    ):  # fmt: skip
        broken = json.loads(json.dumps(record))
        damage(broken["predictions"])
        path.write_text(json.dumps(broken))
        with pytest.raises(ShardError, match=message):
            read_result(path)
    path.write_text(json.dumps(record))
    assert read_result(path).predictions == good
