"""The container runtimes' command lines (launch/container.py and jobs/sweep-array.sbatch),
without an image: a Charliecloud image directory is faked by its one file ch/environment.
The image itself runs under a real ch-run in tests/test_container.py."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest

from mnistfc.errors import ConfigError
from mnistfc.launch import container, load_profile
from mnistfc.provenance import image_digest

SBATCH = Path(__file__).resolve().parents[1] / "jobs" / "sweep-array.sbatch"


def _image(root: Path) -> Path:
    image = root / "img"
    (image / "ch").mkdir(parents=True)
    (image / "ch" / "environment").write_text("PATH=/opt/venv/bin:/usr/bin:/bin\n")
    (image / "usr" / "bin").mkdir(parents=True)
    (image / "usr" / "bin" / "python3").write_text("not really python")
    return image


def _charliecloud(image: Path, *extra: str):
    return load_profile(None, ["executor=slurm", "partition=gpu", f"container='{image}'",
                               "container_runtime='charliecloud'", *extra])  # fmt: skip


def test_charliecloud_binds_each_folder_at_its_own_path(tmp_path: Path) -> None:
    image = _image(tmp_path)
    results, data = Path("/var/tmp/mnistfc-r"), Path("/srv/data")
    profile = _charliecloud(image, "container_binds=['/scratch/x']")
    argv = container.command(profile, [str(results), str(data), str(results)])
    assert argv == [
        "ch-run", "--set-env", "--set-env=HOME=/tmp", "--set-env=PYTHONNOUSERSITE=1",
        f"--set-env=MNISTFC_IMAGE={image}", "--unset-env=PYTHONPATH", "--private-tmp",
        f"--bind={results}", f"--bind={data}", "--bind=/scratch/x", str(image), "--",
    ]  # fmt: skip
    # ch-run mounts the image read-only: the mount points are made in the image beforehand
    for path in (results, data, Path("/scratch/x")):
        assert (image / path.relative_to("/")).is_dir()
    assert container.python_command(profile, [str(data)]).endswith(f"{image} -- python3")


def test_charliecloud_refuses_what_it_cannot_bind(tmp_path: Path) -> None:
    image = _image(tmp_path)
    profile = _charliecloud(image)
    with pytest.raises(ConfigError, match=r"binds need an absolute path outside /tmp"):
        container.command(profile, ["/tmp/results"])
    (image / "var").symlink_to("/etc")  # an image's absolute symlink would resolve on the host
    with pytest.raises(ConfigError, match=r"the image has a symlink at /var; bind the folder by"):
        container.command(profile, ["/var/tmp/results"])
    (image / "srv").write_text("a file where a folder must go")
    with pytest.raises(ConfigError, match=r"cannot make the mount point .*/srv/d for /srv/d"):
        container.command(profile, ["/srv/d"])
    (image / "ch" / "environment").unlink()
    with pytest.raises(ConfigError, match=r"has no ch/environment: convert it with"):
        container.command(profile, ["/srv/d"])
    with pytest.raises(ConfigError, match=r"is not a Charliecloud image directory"):
        container.command(_charliecloud(image / "usr" / "bin" / "python3"), [])
    with pytest.raises(ConfigError, match=r"container_runtime: must be one of apptainer, "):
        _charliecloud(image, "container_runtime='docker'")


def test_an_image_directory_is_recorded_by_its_content(tmp_path: Path) -> None:
    image = _image(tmp_path)
    first = image_digest(image)
    assert first.startswith("tree-sha256:") and len(first) == len("tree-sha256:") + 64
    (image / "var" / "tmp" / "results").mkdir(parents=True)  # a mount point changes nothing
    copy = _image(tmp_path / "copy")
    (copy / "var" / "tmp").mkdir(parents=True)
    assert image_digest(copy) == first
    other = _image(tmp_path / "other")
    (other / "usr" / "bin" / "python3").write_text("another python")
    assert image_digest(other) != first
    sif = tmp_path / "mnistfc.sif"
    sif.write_bytes(b"sif")
    assert image_digest(sif).startswith("sha256:")


FAKE_CH_RUN = """#!/bin/bash
printf '%q ' "$@" >> "$CALLS"; echo >> "$CALLS"
"""


def test_the_sbatch_script_runs_the_profiles_command_line(tmp_path: Path) -> None:
    image = _image(tmp_path)
    # outside /tmp, where pytest's folders are: a Charliecloud container's /tmp is private
    results = Path("/var/tmp") / f"mnistfc-results-{os.getpid()}"
    data = Path("/var/tmp") / f"mnistfc-data-{os.getpid()}"
    results.mkdir(exist_ok=True)
    (results / "sweep.json").write_text("{}")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "ch-run").write_text(FAKE_CH_RUN)
    (bin_dir / "ch-run").chmod(0o755)
    calls = tmp_path / "calls"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "MNISTFC_"))}
    env.update(PATH=f"{bin_dir}:{env['PATH']}", CALLS=str(calls), SLURM_ARRAY_TASK_ID="1",
               MNISTFC_CONTAINER_RUNTIME="charliecloud", MNISTFC_DATA_DIR=str(data))  # fmt: skip
    try:
        run = subprocess.run(["bash", str(SBATCH), str(results), "3", str(image)], env=env,
                             capture_output=True, text=True)  # fmt: skip
        assert run.returncode == 0, run.stderr
        (call,) = [shlex.split(line) for line in calls.read_text().splitlines()]
        profile = _charliecloud(image)
        assert call == [*container.command(profile, [str(results), str(data)])[1:], "mnistfc",
                        "run-chunk", str(results), "--index", "1", "--offset", "0", "--size",
                        "3", "--data-dir", str(data)]  # fmt: skip
        env["MNISTFC_CONTAINER_RUNTIME"] = "docker"
        run = subprocess.run(["bash", str(SBATCH), str(results), "3", str(image)], env=env,
                             capture_output=True, text=True)  # fmt: skip
        assert (
            run.returncode == 2 and "must be apptainer, singularity or charliecloud" in run.stderr
        )
    finally:
        for folder in (results, data):
            subprocess.run(["rm", "-rf", str(folder)], check=False)
