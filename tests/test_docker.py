"""README's Docker commands, run as written on a real Docker engine.

The Containers section's `docker build` line for the CPU image and its `mf` block (the
function and its `mf train`, `mf sweep`, `mf aggregate` lines) are read from README.md and run
with bash on Debian's docker.io, started for this module by containers/docker_engine.sh. Only
what README itself says to change for a CPU machine is changed (`export MF_IMAGE=...`, no
`--gpus all`: that needs NVIDIA's container toolkit), plus what this machine needs: the build
gets `--network host` (the engine has no bridge) and `--build-arg BASE_IMAGE=` the
debootstrapped bookworm that stands in for python:3.11-slim-bookworm (no registry here), with
this host's CA bundle for pip. The `mf` lines run as an ordinary user in the socket's group,
in a folder holding `data/mnist.npz`, so the results must come out theirs. Needs root (apt-get,
dockerd, useradd); without root it is skipped, and in CI (`$CI`) an engine that cannot be
installed or started fails instead of skipping.
"""

from __future__ import annotations

import grp
import json
import math
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest
from helpers.data import make_arrays, write_npz

import mnistfc
from mnistfc.folder.shards import list_shards, read_shard

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

# Installs packages, starts daemons or builds the image: under pytest-xdist (`make test`) every
# such module runs on one worker, one test after another (xdist_group "system").
pytestmark = pytest.mark.xdist_group("system")


ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
ENGINE = ROOT / "containers" / "docker_engine.sh"
IMAGE_NAME = f"mnistfc:{mnistfc.__version__}-cpu"
CI_USER = "mnistfc-ci"
SOCKET_GROUP = "docker"
# Debian's client, not another `docker` earlier on PATH (/usr/local/bin's has no buildx).
PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


# --------------------------------------------------------------------- README's commands


def _containers_section() -> str:
    text = README.read_text()
    start = text.index("\n## Containers\n")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def _bash_blocks() -> list[str]:
    return re.findall(r"^```bash\n(.*?)^```", _containers_section(), re.MULTILINE | re.DOTALL)


def readme_build(base: str) -> str:
    """README's CPU `docker build` line, with this machine's network and base image."""
    (line,) = [
        line
        for block in _bash_blocks()
        for line in block.splitlines()
        if line.startswith("docker build ") and "--build-arg TF_VARIANT=cpu " in line
    ]
    assert f" -t {IMAGE_NAME} " in line
    return line.replace(
        "docker build ", f"docker build --network host --build-arg BASE_IMAGE={base} ", 1
    )


def readme_mf() -> tuple[str, list[str]]:
    """README's `mf` block for the CPU image: (the lines defining mf, the `mf ...` lines)."""
    (block,) = [block for block in _bash_blocks() if "mf() {" in block]
    lines = block.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("mf "))
    prelude, runs = "\n".join(lines[:first]), lines[first:]
    assert all(line.startswith("mf ") for line in runs), runs
    assert [line.split()[1] for line in runs] == ["train", "sweep", "aggregate"]
    section = _containers_section()
    # what README says to change for the CPU image, and nothing else
    (export,) = re.findall(r"`(export MF_IMAGE=[^`\s]+)`", section)
    assert export == f"export MF_IMAGE={IMAGE_NAME}"
    assert "drop `--gpus all`" in section
    assert prelude.count("--gpus all ") == 1
    return export + "\n" + prelude.replace("--gpus all ", ""), runs


def test_readme_has_the_docker_commands_this_module_runs() -> None:
    build = readme_build("BASE")
    assert build.startswith("docker build --network host --build-arg BASE_IMAGE=BASE ")
    prelude, runs = readme_mf()
    assert "--gpus" not in prelude and '"${MF_IMAGE:-mnistfc}"' in prelude
    assert prelude.index("mkdir -p results") < prelude.index("mf() {")  # before Docker makes it
    assert '-v "$PWD/data:/data:ro" -v "$PWD/results:/results"' in prelude
    assert runs[1].startswith("mf sweep jobs/grid.toml --results /results/grid")


