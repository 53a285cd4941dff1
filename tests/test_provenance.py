"""Provenance: every shard says what made its numbers, and where."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from helpers.sweeps import write_tiny_grid

from mnistfc import __version__, provenance
from mnistfc.cli import main as cli
from mnistfc.folder.shards import list_shards, read_shard

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
ENV_KEYS = {
    "host", "mnistfc", "git_commit", "python", "tensorflow", "keras", "numpy", "submitit",
    "device", "gpus", "cuda", "cudnn", "driver", "cpu", "container", "slurm", "cluster",
    "cuda_visible_devices",
}  # fmt: skip


def test_environment_names_versions_hardware_and_the_checkout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SLURM_JOB_ID", "41")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "2")
    monkeypatch.setenv("SLURM_CLUSTER_NAME", "tiger")
    env = provenance.environment()
    assert set(env) == ENV_KEYS
    assert env["mnistfc"] == __version__
    assert env["submitit"] and env["tensorflow"] and env["keras"]
    assert env["cpu"]  # this machine's /proc/cpuinfo names its model
    assert env["slurm"] == {"slurm_job_id": "41", "slurm_restart_count": "2",
                            "slurm_cluster_name": "tiger"}  # fmt: skip
    assert env["cluster"] == "tiger"
    root = Path(provenance.__file__).resolve().parents[1]
    if (root / ".git").exists():  # run from a checkout: the commit, marked if edited
        assert re.match(r"^[0-9a-f]{40}(\+dirty)?$", env["git_commit"])
    assert env["device"] == "cpu" and env["gpus"] == [] and env["driver"] is None


def test_container_runtime_image_and_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("APPTAINER_CONTAINER", "SINGULARITY_CONTAINER", "CH_RUNNING", "MNISTFC_IMAGE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("APPTAINER_CONTAINER", "/images/mnistfc.sif")
    monkeypatch.setenv("MNISTFC_IMAGE_DIGEST", "sha256:ab")
    assert provenance.container() == {
        "runtime": "apptainer", "image": "/images/mnistfc.sif", "digest": "sha256:ab"
    }  # fmt: skip
    monkeypatch.delenv("APPTAINER_CONTAINER")
    monkeypatch.setenv("CH_RUNNING", "Weird Al Yankovic")
    monkeypatch.setenv("MNISTFC_IMAGE", "mnistfc:0.1.0-cpu")
    assert provenance.container() == {
        "runtime": "charliecloud", "image": "mnistfc:0.1.0-cpu", "digest": "sha256:ab"
    }  # fmt: skip


def test_file_digest_and_utc_stamps(tmp_path: Path) -> None:
    image = tmp_path / "x.sif"
    image.write_bytes(b"abc")
    assert provenance.file_digest(image) == (
        "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )
    assert ISO_UTC.match(provenance.utc_now())


@pytest.mark.parametrize(("switch", "engine"), [("--pack", "packed-v1"), ("--no-pack", "keras-v1")])
def test_every_shard_of_both_engines_carries_provenance(
    tmp_path: Path, npz_dir: Path, switch: str, engine: str
) -> None:
    results = tmp_path / "r"
    argv = ["sweep", str(write_tiny_grid(tmp_path / "jobs")), "--results", str(results),
            "--data-dir", str(npz_dir), "--executor", "debug", switch]  # fmt: skip
    assert cli.main(argv) == 0
    shards = [read_shard(p) for p in list_shards(results)]
    assert len(shards) == 4
    for shard in shards:
        env = shard["env"]
        assert set(env) >= ENV_KEYS and env["engine"] == engine
        assert ISO_UTC.match(env["started_at"]) and ISO_UTC.match(env["finished_at"])
        assert env["started_at"] <= env["finished_at"]
