from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from helpers.data import idx_bytes, write_idx, write_npz

from mnistfc.cli import main as cli
from mnistfc.data.dataset import (
    CANONICAL_CONTENT_SHA256,
    load_dataset,
    load_raw,
    locate,
    preprocess,
    read_raw,
)
from mnistfc.errors import ConfigError, DataError


def test_npz_is_preprocessed_exactly_as_the_exercise(npz_dir: Path, arrays: dict) -> None:
    ds = load_dataset("mnist", npz_dir, valid_size=28)
    assert ds.x_train.shape == (512, 784) and ds.x_train.dtype == np.float32
    np.testing.assert_array_equal(
        ds.x_train[3], arrays["x_train"][3].reshape(784) / np.float32(255)
    )
    assert ds.x_train.max() <= 1.0 and ds.x_train.min() >= 0.0
    # valid = the last valid_size test images, test = the ones before them
    np.testing.assert_array_equal(
        ds.x_valid[0] * 255, arrays["x_test"][100].reshape(784).astype(np.float32)
    )
    assert len(ds.x_valid) == 28 and len(ds.x_test) == 100
    assert ds.y_test.shape == (100, 10)
    np.testing.assert_array_equal(ds.y_test.argmax(1), arrays["y_test"][:100])
    np.testing.assert_array_equal(ds.y_test.sum(1), 1.0)


@pytest.mark.parametrize(
    ("style", "gz"), [("dash", True), ("dash", False), ("dot", True), ("dot", False)]
)
def test_idx_files_read_the_same_as_npz(tmp_path: Path, arrays: dict, style: str, gz: bool) -> None:
    npz = read_raw("mnist", (write_npz(tmp_path / "npz", arrays),))
    files = locate("mnist", write_idx(tmp_path / "idx", arrays, style, gz)[0].parent)
    assert len(files) == 4
    assert read_raw("mnist", files).content_sha256() == npz.content_sha256()