# --------------------------------------------------------------------- the engine


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def _engine(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(ENGINE), *args], capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip


@pytest.fixture(scope="module")
def engine() -> Iterator[dict[str, Any]]:
    """A Docker engine with the base image loaded: DOCKER_HOST, BASE_IMAGE, timings."""
    if os.geteuid() != 0:
        pytest.skip("a Docker engine needs root (apt-get, dockerd)")
    timings: dict[str, float] = {}
    start = time.monotonic()
    install = _engine("install", timeout=1200)
    if install.returncode != 0:
        _unavailable(f"docker.io could not be installed: {install.stderr.strip()[-500:]}")
    timings["install docker.io"] = time.monotonic() - start
    try:
        grp.getgrnam(SOCKET_GROUP)
    except KeyError:  # docker.io's postinst makes it
        subprocess.run(["groupadd", "--system", SOCKET_GROUP], check=True)
    # Not pytest's tmp_path (0700): the ordinary user must reach the socket.
    state = Path(tempfile.mkdtemp(prefix="mnistfc-docker.", dir="/var/tmp"))
    try:
        start = time.monotonic()
        up = _engine("up", str(state), SOCKET_GROUP)
        if up.returncode != 0:
            _unavailable(f"dockerd did not start: {up.stderr.strip()[-1500:]}")
        timings["engine start"] = time.monotonic() - start
        (host,) = re.findall(r"^export DOCKER_HOST=(\S+)$", up.stdout, re.MULTILINE)
        start = time.monotonic()
        load = _engine("load-base", str(state), timeout=1800)
        assert load.returncode == 0, load.stderr
        timings["base load"] = time.monotonic() - start
        yield {"host": host, "base": load.stdout.split()[-1], "timings": timings}
    finally:
        down = _engine("down", str(state))
        assert down.returncode == 0, down.stderr


@pytest.fixture(scope="module")
def ci_user() -> pwd.struct_passwd:
    """An ordinary user in the socket's group (created once)."""
    if os.geteuid() != 0:
        pytest.skip("creating a user needs root")
    try:
        user = pwd.getpwnam(CI_USER)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", "--groups",
                        SOCKET_GROUP, CI_USER], check=True)  # fmt: skip
        user = pwd.getpwnam(CI_USER)
    if CI_USER not in grp.getgrnam(SOCKET_GROUP).gr_mem:
        subprocess.run(["usermod", "--append", "--groups", SOCKET_GROUP, CI_USER], check=True)
    assert user.pw_uid != 0
    return user


def _env(engine: dict[str, Any], home: str) -> dict[str, str]:
    assert shutil.which("docker", path=PATH) == "/usr/bin/docker"
    return {"PATH": PATH, "HOME": home, "LANG": "C.UTF-8", "DOCKER_HOST": engine["host"],
            "DOCKER_BUILDKIT": "1", "BUILDKIT_PROGRESS": "plain"}  # fmt: skip


def _tail(run: subprocess.CompletedProcess[str], chars: int = 3000) -> str:
    return (run.stdout + run.stderr)[-chars:]


def _docker(engine: dict[str, Any], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["/usr/bin/docker", *args], env=_env(engine, "/root"),
                          capture_output=True, text=True, timeout=600)  # fmt: skip


# --------------------------------------------------------------------- build and run


