"""Shared fixtures: small datasets in the real file formats, and an isolated data cache."""

from __future__ import annotations

import gzip
import os
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

# Before anything imports TensorFlow: its C++ start-up lines bury pytest's own output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SHARED_MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist.npz"
_PARTS = (("train-images", 3), ("train-labels", 1), ("t10k-images", 3), ("t10k-labels", 1))
IDX_NAMES = {
    "dash": tuple(f"{part}-idx{n}-ubyte" for part, n in _PARTS),
    "dot": tuple(f"{part}.idx{n}-ubyte" for part, n in _PARTS),
}


# Modules that apt-get install and start daemons (SLURM, dockerd) or build the image: under
# pytest-xdist (`make test`) they run on one worker, one after another, as they would alone.
SYSTEM_MODULES = frozenset({"test_slurm.py", "test_charliecloud.py", "test_container.py",
                            "test_docker.py"})  # fmt: skip


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.name in SYSTEM_MODULES:
            item.add_marker(pytest.mark.xdist_group("system"))


@pytest.fixture(autouse=True)
def _isolated(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Seed Keras and point HOME (so Keras's cache) at an empty folder; unset the data env var."""
    import keras

    keras.utils.set_random_seed(0)
    monkeypatch.setenv("HOME", str(tmp_path_factory.mktemp("home")))
    monkeypatch.delenv("MNISTFC_DATA_DIR", raising=False)


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


@pytest.fixture
def arrays() -> dict[str, np.ndarray]:
    return make_arrays()


@pytest.fixture
def npz_dir(tmp_path: Path, arrays: dict[str, np.ndarray]) -> Path:
    """A folder holding a synthetic mnist.npz in Keras's layout."""
    write_npz(tmp_path / "data", arrays)
    return tmp_path / "data"


SLURM_LOCAL = Path(__file__).with_name("cluster") / "slurm_local.sh"


@pytest.fixture(scope="module")
def slurm_state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Install (first time) and start a real single-node SLURM; yield its state folder."""
    if os.geteuid() != 0:
        pytest.skip("bringing up SLURM needs root (apt-get, daemons)")
    state = tmp_path_factory.mktemp("slurm")
    subprocess.run(["bash", str(SLURM_LOCAL), "install"], check=True)
    subprocess.run(["bash", str(SLURM_LOCAL), "up", str(state)], check=True)
    try:
        yield state
    finally:
        subprocess.run(["bash", str(SLURM_LOCAL), "down", str(state)], check=False)


@pytest.fixture
def real_mnist_dir() -> Path:
    if not SHARED_MNIST.is_file():
        pytest.skip(f"real MNIST not present at {SHARED_MNIST}")
    return SHARED_MNIST.parent
