"""Find, read, check and preprocess MNIST-format datasets exactly as the exercise does."""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import struct
import tokenize
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnistfc.errors import DataError

DATA_DIR_ENV = "MNISTFC_DATA_DIR"
KERAS_CACHE = Path("~/.keras/datasets")
IMAGE_SHAPE = (28, 28)
N_CLASSES = 10

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
IDX_PARTS = ("train-images", "train-labels", "t10k-images", "t10k-labels")
_IDX_NDIM = {"images": 3, "labels": 1}


@dataclass(frozen=True)
class RawDataset:
    """The four uint8 arrays of an MNIST-format dataset and where they came from."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    files: tuple[Path, ...]

    @property
    def source(self) -> str:
        """Return the file (npz) or folder (IDX) the arrays were read from."""
        return str(self.files[0] if len(self.files) == 1 else self.files[0].parent)

    def content_sha256(self) -> str:
        """Hash the array contents, so npz and IDX copies of the same data agree."""
        digest = hashlib.sha256()
        for array in (self.x_train, self.y_train, self.x_test, self.y_test):
            digest.update(np.ascontiguousarray(array, dtype=np.uint8).tobytes())
        return digest.hexdigest()


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


def read_raw(name: str, files: tuple[Path, ...]) -> RawDataset:
    """Read and check an npz or four IDX files; every defect is a DataError naming the file."""
    if len(files) == 1:
        arrays = _read_npz(files[0])
    else:
        arrays = [
            _read_idx(path, "images" if "images" in path.name else "labels") for path in files
        ]
    x_train, y_train, x_test, y_test = arrays
    raw = RawDataset(name, x_train, y_train, x_test, y_test, files=files)
    _check_arrays(raw)
    return raw


def load_raw(name: str, data_dir: str | os.PathLike[str] | None = None) -> RawDataset:
    """Locate and read a dataset; refuse a well-known dataset found under the other's name."""
    raw = read_raw(name, locate(name, data_dir))
    digest = raw.content_sha256()
    for other, other_digest in CANONICAL_CONTENT_SHA256.items():
        if other != name and digest == other_digest:
            raise DataError(f"{raw.source} holds {other}, not {name}; put {name} elsewhere")
    return raw


def preprocess(raw: RawDataset, valid_size: int = 2000) -> Dataset:
    """Scale to [0, 1] float32, flatten, split valid = test[-valid_size:], one-hot the labels."""
    n_test = len(raw.x_test)
    if not 0 < valid_size < n_test:
        raise DataError(
            f"valid_size={valid_size} does not fit the {n_test} test images of {raw.source}: "
            f"choose 0 < valid_size < {n_test}"
        )
    split = n_test - valid_size
    return Dataset(
        name=raw.name,
        x_train=_scale(raw.x_train),
        y_train=_one_hot(raw.y_train),
        x_valid=_scale(raw.x_test[split:]),
        y_valid=_one_hot(raw.y_test[split:]),
        x_test=_scale(raw.x_test[:split]),
        y_test=_one_hot(raw.y_test[:split]),
        source=raw.source,
        content_sha256=raw.content_sha256(),
    )


def load_dataset(
    name: str = "mnist", data_dir: str | os.PathLike[str] | None = None, valid_size: int = 2000
) -> Dataset:
    """Locate, read, check and preprocess a dataset: what every trial starts from."""
    return preprocess(load_raw(name, data_dir), valid_size)


def file_sha256(path: Path) -> str:
    """Return the sha256 of a file's bytes, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _scale(images: np.ndarray) -> np.ndarray:
    return (images.reshape(len(images), -1).astype(np.float32)) / np.float32(255.0)


def _one_hot(labels: np.ndarray) -> np.ndarray:
    return np.eye(N_CLASSES, dtype=np.float32)[labels.astype(np.int64)]


def _check_name(name: str) -> None:
    if name not in _NPZ_NAMES:
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(_NPZ_NAMES)}")


def _read_npz(path: Path) -> list[np.ndarray]:
    keys = ("x_train", "y_train", "x_test", "y_test")
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):  # a bare .npy array, renamed
            raise DataError(f"{path}: not an npz archive but a single {loaded.shape} array")
        with loaded as npz:
            missing = [k for k in keys if k not in npz.files]
            if missing:
                raise DataError(
                    f"{path}: not a Keras MNIST npz, missing array(s) {', '.join(missing)} "
                    f"(has {', '.join(npz.files) or 'none'})"
                )
            return [npz[k] for k in keys]
    # numpy's parser of a garbled .npy header can raise SyntaxError or tokenize.TokenError.
    except (
        zipfile.BadZipFile,
        zlib.error,
        EOFError,
        OSError,
        ValueError,
        SyntaxError,
        tokenize.TokenError,
    ) as exc:
        raise DataError(
            f"{path}: truncated or corrupt npz file ({exc}); download it again"
        ) from exc
    except (MemoryError, OverflowError) as exc:  # an array header claiming an absurd shape
        raise DataError(f"{path}: an array is too large to load ({exc}); corrupt file?") from exc


def _read_idx(path: Path, role: str) -> np.ndarray:
    try:
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (gzip.BadGzipFile, zlib.error, EOFError, OSError) as exc:
        raise DataError(f"{path}: truncated or corrupt file ({exc}); download it again") from exc
    ndim = _IDX_NDIM[role]
    magic = 0x0800 | ndim
    if len(data) < 4 or struct.unpack(">I", data[:4])[0] != magic:
        got = f"0x{struct.unpack('>I', data[:4])[0]:08x}" if len(data) >= 4 else "nothing"
        raise DataError(
            f"{path}: wrong IDX magic number {got}, expected 0x{magic:08x} (unsigned-byte {role})"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path}: truncated IDX header ({len(data)} bytes)")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    expected = math.prod(dims)  # exact: an int64 product can wrap around to the file size
    if len(data) - header != expected:
        raise DataError(
            f"{path}: truncated or padded: header says {'x'.join(map(str, dims))} = {expected} "
            f"bytes of data, file has {len(data) - header}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _check_arrays(raw: RawDataset) -> None:
    source = raw.source
    for split in ("train", "test"):
        x, y = getattr(raw, f"x_{split}"), getattr(raw, f"y_{split}")
        if x.ndim != 3 or x.shape[1:] != IMAGE_SHAPE or x.dtype != np.uint8:
            raise DataError(
                f"{source}: x_{split} must be uint8 images of shape (N, 28, 28), "
                f"got {x.dtype} {x.shape}"
            )
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
            raise DataError(
                f"{source}: y_{split} must be a 1-D integer array, got {y.dtype} {y.shape}"
            )
        if len(x) != len(y):
            raise DataError(
                f"{source}: {len(x)} {split} images but {len(y)} {split} labels; "
                "the counts must match"
            )
        if len(y) == 0:
            raise DataError(f"{source}: the {split} split is empty")
        bad = (y < 0) | (y >= N_CLASSES)
        if bad.any():
            raise DataError(
                f"{source}: {int(bad.sum())} {split} label(s) outside 0-9 (first: {y[bad][0]})"
            )


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