@pytest.mark.container
def test_readme_docker_build_and_mf_lines_run_as_written(
    engine: dict[str, Any], ci_user: pwd.struct_passwd, capsys: pytest.CaptureFixture[str]
) -> None:
    timings = dict(engine["timings"])
    # Built as root (the checkout may be closed to other users); the image is the same.
    build = readme_build(engine["base"])
    start = time.monotonic()
    run = subprocess.run(["bash", "-euo", "pipefail", "-c", build], cwd=ROOT,
                         env=_env(engine, "/root"), capture_output=True, text=True,
                         timeout=3600)  # fmt: skip
    assert run.returncode == 0, _tail(run)
    timings["build (BuildKit, no cache)"] = time.monotonic() - start
    (image,) = json.loads(_docker(engine, "image", "inspect", IMAGE_NAME).stdout)
    config = image["Config"]
    assert config["Entrypoint"] == ["mnistfc"] and config["Cmd"] == ["--help"]
    assert config["User"] == "1000:1000" and config["WorkingDir"] == "/opt/mnistfc"
    assert f"MNISTFC_IMAGE={IMAGE_NAME}" in config["Env"]
    # no arguments: the CMD, --help
    run = _docker(engine, "run", "--rm", IMAGE_NAME)
    assert run.returncode == 0 and "run-chunk" in run.stdout, _tail(run)

    work = Path(tempfile.mkdtemp(prefix="mnistfc-docker-run.", dir="/var/tmp"))
    try:
        # README's defaults validate on 2,000 test images: more than make_arrays' 128
        write_npz(work / "data", make_arrays(n_test=2400))
        for path in (work, work / "data", work / "data" / "mnist.npz"):
            os.chown(path, ci_user.pw_uid, ci_user.pw_gid)
        prelude, lines = readme_mf()
        outputs = {}
        for line in lines:
            start = time.monotonic()
            run = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", prelude + "\n" + line],
                cwd=work, env=_env(engine, ci_user.pw_dir), capture_output=True, text=True,
                timeout=3600, user=ci_user.pw_uid, group=ci_user.pw_gid,
                extra_groups=[grp.getgrnam(SOCKET_GROUP).gr_gid],
            )  # fmt: skip
            assert run.returncode == 0, f"{line}\n{_tail(run)}"
            timings[line] = time.monotonic() - start
            outputs[line.split()[1]] = run.stdout
        _check_results(work / "results", outputs, ci_user)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    (size,) = re.findall(r"\d+", _docker(engine, "image", "inspect", "--format",
                                         "{{.Size}}", IMAGE_NAME).stdout)  # fmt: skip
    with capsys.disabled():
        print(f"\n[docker] image {IMAGE_NAME}: {int(size) / 1e9:.2f} GB")
        for step, seconds in timings.items():
            print(f"[docker] {seconds:7.1f} s  {step}")


def _check_results(results: Path, outputs: dict[str, str], user: pwd.struct_passwd) -> None:
    train = results / "train"
    for name in ("performance.txt", "history.csv", "best.weights.h5"):
        assert (train / name).stat().st_size > 0, name
    (shard_file,) = list_shards(train)
    shards = [read_shard(shard_file)]
    assert shards[0]["status"] == "completed"

    grid = tomllib.loads((ROOT / "jobs" / "grid.toml").read_text())["grid"]
    cells = math.prod(len(values) for values in grid.values())
    done = f"{cells} trials: {cells} completed, 0 diverged, 0 failed, 0 missing"
    assert done in outputs["sweep"], outputs["sweep"][-2000:]
    sweep_shards = [read_shard(p) for p in list_shards(results / "grid")]
    assert len(sweep_shards) == cells and {s["status"] for s in sweep_shards} == {"completed"}
    shards += sweep_shards

    report = results / "grid" / "report"
    assert (report / "results.csv").read_text().count("\n") == cells + 1  # header + trials
    for name in ("report.md", "report.html", "grid_valid_accuracy.png", "grid_test_error_pct.png"):
        assert (report / name).stat().st_size > 0, name
    wrote = outputs["aggregate"].split("\nwrote:\n", 1)[1].split()
    assert wrote and all((results / Path(p).relative_to("/results")).is_file() for p in wrote)

    for shard in shards:
        container = shard["env"]["container"]
        assert (container["runtime"], container["image"]) == ("docker", IMAGE_NAME)
    # everything the runs made is the calling user's (docker run --user "$(id -u):$(id -g)")
    made = [results, *results.rglob("*")]
    foreign = [str(p) for p in made if (p.lstat().st_uid, p.lstat().st_gid) != (
        user.pw_uid, user.pw_gid)]  # fmt: skip
    assert foreign == [], foreign[:10]
