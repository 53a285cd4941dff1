"""Find MNIST-format datasets and preprocess them exactly as the exercise does."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mnistfc.data.formats import IDX_PARTS, N_CLASSES, RawDataset, file_sha256, read_raw
from mnistfc.errors import DataError

DATA_DIR_ENV = "MNISTFC_DATA_DIR"
KERAS_CACHE = Path("~/.keras/datasets")

# sha256 of x_train, y_train, x_test, y_test as uint8 bytes in that order: the same for
# Keras's npz, the IDX files and any re-packing of them, unlike a file hash.
CANONICAL_CONTENT_SHA256 = {
    "mnist": "06b0d1f124c4e5fa796686ade41a9b778edacc8622f2195a352ef479ad44fc16",
    "fashion_mnist": "ca3ab2a37f845e1b8ae23cab1b51749a3011ba3bf1d9016176d75cbaabac376f",
}
_NPZ_NAMES = {"mnist": ("mnist.npz",), "fashion_mnist": ("fashion_mnist.npz", "fashion-mnist.npz")}
_SUBDIRS = {
    "mnist": ("", "mnist", "MNIST/raw"),
    "fashion_mnist": ("", "fashion-mnist", "fashion_mnist", "FashionMNIST/raw"),
}
# Where Debian's dataset-fashion-mnist package installs the IDX files.
_SYSTEM_DIRS = {"fashion_mnist": (Path("/usr/share/datasets/fashion-mnist"),)}
SPLIT_SEED = 20260101  # the stratified split's seed: one split for every trial, forever


@dataclass(frozen=True)
class Dataset:
    """Preprocessed splits: float32 images in [0, 1] flattened to 784, one-hot labels."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_valid: np.ndarray
    y_valid: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str
    content_sha256: str
    valid_split: str = "exercise"

    def describe(self) -> dict[str, object]:
        """Return the provenance that a result shard records."""
        return {
            "name": self.name,
            "source": self.source,
            "content_sha256": self.content_sha256,
            "canonical": self.content_sha256 == CANONICAL_CONTENT_SHA256.get(self.name),
            "n_train": len(self.x_train),
            "n_valid": len(self.x_valid),
            "n_test": len(self.x_test),
            "valid_split": self.valid_split,
        }


def search_dirs(
    name: str, data_dir: str | os.PathLike[str] | None = None
) -> list[tuple[str, Path]]:
    """Return (label, folder) pairs in search order: --data-dir, $MNISTFC_DATA_DIR, Keras cache."""
    places: list[tuple[str, Path]] = []
    if data_dir is not None:
        places.append(("--data-dir", Path(data_dir).expanduser()))
    if os.environ.get(DATA_DIR_ENV):
        places.append((f"${DATA_DIR_ENV}", Path(os.environ[DATA_DIR_ENV]).expanduser()))
    places.append(("Keras cache", KERAS_CACHE.expanduser()))
    places.extend(("system", d) for d in _SYSTEM_DIRS.get(name, ()))
    return places


def locate(name: str, data_dir: str | os.PathLike[str] | None = None) -> tuple[Path, ...]:
    """Find a dataset's files: one npz, or the four IDX files in IDX_PARTS order.

    Raises:
        DataError: nothing usable anywhere; the message names every place searched and the fix.
    """
    _check_name(name)
    searched = []
    for label, folder in search_dirs(name, data_dir):
        found = _find_in(name, folder)
        if found:
            return found
        searched.append(f"  {label}: {folder}{'' if folder.is_dir() else ' (no such folder)'}")
    npz = " or ".join(_NPZ_NAMES[name])
    raise DataError(
        f"dataset {name!r} not found; looked for {npz} or the four IDX files "
        f"({', '.join(IDX_PARTS)}; raw or .gz) in:\n" + "\n".join(searched) + "\n"
        f"Fix: run `mnistfc data prepare --dataset {name}` on a machine with internet, or "
        f"point --data-dir or ${DATA_DIR_ENV} at a folder holding those files."
    )


def _find_in(name: str, folder: Path) -> tuple[Path, ...]:
    for npz in _NPZ_NAMES[name]:
        if (folder / npz).is_file():
            return (folder / npz,)
    for sub in _SUBDIRS[name]:
        parts = [_find_idx(folder / sub, part) for part in IDX_PARTS]
        if all(parts):
            return tuple(p for p in parts if p is not None)
    return ()


def _find_idx(folder: Path, part: str) -> Path | None:
    kind = "idx3" if part.endswith("images") else "idx1"
    for stem in (f"{part}-{kind}-ubyte", f"{part}.{kind}-ubyte"):
        for suffix in ("", ".gz"):
            if (folder / (stem + suffix)).is_file():
                return folder / (stem + suffix)
    return None


