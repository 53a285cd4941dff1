"""The image on a real SLURM under a real unprivileged container runtime, Charliecloud's ch-run.

The CPU image that tests/test_container.py builds is converted (containers/charliecloud.sh)
into an image directory owned by an ordinary user, who submits jobs/sweep-array.sbatch as a
2-task array with MNISTFC_CONTAINER_RUNTIME=charliecloud and aggregates the shards in the
image; then a submitit sweep with the profile's ``container_runtime = "charliecloud"`` runs
through the same command line (as root: this machine's Python lives in /root, which the
ordinary user cannot read). The cluster is tests/cluster/slurm_local.sh's, in a state folder
others can reach, with the user added to its accounting.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.data import SLURM_LOCAL, make_arrays, write_npz
from helpers.sweeps import write_tiny_grid
from test_container import TAG, image  # noqa: F401  (the module-scoped image fixture)

import mnistfc
from mnistfc.cli import main as cli
from mnistfc.folder.shards import list_shards, read_shard
from mnistfc.launch import container, load_profile

# Installs packages, starts daemons or builds the image: under pytest-xdist (`make test`) every
# such module runs on one worker, one test after another (xdist_group "system").
pytestmark = [pytest.mark.container, pytest.mark.cluster, pytest.mark.xdist_group("system")]

ROOT = Path(__file__).resolve().parents[1]
CONVERT = ROOT / "containers" / "charliecloud.sh"
SBATCH = ROOT / "jobs" / "sweep-array.sbatch"
USER = "mnistfc-ci"  # an ordinary user, made if missing
TIMINGS: dict[str, float] = {}  # seconds, printed to the CI log


def _as_user(
    user: pwd.struct_passwd, *argv: str, env: dict[str, str], **kw
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` as ``user`` with exactly ``env`` (plus the user's own HOME and USER)."""
    env = {**env, "HOME": user.pw_dir, "USER": user.pw_name, "LOGNAME": user.pw_name}
    return subprocess.run(["runuser", "-u", user.pw_name, "--", "env", "-i",
                           *(f"{k}={v}" for k, v in env.items()), *argv],
                          capture_output=True, text=True, **kw)  # fmt: skip


@pytest.fixture(scope="module")
def user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", USER], check=True)
        return pwd.getpwnam(USER)


@pytest.fixture(scope="module")
def scratch(user: pwd.struct_passwd) -> Iterator[Path]:
    """A folder the user owns, outside /tmp (a Charliecloud container's /tmp is private)."""
    folder = Path(tempfile.mkdtemp(prefix="mnistfc-ch-", dir="/var/tmp"))
    os.chmod(folder, 0o755)
    os.chown(folder, user.pw_uid, user.pw_gid)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def ch_image(image: dict, scratch: Path, user: pwd.struct_passwd) -> Iterator[Path]:  # noqa: F811
    """The CPU image as a Charliecloud image directory the user owns."""
    install = subprocess.run(["bash", str(CONVERT), "install"], capture_output=True, text=True)
    if install.returncode != 0:
        pytest.fail(f"charliecloud could not be installed: {install.stderr.strip()[-500:]}")
    target = scratch / "mnistfc"
    start = time.monotonic()
    subprocess.run(["bash", str(CONVERT), "convert", TAG, str(target), user.pw_name], check=True,
                   timeout=1800)  # fmt: skip
    TIMINGS["convert"] = time.monotonic() - start
    yield target


@pytest.fixture(scope="module")
def cluster(user: pwd.struct_passwd) -> Iterator[dict[str, str]]:
    """The test SLURM in a state folder the user can reach, the user in its accounting."""
    state = Path(tempfile.mkdtemp(prefix="mnistfc-slurm-", dir="/var/tmp"))
    os.chmod(state, 0o755)
    subprocess.run(["bash", str(SLURM_LOCAL), "install"], check=True)
    try:
        subprocess.run(["bash", str(SLURM_LOCAL), "up", str(state)], check=True)
        subprocess.run(["bash", str(SLURM_LOCAL), "add-user", str(state), user.pw_name],
                       check=True)  # fmt: skip
        yield {"SLURM_CONF": str(state / "slurm.conf")}
    finally:
        subprocess.run(["bash", str(SLURM_LOCAL), "down", str(state)], check=False)
        shutil.rmtree(state, ignore_errors=True)


def _plan(folder: Path, user: pwd.struct_passwd, size: int) -> tuple[Path, Path]:
    """Plan the tiny grid (4 trials) in chunks of ``size``; hand everything to the user."""
    data, results = folder / "data", folder / "results"
    write_npz(data, make_arrays())
    spec = write_tiny_grid(folder / "jobs")
    assert cli.main(["sweep", str(spec), "--results", str(results), "--data-dir", str(data),
                     "--plan-only", "--chunk", str(size)]) == 0  # fmt: skip
    subprocess.run(["chown", "-R", f"{user.pw_uid}:{user.pw_gid}", str(folder)], check=True)
    return data, results


def _wait_for(job: str, tasks: int, env: dict[str, str], timeout_s: float = 900) -> dict[str, str]:
    """Poll sacct until every array task has a final state."""
    deadline = time.monotonic() + timeout_s
    states: dict[str, str] = {}
    while time.monotonic() < deadline:
        sacct = ["sacct", "-n", "-P", "-X", "--format=JobID,State", "-j", job]
        out = subprocess.run(sacct, env={**os.environ, **env}, capture_output=True, text=True,
                             check=True).stdout  # fmt: skip
        states = dict(line.split("|", 1) for line in out.splitlines() if line)
        if len(states) == tasks and not {"PENDING", "RUNNING", "REQUEUED"} & set(states.values()):
            return states
        time.sleep(1)
    raise AssertionError(f"array job {job} did not finish in {timeout_s} s: {states}")