def test_search_order_is_data_dir_then_env_then_keras_cache(
    tmp_path: Path, arrays: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = Path.home() / ".keras" / "datasets"
    write_npz(cache, arrays)
    assert locate("mnist") == (cache / "mnist.npz",)
    write_idx(tmp_path / "env" / "mnist", arrays)  # Keras-style subfolder
    monkeypatch.setenv("MNISTFC_DATA_DIR", str(tmp_path / "env"))
    assert locate("mnist")[0].parent == tmp_path / "env" / "mnist"
    write_npz(tmp_path / "explicit", arrays)
    assert locate("mnist", tmp_path / "explicit") == (tmp_path / "explicit" / "mnist.npz",)


def test_fashion_is_found_in_keras_cache_layout(tmp_path: Path, arrays: dict) -> None:
    write_idx(tmp_path / "fashion-mnist", arrays)
    raw = load_raw("fashion_mnist", tmp_path)
    assert raw.source == str(tmp_path / "fashion-mnist")


def test_missing_data_names_every_place_and_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setenv("MNISTFC_DATA_DIR", str(tmp_path / "env"))
    code = cli.main(
        ["train", "--data-dir", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err
    for place in (
        "--data-dir",
        str(tmp_path / "nowhere"),
        "$MNISTFC_DATA_DIR",
        "Keras cache",
        ".keras/datasets",
    ):
        assert place in err
    assert "mnistfc data prepare --dataset mnist" in err
    assert not (tmp_path / "out").exists()


def _corrupt(tmp_path: Path, arrays: dict, defect: str) -> Path:
    folder = tmp_path / "bad"
    if defect == "truncated npz":
        path = write_npz(folder, arrays)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif defect == "not an npz":
        (folder).mkdir()
        (folder / "mnist.npz").write_bytes(b"this is not a zip file at all")
    elif defect == "npz missing arrays":
        write_npz(folder, {k: v for k, v in arrays.items() if k != "y_test"})
    elif defect == "corrupt gz":
        paths = write_idx(folder, arrays)
        paths[0].write_bytes(paths[0].read_bytes()[:100])
    elif defect == "wrong magic":
        paths = write_idx(folder, arrays, gz=False)
        data = bytearray(paths[1].read_bytes())
        data[3] = 0x03  # a labels file that claims to be images
        paths[1].write_bytes(bytes(data))
    elif defect == "truncated idx":
        paths = write_idx(folder, arrays, gz=False)
        paths[2].write_bytes(paths[2].read_bytes()[:-5])
    elif defect == "wrong shape":
        write_npz(folder, {**arrays, "x_train": arrays["x_train"][:, :27, :]})
    elif defect == "wrong dtype":
        write_npz(folder, {**arrays, "x_train": arrays["x_train"].astype(np.float32)})
    elif defect == "labels out of range":
        write_npz(folder, {**arrays, "y_test": (arrays["y_test"] + 3).astype(np.uint8)})
    elif defect == "count mismatch":
        (folder).mkdir()
        paths = write_idx(folder, arrays, gz=False)
        paths[1].write_bytes(idx_bytes(arrays["y_train"][:-1]))
    return folder


DEFECTS = {
    "truncated npz": "truncated or corrupt npz",
    "not an npz": "truncated or corrupt npz",
    "npz missing arrays": "missing array(s) y_test",
    "corrupt gz": "truncated or corrupt file",
    "wrong magic": "wrong IDX magic number 0x00000803, expected 0x00000801",
    "truncated idx": "truncated or padded",
    "wrong shape": "x_train must be uint8 images of shape (N, 28, 28)",
    "wrong dtype": "x_train must be uint8 images",
    "labels out of range": "label(s) outside 0-9",
    "count mismatch": "512 train images but 511 train labels",
}


@pytest.mark.parametrize("defect", DEFECTS)
def test_each_defect_is_a_data_error_naming_the_file(
    tmp_path: Path, arrays: dict, defect: str, capsys
) -> None:
    folder = _corrupt(tmp_path, arrays, defect)
    with pytest.raises(DataError) as err:
        load_dataset("mnist", folder, valid_size=28)
    assert DEFECTS[defect] in str(err.value)
    assert str(folder) in str(err.value)
    code = cli.main(["data", "info", "--dataset", "mnist", "--data-dir", str(folder)])
    captured = capsys.readouterr()
    assert code == 2 and "Traceback" not in captured.err and DEFECTS[defect] in captured.err


def test_valid_size_must_leave_test_images(npz_dir: Path) -> None:
    raw = load_raw("mnist", npz_dir)
    with pytest.raises(DataError, match="valid_size=128 does not fit the 128 test images"):
        preprocess(raw, valid_size=128)


def test_data_info_reports_place_counts_and_checksums(npz_dir: Path, capsys) -> None:
    assert cli.main(["data", "info", "--dataset", "mnist", "--data-dir", str(npz_dir)]) == 0
    out = capsys.readouterr().out
    assert f"found in {npz_dir / 'mnist.npz'}" in out
    assert "x_train (512, 28, 28)" in out
    assert "train class counts" in out and "sha256" in out
    assert "NOT the published dataset" in out


@pytest.mark.slow
def test_real_mnist_is_recognised_and_refused_under_the_wrong_name(
    real_mnist_dir: Path, tmp_path: Path
) -> None:
    raw = load_raw("mnist", real_mnist_dir)
    assert raw.content_sha256() == CANONICAL_CONTENT_SHA256["mnist"]
    assert np.bincount(raw.y_test).tolist() == [
        980,
        1135,
        1032,
        1010,
        982,
        892,
        958,
        1028,
        974,
        1009,
    ]
    write_idx(
        tmp_path / "fashion-mnist",
        {k: getattr(raw, k) for k in ("x_train", "y_train", "x_test", "y_test")},
        gz=False,
    )
    with pytest.raises(DataError, match="holds mnist, not fashion_mnist"):
        load_raw("fashion_mnist", tmp_path)


def test_idx_header_checks_do_not_trust_the_dimensions(tmp_path: Path, arrays: dict) -> None:
    paths = write_idx(tmp_path, arrays, gz=False)
    # A header claiming 2**31 images must fail on size, not try to allocate them.
    data = bytearray(paths[0].read_bytes())
    data[4:8] = struct.pack(">I", 2**31)
    paths[0].write_bytes(bytes(data))
    with pytest.raises(DataError, match="truncated or padded"):
        load_raw("mnist", tmp_path)


def test_the_stratified_split_is_seeded_alike_and_disjoint() -> None:
    from mnistfc.data.dataset import split_indices

    labels = np.repeat(np.arange(10), [98, 113, 103, 101, 98, 89, 96, 103, 97, 102])
    np.random.default_rng(0).shuffle(labels)
    valid, test = split_indices(labels, 200, "stratified")
    assert len(valid) == 200 and len(test) == len(labels) - 200
    assert set(valid).isdisjoint(test) and set(valid) | set(test) == set(range(len(labels)))
    share = np.bincount(labels[valid], minlength=10) / 200
    assert np.abs(share - np.bincount(labels, minlength=10) / len(labels)).max() < 0.006
    again, _ = split_indices(labels, 200, "stratified")
    assert (again == valid).all()  # one fixed split: every trial validates on the same images
    exercise, rest = split_indices(labels, 200, "exercise")
    assert (exercise == np.arange(len(labels) - 200, len(labels))).all()
    assert (rest == np.arange(len(labels) - 200)).all()


def test_a_stratified_trial_records_its_split_and_keeps_older_ids(npz_dir) -> None:
    from mnistfc.data.dataset import dataset_for
    from mnistfc.trial.config import TrialConfig

    assert TrialConfig().trial_id == "788d96fe7049"  # the id every earlier mnistfc gave
    assert "valid_split" not in TrialConfig().to_dict()
    config = TrialConfig(valid_size=28, valid_split="stratified")
    assert config.to_dict()["valid_split"] == "stratified"
    assert config.trial_id != TrialConfig(valid_size=28).trial_id
    data = dataset_for(config, npz_dir)
    assert data.describe()["valid_split"] == "stratified" and len(data.x_valid) == 28
    with pytest.raises(ConfigError, match="valid_split"):
        TrialConfig(valid_split="random")
