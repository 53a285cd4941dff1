"""``mnistfc doctor``: the first command on a new cluster or node. Each check is one line
that says what was found, and on failure what to do about it.

It checks what a sweep needs before anything is queued: TensorFlow and the GPUs it sees,
the dataset, the SLURM commands and the site's limits, the profile's partition, account and
QOS, the container runtime and image, and whether the results folder supports the flock
claims concurrent sweeps rely on.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mnistfc.errors import MnistfcError
from mnistfc.launch.container import command as container_command
from mnistfc.launch.container import image_problem
from mnistfc.launch.limits import site_limits
from mnistfc.launch.profile import RUNTIMES, ClusterProfile
from mnistfc.version import __version__

SLURM_COMMANDS = ("sbatch", "srun", "squeue", "sacct", "scontrol", "sinfo", "sacctmgr")


@dataclass(frozen=True)
class Check:
    """One finding: what was checked, whether it is fine, what was seen, and the fix."""

    name: str
    ok: bool
    seen: str
    fix: str = ""

    def line(self) -> str:
        """Return the finding as one line of doctor's report."""
        fix = f" -> {self.fix}" if self.fix and not self.ok else ""
        return f"{'ok  ' if self.ok else 'FAIL'} {self.name}: {self.seen}{fix}"


def diagnose(
    profile: ClusterProfile,
    *,
    data_dir: str | None = None,
    results_dir: str | None = None,
    dataset: str = "mnist",
) -> list[Check]:
    """Run every check that applies to this profile; never raises."""
    from mnistfc.launch import backend

    checks = [_tensorflow(profile), _dataset(dataset, data_dir)]
    if not backend(profile.executor).waits_by_default:  # a scheduler: SLURM's checks apply
        checks += _slurm(profile)
    if profile.container:
        checks.append(_container(profile))
    if results_dir is not None:
        checks.append(_flock(Path(results_dir)))
    return checks


def _tensorflow(profile: ClusterProfile) -> Check:
    from mnistfc import provenance
    from mnistfc.engine import runtime

    try:
        tf = runtime.load_tensorflow()
    except ImportError as exc:
        return Check("tensorflow", False, f"cannot import ({exc})",
                     "pip install -e . (or '.[cuda]' on GPU machines)")  # fmt: skip
    env = provenance.environment()
    gpus = env["gpus"]
    seen = (f"{tf.__version__}, built for CUDA {env['cuda'] or '-'} / cuDNN {env['cudnn'] or '-'}"
            f"; GPUs: {', '.join(gpus) if gpus else 'none'}"
            + (f"; driver {env['driver']}" if env["driver"] else ""))  # fmt: skip
    expected = runtime.gpu_expected()
    if expected and not gpus:
        fix = ("install the CUDA build (pip install -e '.[cuda]'); in a container pass the GPUs "
               "in (apptainer --nv, docker --gpus all, ch-fromhost --nvidia)")  # fmt: skip
        return Check("tensorflow", False, f"{seen} although {expected}", fix)
    if profile.gpus_per_task and not gpus:
        seen += " here (the profile's tasks ask for GPUs: run `srun --gres=gpu:1 mnistfc doctor`)"
    return Check("tensorflow", True, seen)


def _dataset(name: str, data_dir: str | None) -> Check:
    from mnistfc.data.dataset import dataset_info

    try:
        info = dataset_info(name, data_dir)
    except MnistfcError as exc:
        return Check(f"dataset {name}", False, str(exc).splitlines()[0],
                     "mnistfc data prepare on an online login node, then --data-dir")  # fmt: skip
    verdict = "the published dataset" if info["canonical"] else "NOT the published dataset"
    return Check(f"dataset {name}", bool(info["canonical"]),
                 f"{info['found']} (content sha256 {str(info['content_sha256'])[:16]}..., "
                 f"{verdict})", "mnistfc data prepare --to DIR fetches a clean copy")  # fmt: skip


