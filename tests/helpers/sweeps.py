"""Helpers shared by the sweep tests (debug/local here, real SLURM in tests/cluster)."""

from __future__ import annotations

from pathlib import Path

TINY_GRID = """
name = "tiny"
kind = "grid"

[base]
epochs = 1
batch_size = 64
valid_size = 28

[grid]
units = [8, 16]
dropout = {dropouts}
valid_size = {valid_sizes}
"""


def write_tiny_grid(folder: Path, dropouts: str = "[0.0, 0.5]", valid_sizes: str = "[28]") -> Path:
    """Write a 2 x N grid on generated data; a valid_size past the test set makes trials fail."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "tiny.toml"
    path.write_text(TINY_GRID.format(dropouts=dropouts, valid_sizes=valid_sizes))
    return path


TWO_PACK_GRID = """
name = "twopack"
kind = "grid"

[base]
epochs = 2
valid_size = 28

[grid]
batch_size = [16, 32]
units = [8, 16]
dropout = [0.0, 0.3]
"""


def write_two_pack_grid(folder: Path) -> Path:
    """Write 8 trials in two batch sizes: every task planned over them holds two packs."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "twopack.toml"
    path.write_text(TWO_PACK_GRID)
    return path
