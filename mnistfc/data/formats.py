"""Read MNIST's two file formats (Keras's npz, the four IDX files), checked to the byte.

Every defect (a truncated file, a wrong magic number, a bad shape, labels out of range) is a
DataError naming the file; nothing here knows where datasets live or how they are split.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import struct
import tokenize
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnistfc.errors import DataError

IMAGE_SHAPE = (28, 28)
N_CLASSES = 10
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


def file_sha256(path: Path) -> str:
    """Return the sha256 of a file's bytes, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