def _owned_by(folder: Path, user: pwd.struct_passwd) -> list[str]:
    """Return the files under ``folder`` that are not the user's."""
    return [str(p) for p in folder.rglob("*") if p.lstat().st_uid != user.pw_uid]


def test_an_ordinary_user_runs_the_sbatch_array_in_charliecloud_and_aggregates(
    ch_image: Path, cluster: dict[str, str], scratch: Path, user: pwd.struct_passwd,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    folder = scratch / "array"
    folder.mkdir()
    data, results = _plan(folder, user, size=2)
    logs = folder / "logs"
    logs.mkdir()
    os.chown(logs, user.pw_uid, user.pw_gid)
    env = {
        **cluster,
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "MNISTFC_CONTAINER_RUNTIME": "charliecloud",
    }
    start = time.monotonic()
    script = folder / SBATCH.name  # the user's copy: a CI checkout may be closed to them
    shutil.copy(SBATCH, script)
    submit = _as_user(
        user, "sbatch", "--parsable", "--array=0-1", "--cpus-per-task=1", "--mem=1500M",
        f"--output={logs}/%A_%a.out", str(script), str(results), "2", str(ch_image),
        env=env, cwd=folder, check=True,
    )  # fmt: skip
    job = submit.stdout.strip().split(";")[0]
    states = _wait_for(job, 2, cluster)
    elapsed = time.monotonic() - start
    outputs = "\n".join(p.read_text() for p in sorted(logs.iterdir()))
    assert states == {f"{job}_0": "COMPLETED", f"{job}_1": "COMPLETED"}, outputs
    shards = [read_shard(p) for p in list_shards(results)]
    assert len(shards) == 4 and {s["status"] for s in shards} == {"completed"}
    assert {json.dumps(s["env"]["container"], sort_keys=True) for s in shards} == {
        json.dumps({"runtime": "charliecloud", "image": str(ch_image), "digest": None},
                   sort_keys=True)
    }  # fmt: skip
    assert {s["env"]["slurm"]["slurm_array_job_id"] for s in shards} == {job}
    assert {s["env"]["slurm"]["slurm_array_task_id"] for s in shards} == {"0", "1"}
    # the user aggregates in the image, through the command line a profile would use
    profile = load_profile(None, [f"container='{ch_image}'", "container_runtime='charliecloud'"])
    ch_run = container.command(profile, [str(results)])
    run = _as_user(user, *ch_run, "mnistfc", "aggregate", str(results), env={"PATH": env["PATH"]},
                   timeout=600)  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert (results / "report" / "results.csv").read_text().count("\n") == 5  # header + 4 trials
    assert (results / "report" / "report.html").is_file()
    assert _owned_by(results, user) == []  # every file the tasks and the report wrote is theirs
    with capsys.disabled():
        print(
            f"\ncharliecloud: image converted in {TIMINGS.get('convert', 0):.0f} s; sbatch "
            f"array (2 tasks, 4 trials) under ch-run as {user.pw_name}: {elapsed:.0f} s"
        )


def test_a_submitit_sweep_with_the_charliecloud_runtime_runs_in_the_image(
    ch_image: Path, cluster: dict[str, str], scratch: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    folder = scratch / "submitit"
    folder.mkdir()
    data, results = folder / "data", folder / "results"
    write_npz(data, make_arrays())
    spec = write_tiny_grid(folder / "jobs")
    monkeypatch.setenv("SLURM_CONF", cluster["SLURM_CONF"])
    argv = ["sweep", str(spec), "--results", str(results), "--data-dir", str(data),
            "--executor", "slurm", "--chunk", "2", "--cluster-set", "partition='debug'",
            "--cluster-set", "cpus_per_task=1", "--cluster-set", "mem_gb=1.5",
            "--cluster-set", f"container='{ch_image}'",
            "--cluster-set", "container_runtime='charliecloud'"]  # fmt: skip
    assert cli.main(argv) == 0
    waited = cli.main(["status", str(results), "--wait", "--interval", "1"])
    logs = "\n".join(p.read_text()[-2000:] for p in sorted((results / "submitit").rglob("*.err")))
    assert waited == 0, logs
    assert "4 completed, 0 diverged, 0 failed, 0 missing" in capsys.readouterr().out
    shards = [read_shard(p) for p in list_shards(results)]
    containers = {json.dumps(s["env"]["container"], sort_keys=True) for s in shards}
    (only,) = map(json.loads, containers)
    assert only["runtime"] == "charliecloud" and only["image"] == str(ch_image)
    assert only["digest"].startswith("tree-sha256:")  # hashed once by the submitting host
    # doctor runs the image's mnistfc through the same runtime
    cli.main(["doctor", "--executor", "slurm", "--cluster-set", "partition='debug'",
              "--cluster-set", f"container='{ch_image}'",
              "--cluster-set", "container_runtime='charliecloud'"])  # fmt: skip
    version = f"mnistfc {mnistfc.__version__}"
    assert f"ok   container: charliecloud runs {ch_image}: {version}" in capsys.readouterr().out
