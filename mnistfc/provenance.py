"""Where a trial ran, recorded in its shard's ``env``: what a cluster user needs to trust a
number after modules, images and drivers changed under it.

Everything here is read once per process (the host does not change under a running task)
and never raises: a fact that cannot be read is recorded as null.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import os
import platform
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

# The submitting host hashes an Apptainer image once and passes its digest to the tasks
# (hashing a multi-GB file in every task would cost seconds each).
IMAGE_DIGEST_ENV = "MNISTFC_IMAGE_DIGEST"
IMAGE_ENV = "MNISTFC_IMAGE"
_SLURM_VARS = (
    "SLURM_JOB_ID",
    "SLURM_ARRAY_JOB_ID",
    "SLURM_ARRAY_TASK_ID",
    "SLURM_JOB_PARTITION",
    "SLURM_RESTART_COUNT",
    "SLURM_CLUSTER_NAME",
)


def utc_now() -> str:
    """Return the time now in UTC, ISO 8601 to the second (``2026-12-01T18:22:25Z``)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%SZ")


def environment() -> dict[str, Any]:
    """Describe where a trial ran: versions, host, CPU and GPUs, container, SLURM ids.

    Engines add ``engine``, ``started_at`` and ``finished_at``.
    """
    return {**_static(), **_slurm(), "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}


def _slurm() -> dict[str, Any]:
    ids = {v.lower(): os.environ[v] for v in _SLURM_VARS if v in os.environ}
    return {"slurm": ids, "cluster": os.environ.get("SLURM_CLUSTER_NAME")}


@functools.lru_cache(maxsize=1)
def _static() -> dict[str, Any]:
    import keras
    import numpy
    import tensorflow as tf

    from mnistfc.version import __version__

    gpus = tf.config.list_physical_devices("GPU")
    names = [_gpu_name(g) for g in gpus]
    build = _tf_build_info()
    return {
        "host": socket.gethostname(),
        "mnistfc": __version__,
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": numpy.__version__,
        "submitit": _version_of("submitit"),
        "device": ", ".join(names) if names else "cpu",
        "gpus": names,
        "cuda": build.get("cuda_version"),
        "cudnn": build.get("cudnn_version"),
        "driver": nvidia_driver() if gpus else None,
        "cpu": cpu_model(),
        "container": container(),
    }


def _gpu_name(device: Any) -> str:
    import tensorflow as tf

    details = tf.config.experimental.get_device_details(device)
    return str(details.get("device_name", device.name))


def _tf_build_info() -> dict[str, Any]:
    import tensorflow as tf

    try:
        return dict(tf.sysconfig.get_build_info())
    except (AttributeError, RuntimeError):
        return {}


def _version_of(package: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def git_commit() -> str | None:
    """Return the commit of the mnistfc checkout this code runs from (``+dirty`` if edited).

    None for an installed package (a wheel, a container image): its version says it all.
    """
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists() or shutil.which("git") is None:
        return None
    try:
        head = _git(root, "rev-parse", "HEAD")
        dirty = _git(root, "status", "--porcelain", "--untracked-files=no", "--", "mnistfc")
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")


def _git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10, check=True
    ).stdout.strip()


def cpu_model() -> str | None:
    """Return the CPU's model name (Linux: /proc/cpuinfo), else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model"):
                return value.strip()
    except OSError:
        pass
    return platform.processor() or None


def nvidia_driver() -> str | None:
    """Return the NVIDIA driver's version, from the kernel module or nvidia-smi."""
    try:
        text = Path("/proc/driver/nvidia/version").read_text(encoding="utf-8")
        for word in text.split():
            if word[:1].isdigit() and word.count(".") >= 1:
                return word
    except OSError:
        pass
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=20, check=True,
        ).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return out.splitlines()[0].strip() if out.strip() else None


def container() -> dict[str, Any] | None:
    """Return the container this process runs in: runtime, image and digest (None: none)."""
    env = os.environ
    runtime = None
    image = env.get(IMAGE_ENV)
    if env.get("APPTAINER_CONTAINER") or env.get("SINGULARITY_CONTAINER"):
        runtime = "apptainer" if env.get("APPTAINER_CONTAINER") else "singularity"
        image = env.get("APPTAINER_CONTAINER") or env.get("SINGULARITY_CONTAINER")
    elif env.get("CH_RUNNING"):
        runtime = "charliecloud"
    elif Path("/run/.containerenv").exists():
        runtime = "podman"
    elif Path("/.dockerenv").exists():
        runtime = "docker"
    if runtime is None and image is None:
        return None
    return {"runtime": runtime, "image": image, "digest": env.get(IMAGE_DIGEST_ENV)}


def image_digest(path: str | os.PathLike[str]) -> str:
    """Return the digest a container image is recorded by: ``sha256:<hex>`` of an image
    file (.sif), or ``tree-sha256:<hex>`` of an image directory (Charliecloud).

    A multi-GB image takes seconds to hash and a study asks for it several times (each
    sweep's and each job's sbatch parameters): a file is hashed once per file version, a
    directory once per process.
    """
    if os.path.isdir(path):
        return _tree_digest(os.path.abspath(path))
    return file_digest(path)


def file_digest(path: str | os.PathLike[str]) -> str:
    """Return ``sha256:<hex>`` of a file, read in 1 MiB blocks, once per file version."""
    stat = os.stat(path)
    return _digest(os.fspath(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=4)
def _tree_digest(root: str) -> str:
    """Hash every file's path and content and every symlink's target, in path order.

    Directories count only through what they hold, so the empty mount points made for binds
    (launch/container) leave the digest as it was.
    """
    digest = hashlib.sha256()
    entries = []
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        entries += [os.path.join(folder, name) for name in files]
        links = [os.path.join(folder, d) for d in dirs]
        entries += [path for path in links if os.path.islink(path)]
    for entry in sorted(entries):
        digest.update(os.path.relpath(entry, root).encode(errors="surrogateescape") + b"\0")
        if os.path.islink(entry):
            digest.update(b"link\0" + os.readlink(entry).encode(errors="surrogateescape"))
        elif os.path.isfile(entry):
            with open(entry, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
        digest.update(b"\0")
    return f"tree-sha256:{digest.hexdigest()}"


@functools.lru_cache(maxsize=8)
def _digest(path: str, _size: int, _mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return f"sha256:{digest.hexdigest()}"