def _slurm(profile: ClusterProfile) -> list[Check]:
    missing = [c for c in SLURM_COMMANDS if shutil.which(c) is None]
    checks = [Check("slurm commands", not missing,
                    f"missing {', '.join(missing)}" if missing else "all on PATH",
                    "run on a SLURM login node (module load slurm?)")]  # fmt: skip
    if missing:
        return checks
    checks.append(
        _answers(
            "squeue",
            ["squeue", "-h", "-u", _user()],
            "the controller does not answer: is slurmctld up? (scontrol ping)",
        )
    )
    checks.append(
        _answers(
            "sacct",
            ["sacct", "-n", "-X", "-S", "now-1hours"],
            "no accounting here: status cannot see finished jobs (slurmdbd?)",
        )
    )
    limits = site_limits(profile)
    guessed = "SLURM's default" in limits.source or "unknown" in limits.source
    jobs = ("job limit unknown" if guessed else "no job limit") if limits.max_jobs is None else (
        f"at most {limits.max_jobs} jobs queued ({limits.queued} now)")  # fmt: skip
    checks.append(Check("site limits", not guessed,
                        f"arrays of at most {limits.max_array_size} tasks; {jobs} "
                        f"({limits.source})", "set max_array_size and max_jobs in the profile "
                        "to your site's limits, or ask again when SLURM answers"))  # fmt: skip
    sinfo = _output(["sinfo", "-h", "-o", "%P"])
    partitions = (sinfo or "").replace("*", "").split()
    if sinfo is None:
        seen = "not checked: sinfo did not answer"
    elif profile.partition in partitions:
        seen = "known to sinfo"
    else:
        seen = f"not among {', '.join(partitions) or 'none'}"
    checks.append(Check(f"partition {profile.partition}", profile.partition in partitions, seen,
                        "set partition in the profile (sinfo -s)"))  # fmt: skip
    rows = _output(["sacctmgr", "-n", "-P", "show", "assoc", "where", f"user={_user()}",
                    "format=Account,QOS"])  # fmt: skip
    lines = [r for r in (rows or "").splitlines() if "|" in r]
    known_by_key = {
        "account": {r.split("|")[0] for r in lines},
        "qos": {q for r in lines for q in r.split("|")[1].split(",") if q},
    }
    for key, known in known_by_key.items():
        wanted = getattr(profile, key)
        if not wanted:
            continue
        if rows is None:
            seen = "not checked: sacctmgr did not answer"
        elif wanted in known:
            seen = "yours"
        else:
            seen = f"not among yours: {', '.join(sorted(known)) or 'none'}"
        checks.append(
            Check(
                f"{key} {wanted}",
                wanted in known,
                seen,
                f"set {key} in the profile (sacctmgr show assoc user=$USER)",
            )
        )
    return checks


def _container(profile: ClusterProfile) -> Check:
    """The runtime is on PATH, the image is one it runs, and the image's mnistfc is this one
    (a task unpickles what this host's mnistfc submitted)."""
    assert profile.container is not None
    image = Path(profile.container).expanduser()
    runtime = profile.container_runtime
    program = RUNTIMES[runtime]
    fix = ("build or convert the image (README: Containers), or load the runtime "
           f"(module load {runtime})")  # fmt: skip
    problems = [image_problem(runtime, image)] if image_problem(runtime, image) else []
    if shutil.which(program) is None:
        problems.append(f"{program} not on PATH" if program == runtime else
                        f"{program} ({runtime}) not on PATH")  # fmt: skip
    if problems:
        return Check("container", False, "; ".join(problems), fix)
    try:
        prefix = container_command(profile, [])
    except MnistfcError as exc:
        return Check("container", False, str(exc), fix)
    # as the task's job script would (container.setup_lines): ch-run needs $USER
    out = _output([*prefix, "mnistfc", "--version"], env={**os.environ, "USER": _user()})
    seen = out.strip() if out else f"`{program} ... mnistfc --version` failed"
    ok = seen == f"mnistfc {__version__}"
    return Check("container", ok, f"{runtime} runs {image}: {seen}",
                 f"rebuild the image from this mnistfc {__version__}" if out else fix)  # fmt: skip


def _flock(results: Path) -> Check:
    folder = results
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".doctor-", suffix=".lock") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    except OSError as exc:
        unsupported = exc.errno in (errno.EOPNOTSUPP, errno.ENOLCK, errno.ENOSYS, errno.EINVAL)
        fix = ("mount with flock support (Lustre: -o flock), or use another --results folder"
               if unsupported else "check the path and its permissions")  # fmt: skip
        return Check(f"results {results}", False, f"{folder}: {exc.strerror}", fix)
    return Check(f"results {results}", True, f"{folder} is writable and supports flock")


def _answers(name: str, command: list[str], fix: str) -> Check:
    try:
        subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
    except subprocess.CalledProcessError as exc:
        last = (exc.stderr or "").strip().splitlines()[-1:] or [f"exit {exc.returncode}"]
        return Check(name, False, last[0], fix)
    except (OSError, subprocess.SubprocessError) as exc:
        return Check(name, False, str(exc), fix)
    return Check(name, True, "answers")


def _output(command: list[str], env: dict[str, str] | None = None) -> str | None:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=60, check=True,
                              env=env).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None


def _user() -> str:
    import getpass

    return os.environ.get("USER") or getpass.getuser()
