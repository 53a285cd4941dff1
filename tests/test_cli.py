from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from mnistfc.cli import main as cli
from mnistfc.folder.shards import list_shards, read_shard

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TINY = ["--units", "16", "--batch-size", "64", "--epochs", "2", "--valid-size", "28"]


def test_train_writes_every_file_of_the_single_model_study(
    npz_dir: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "run"
    assert cli.main(["train", "--data-dir", str(npz_dir), "--out", str(out), *TINY]) == 0
    printed = capsys.readouterr().out
    assert (
        "| Train      |" in printed and "| Validation |" in printed and "| Test       |" in printed
    )
    assert "Error rate [%]" in printed
    for name in (
        "accuracy.png",
        "loss.png",
        "confusion.png",
        "predictions.png",
        "misclassified.png",
    ):
        assert (out / name).read_bytes()[:8] == PNG_MAGIC, name
    assert (out / "best.weights.h5").stat().st_size > 0
    assert (out / "performance.txt").read_text().strip() in printed
    rows = list(csv.DictReader((out / "history.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "train_loss", "train_acc"} <= set(
        rows[0]
    )
    (shard,) = list_shards(out)
    record = read_shard(shard)
    assert record["config"]["units"] == 16 and record["sweep"]["name"] == "train"
    assert f"{record['metrics']['test']['accuracy']:.4f}" in printed
    assert not [p for p in out.rglob("*") if ".tmp" in p.name]


@pytest.mark.filterwarnings("ignore:Skipping variable loading for optimizer")
def test_saved_weights_reload_to_the_reported_accuracy(npz_dir: Path, tmp_path: Path) -> None:
    from mnistfc.data.dataset import load_dataset
    from mnistfc.engine.model import build_model
    from mnistfc.trial.config import TrialConfig

    out = tmp_path / "run"
    assert cli.main(["train", "--data-dir", str(npz_dir), "--out", str(out), *TINY]) == 0
    record = read_shard(list_shards(out)[0])
    config = TrialConfig.from_dict(record["config"])
    model = build_model(config)
    model.load_weights(out / "best.weights.h5")
    ds = load_dataset("mnist", npz_dir, valid_size=28)
    _, accuracy = model.evaluate(ds.x_test, ds.y_test, verbose=0)
    assert accuracy == pytest.approx(record["metrics"]["test"]["accuracy"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--units", "0", "--dropout", "1.5"], "2 problems"),
        (["--activation", "relux"], "'relux' is not one of"),
        (["--learning-rate", "-1"], "learning_rate: must be a finite number > 0"),
        (["--dataset", "cifar"], "'cifar' is not one of mnist, fashion_mnist"),
    ],
)
def test_bad_config_exits_2_with_one_clear_message(
    tmp_path: Path, args: list[str], message: str, capsys
) -> None:
    assert cli.main(["train", "--out", str(tmp_path / "o"), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_unparseable_option_is_a_usage_error(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["train", "--out", str(tmp_path), "--units", "many"])
    assert exit_.value.code == 2
    assert "invalid int value: 'many'" in capsys.readouterr().err


def test_diverged_training_exits_1_and_keeps_the_shard(
    npz_dir: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "run"
    code = cli.main(
        ["train", "--data-dir", str(npz_dir), "--out", str(out), *TINY, "--learning-rate", "1e30"]
    )
    assert code == 1
    assert "diverged" in capsys.readouterr().err
    assert read_shard(list_shards(out)[0])["status"] == "diverged"


def test_unwritable_output_fails_before_training(npz_dir: Path, tmp_path: Path, capsys) -> None:
    (tmp_path / "file").write_text("not a folder")
    out = tmp_path / "file" / "run"
    assert cli.main(["train", "--data-dir", str(npz_dir), "--out", str(out), *TINY]) == 1
    err = capsys.readouterr().err
    assert "Not a directory" in err and str(tmp_path / "file") in err and "Traceback" not in err


def test_python_dash_m_and_help() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mnistfc", "--help"], capture_output=True, text=True, check=True
    )
    assert "train" in done.stdout and "data" in done.stdout
