"""Shared fixtures: small datasets in the real file formats, and an isolated data cache."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from helpers.data import SHARED_MNIST, SLURM_LOCAL, make_arrays, write_npz

# Before anything imports TensorFlow: its C++ start-up lines bury pytest's own output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(autouse=True)
def _isolated(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point HOME (so Keras's cache) at an empty folder; unset the data env var. Nothing is
    seeded here: mnistfc seeds every model from its config, and Keras loads only where used."""
    monkeypatch.setenv("HOME", str(tmp_path_factory.mktemp("home")))
    monkeypatch.delenv("MNISTFC_DATA_DIR", raising=False)


@pytest.fixture
def arrays() -> dict[str, np.ndarray]:
    return make_arrays()


@pytest.fixture
def npz_dir(tmp_path: Path, arrays: dict[str, np.ndarray]) -> Path:
    """A folder holding a synthetic mnist.npz in Keras's layout."""
    write_npz(tmp_path / "data", arrays)
    return tmp_path / "data"


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