def load_raw(name: str, data_dir: str | os.PathLike[str] | None = None) -> RawDataset:
    """Locate and read a dataset; refuse a well-known dataset found under the other's name."""
    raw = read_raw(name, locate(name, data_dir))
    digest = raw.content_sha256()
    for other, other_digest in CANONICAL_CONTENT_SHA256.items():
        if other != name and digest == other_digest:
            raise DataError(f"{raw.source} holds {other}, not {name}; put {name} elsewhere")
    return raw


def preprocess(raw: RawDataset, valid_size: int = 2000, valid_split: str = "exercise") -> Dataset:
    """Scale to [0, 1] float32, flatten, split validation from test, one-hot the labels."""
    valid, test = split_indices(raw.y_test, valid_size, valid_split, raw.source)
    return Dataset(
        name=raw.name,
        x_train=_scale(raw.x_train),
        y_train=_one_hot(raw.y_train),
        x_valid=_scale(raw.x_test[valid]),
        y_valid=_one_hot(raw.y_test[valid]),
        x_test=_scale(raw.x_test[test]),
        y_test=_one_hot(raw.y_test[test]),
        source=raw.source,
        content_sha256=raw.content_sha256(),
        valid_split=valid_split,
    )


def split_indices(
    labels: np.ndarray, valid_size: int, valid_split: str = "exercise", source: str = "test set"
) -> tuple[np.ndarray, np.ndarray]:
    """Return the test-set indices of the validation and the test slice.

    ``exercise``: the last ``valid_size`` images validate, the rest test (the exercise's
    split). ``stratified``: each class gives its share of ``valid_size`` (largest
    remainders), drawn with a fixed seed, so the slices are alike and every trial of every
    sweep validates on the same images.
    """
    n_test = len(labels)
    if not 0 < valid_size < n_test:
        raise DataError(
            f"valid_size={valid_size} does not fit the {n_test} test images of {source}: "
            f"choose 0 < valid_size < {n_test}"
        )
    if valid_split == "exercise":
        return np.arange(n_test - valid_size, n_test), np.arange(n_test - valid_size)
    rng = np.random.default_rng(SPLIT_SEED)
    counts = np.bincount(labels, minlength=N_CLASSES)
    share = valid_size * counts / n_test
    take = np.floor(share).astype(int)
    take[np.argsort(-(share - take), kind="stable")[: valid_size - take.sum()]] += 1
    chosen = [rng.permutation(np.flatnonzero(labels == c))[: take[c]] for c in range(N_CLASSES)]
    valid = np.sort(np.concatenate(chosen))
    return valid, np.setdiff1d(np.arange(n_test), valid)


def load_dataset(
    name: str = "mnist",
    data_dir: str | os.PathLike[str] | None = None,
    valid_size: int = 2000,
    valid_split: str = "exercise",
) -> Dataset:
    """Locate, read, check and preprocess a dataset: what every trial starts from."""
    return preprocess(load_raw(name, data_dir), valid_size, valid_split)


def dataset_for(config: Any, data_dir: str | os.PathLike[str] | None = None) -> Dataset:
    """Load the data a trial config asks for (dataset, validation size and split)."""
    return load_dataset(config.dataset, data_dir, config.valid_size, config.valid_split)


def matches(config: Any, dataset: Dataset) -> bool:
    """Return whether a loaded dataset is the one a trial config asks for."""
    return (config.dataset, config.valid_size, config.valid_split) == (
        dataset.name, len(dataset.x_valid), dataset.valid_split
    )  # fmt: skip


def _scale(images: np.ndarray) -> np.ndarray:
    return (images.reshape(len(images), -1).astype(np.float32)) / np.float32(255.0)


def _one_hot(labels: np.ndarray) -> np.ndarray:
    return np.eye(N_CLASSES, dtype=np.float32)[labels.astype(np.int64)]


def _check_name(name: str) -> None:
    if name not in _NPZ_NAMES:
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(_NPZ_NAMES)}")


def dataset_info(name: str, data_dir: str | os.PathLike[str] | None = None) -> dict[str, object]:
    """Describe where a dataset was found and what it holds (for ``mnistfc data info``).

    Raises:
        DataError: the dataset is missing or defective (the message says where and why).
    """
    raw = load_raw(name, data_dir)
    digest = raw.content_sha256()
    return {
        "dataset": name,
        "searched": [f"{label}: {folder}" for label, folder in search_dirs(name, data_dir)],
        "found": raw.source,
        "files": {str(p): file_sha256(p) for p in raw.files},
        "shapes": {
            k: list(getattr(raw, k).shape) for k in ("x_train", "y_train", "x_test", "y_test")
        },
        "train_class_counts": np.bincount(raw.y_train, minlength=N_CLASSES).tolist(),
        "test_class_counts": np.bincount(raw.y_test, minlength=N_CLASSES).tolist(),
        "content_sha256": digest,
        "canonical": digest == CANONICAL_CONTENT_SHA256[name],
    }
