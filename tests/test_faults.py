"""Faults for real: the fault suite's kills and races, a read-only results folder and a full
disk (root: mount)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.sweeps import write_tiny_grid

from mnistfc.cli import main as cli
from mnistfc.folder.shards import list_shards, read_shard, shard_dir


def _mount(*args: str) -> None:
    done = subprocess.run(["mount", *args], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount here ({done.stderr.strip()})")


@pytest.fixture
def mounts(tmp_path: Path) -> Iterator[list[Path]]:
    if os.geteuid() != 0:
        pytest.skip("mounting a read-only folder or a tiny file system needs root")
    mounted: list[Path] = []
    yield mounted
    for point in reversed(mounted):
        subprocess.run(["umount", str(point)], check=False)


def _sweep(spec: Path, results: Path, data: Path, *extra: str) -> int:
    return cli.main(
        ["sweep", str(spec), "--results", str(results), "--data-dir", str(data),
         "--executor", "local", *extra]
    )  # fmt: skip


def test_a_read_only_results_folder_is_one_clear_error(
    mounts: list[Path], tmp_path: Path, npz_dir: Path, capsys
) -> None:
    source, point = tmp_path / "source", tmp_path / "ro"
    source.mkdir()
    point.mkdir()
    _mount("--bind", str(source), str(point))
    mounts.append(point)
    _mount("-o", "remount,bind,ro", str(point))
    assert _sweep(write_tiny_grid(tmp_path / "jobs"), point / "grid", npz_dir) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Read-only file system" in err and "Traceback" not in err
    assert list(source.iterdir()) == []


def test_a_full_disk_fails_trials_cleanly_and_a_rerun_finishes_them(
    mounts: list[Path], tmp_path: Path, npz_dir: Path, capsys
) -> None:
    point = tmp_path / "small"
    point.mkdir()
    _mount("-t", "tmpfs", "-o", "size=64k", "tmpfs", str(point))
    mounts.append(point)
    spec = write_tiny_grid(tmp_path / "jobs")
    results = point / "grid"
    # Two epochs, saving every epoch: the first checkpoint overflows 64 KB, mid-pack.
    two_epochs = ("--set", "base.epochs=2", "--cluster-set", "checkpoint_min=0")
    assert _sweep(spec, results, npz_dir, *two_epochs) == 1
    out = capsys.readouterr().out
    assert "No space left on device" in out
    # Nothing half-written: every shard that exists reads back whole, and no temp file shows.
    for path in list_shards(results):
        assert read_shard(path)["status"] == "failed"
    assert not [p for p in shard_dir(results).iterdir() if p.name.endswith(".tmp")]
    _mount("-o", "remount,size=16m", str(point))
    assert _sweep(spec, results, npz_dir, *two_epochs, "--rerun-failed") == 0
    shards = [read_shard(p) for p in list_shards(results)]
    assert len(shards) == 4 and {s["status"] for s in shards} == {"completed"}


@pytest.mark.slow
def test_the_fault_suite_loses_nothing_and_every_error_is_clear(tmp_path: Path) -> None:
    """benchmarks/faults.py: its table must read 0 lost, 0 unclear.

    Without --slurm: SLURM's preemption signal and `scontrol requeue` are the SLURM tests'
    own (tests/cluster/test_slurm.py), which also hold the numbers to an uninterrupted run.
    """
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "faults.py"
    done = subprocess.run(
        [sys.executable, str(script), "--keep", str(tmp_path / "faults")],
        capture_output=True, text=True, timeout=1500,
    )  # fmt: skip
    print(done.stdout)  # the table, for the CI log
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert "| 4 | 4 | 0 |" in done.stdout and done.stdout.rstrip().endswith("| 0 |")
