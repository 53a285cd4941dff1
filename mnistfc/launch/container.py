"""The container runtimes a cluster task's Python runs in: Apptainer, SingularityCE and
Charliecloud, each given the same folders at the same paths and the same environment.

Same paths, because submitit hands the task its pickles by their host path, and the plan
names the results and data folders by theirs. Same environment: the host's (SLURM's job
ids reach the shards), with the image's own on top (its PATH finds the image's Python).
``jobs/sweep-array.sbatch`` builds the same command lines in shell; the tests hold the two
to each other.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path

from mnistfc.errors import ConfigError
from mnistfc.launch.profile import RUNTIMES, ClusterProfile

CHARLIECLOUD_ENVIRONMENT = "ch/environment"  # the image's Env, as ch-convert writes it


def command(profile: ClusterProfile, binds: Sequence[str]) -> list[str]:
    """Return the argv prefix that runs a program inside the profile's image.

    Raises ConfigError when the image is missing or unusable by its runtime; for
    Charliecloud it first makes the binds' mount points in the image (see ``_mount_points``).
    """
    assert profile.container is not None
    image = Path(profile.container).expanduser()
    mounts = list(dict.fromkeys([*binds, *profile.container_binds]))
    runtime = profile.container_runtime
    problem = image_problem(runtime, image)
    if problem:
        raise ConfigError(problem)
    if runtime != "charliecloud":
        return [RUNTIMES[runtime], "exec", "--nv", "--bind", ",".join(mounts), str(image)]
    _mount_points(image, mounts)
    return [
        "ch-run",
        "--set-env",  # the image's Env (ch/environment) over the host's
        "--set-env=HOME=/tmp",  # the image is read-only; /tmp is the task's own tmpfs
        "--set-env=PYTHONNOUSERSITE=1",
        f"--set-env=MNISTFC_IMAGE={image}",  # shards record the image by its path
        "--unset-env=PYTHONPATH",
        "--private-tmp",
        *(f"--bind={m}" for m in mounts),
        str(image),
        "--",
    ]


def python_command(profile: ClusterProfile, binds: Sequence[str]) -> str:
    """Return the shell command submitit runs as the task's Python, inside the image."""
    return shlex.join([*command(profile, binds), "python3"])


def setup_lines(profile: ClusterProfile) -> list[str]:
    """Return the shell lines a task's job script runs before the runtime starts."""
    if profile.container and profile.container_runtime == "charliecloud":
        return ["export USER=${USER:-$(id -un)}"]  # ch-run refuses to start without it
    return []


def image_problem(runtime: str, image: Path) -> str:
    """Return what keeps ``runtime`` from running ``image`` ("" if nothing does)."""
    if runtime == "charliecloud":
        if not image.is_dir():
            return (f"container image {image} is not a Charliecloud image directory (make one "
                    "with ch-convert, see README: Containers)")  # fmt: skip
        if not (image / CHARLIECLOUD_ENVIRONMENT).is_file():
            return (f"container image {image} has no {CHARLIECLOUD_ENVIRONMENT}: convert it with "
                    "`ch-convert -i docker`, or `containers/charliecloud.sh convert`, which "
                    "write the image's environment there")  # fmt: skip
        return ""
    if not image.exists():
        return f"container image {image} not found (see README: apptainer build)"
    return ""


def _mount_points(image: Path, mounts: Sequence[str]) -> None:
    """Make each bind's mount point in a Charliecloud image directory.

    ch-run mounts the image read-only and cannot bind a folder at a path the image lacks;
    the image directory belongs to the user who converted it, so the submitting host makes
    the (empty) directories once. The container's /tmp is private: nothing under it binds.
    """
    for mount in mounts:
        path = Path(mount)
        if not path.is_absolute() or path.parts[1:2] == ("tmp",):
            raise ConfigError(
                f"cannot bind {mount} into a Charliecloud container: binds need an absolute "
                "path outside /tmp (its /tmp is private); use another results or data folder"
            )
        target = image
        for part in path.parts[1:]:
            target = target / part
            if target.is_symlink():  # it would resolve on the host, not in the image
                raise ConfigError(
                    f"cannot bind {mount} into the Charliecloud image {image}: the image has a "
                    f"symlink at /{target.relative_to(image)}; bind the folder by its real path"
                )
        try:
            target.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"cannot make the mount point {target} for {mount} in the Charliecloud image "
                f"({exc.strerror}): convert a copy of the image you own (ch-convert), or run "
                f"mkdir -p {shlex.quote(str(target))} as its owner"
            ) from exc
