"""`mnistfc doctor`: one line per check, a fix on every failure, exit 1 if any failed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mnistfc.cli import main as cli


def test_a_local_host_with_the_real_dataset_passes(real_mnist_dir: Path, tmp_path: Path, capsys):
    argv = ["doctor", "--data-dir", str(real_mnist_dir), "--results", str(tmp_path / "r")]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "ok   tensorflow: " in out and "GPUs: none" in out
    assert "ok   dataset mnist: " in out and "the published dataset" in out
    assert f"ok   results {tmp_path / 'r'}: {tmp_path} is writable and supports flock" in out
    assert out.rstrip().endswith("3 of 3 checks passed")


def test_each_failure_names_its_fix(
    npz_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setenv("PATH", os.path.dirname(os.__file__))  # no SLURM commands at all
    image = tmp_path / "nope.sif"
    argv = ["doctor", "--data-dir", str(npz_dir), "--executor", "slurm", "--cluster-set",
            "partition='gpu'", "--cluster-set", f"container='{image}'"]  # fmt: skip
    assert cli.main(argv) == 1
    out = capsys.readouterr().out
    assert "FAIL dataset mnist: " in out and "NOT the published dataset) -> mnistfc data" in out
    assert "FAIL slurm commands: missing sbatch, srun, squeue" in out
    assert "-> run on a SLURM login node" in out
    assert (
        f"FAIL container: container image {image} not found (see README: apptainer build); "
        "apptainer not on PATH -> build or convert the image"
    ) in out
    assert "failed: dataset mnist, slurm commands, container" in out


def test_gpus_left_outside_a_container_fail_with_the_fix(
    npz_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")  # what SLURM sets for --gres=gpu:1
    assert cli.main(["doctor", "--data-dir", str(npz_dir)]) == 1
    out = capsys.readouterr().out
    assert "FAIL tensorflow: " in out and "GPUs: none although CUDA_VISIBLE_DEVICES=0" in out
    assert "apptainer --nv, docker --gpus all, ch-fromhost --nvidia" in out
