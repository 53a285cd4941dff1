"""Small datasets in the real file formats (Keras's npz, the IDX files), and where the real
MNIST and the test SLURM's script live."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

TESTS = Path(__file__).resolve().parents[1]
SHARED_MNIST = TESTS.parent.parent / "shared" / "data" / "mnist.npz"
_PARTS = (("train-images", 3), ("train-labels", 1), ("t10k-images", 3), ("t10k-labels", 1))
IDX_NAMES = {
    "dash": tuple(f"{part}-idx{n}-ubyte" for part, n in _PARTS),
    "dot": tuple(f"{part}.idx{n}-ubyte" for part, n in _PARTS),
}
SLURM_LOCAL = TESTS / "cluster" / "slurm_local.sh"


def make_arrays(n_train: int = 512, n_test: int = 128, seed: int = 0) -> dict[str, np.ndarray]:
    """Make a learnable MNIST-shaped task: class k lights its own 6x6 block, plus noise."""
    rng = np.random.default_rng(seed)

    def images(labels: np.ndarray) -> np.ndarray:
        x = rng.integers(0, 60, size=(len(labels), 28, 28)).astype(np.uint8)
        for i, k in enumerate(labels):
            row, col = 2 + 9 * (k // 4), 1 + 7 * (k % 4)
            x[i, row : row + 6, col : col + 6] = rng.integers(180, 256, size=(6, 6))
        return x

    y_train = (np.arange(n_train) % 10).astype(np.uint8)
    y_test = (np.arange(n_test) % 10).astype(np.uint8)
    rng.shuffle(y_train)
    return {
        "x_train": images(y_train),
        "y_train": y_train,
        "x_test": images(y_test),
        "y_test": y_test,
    }


def write_npz(folder: Path, arrays: dict[str, np.ndarray], name: str = "mnist.npz") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(folder / name, **arrays)
    return folder / name


def idx_bytes(array: np.ndarray) -> bytes:
    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_idx(
    folder: Path, arrays: dict[str, np.ndarray], style: str = "dash", gz: bool = True
) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for key, name in zip(("x_train", "y_train", "x_test", "y_test"), IDX_NAMES[style], strict=True):
        data = idx_bytes(arrays[key])
        path = folder / (name + (".gz" if gz else ""))
        path.write_bytes(gzip.compress(data) if gz else data)
        paths.append(path)
    return paths
