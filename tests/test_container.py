"""The container recipes: the Dockerfile built and run for real, the Apptainer definition.

The image is built with buildah (no Docker engine or registry here) from the Dockerfile as it
is, with only BASE_IMAGE (a debootstrapped Debian bookworm with Python 3.11) and TF_VARIANT=cpu
overridden (containers/build_local.sh), then run: `mnistfc --help`, one epoch of training on
generated data, the plain-sbatch array script (through an `apptainer` stand-in that runs the
command in the image), and the definition's %runscript and %test. The image runs under real
runtimes too: a Docker engine (tests/test_docker.py, README's own commands) and Charliecloud
on the test SLURM as an ordinary user (tests/test_charliecloud.py). Apptainer itself is not
installable here: its definition is parsed (spython) and held to the image. Building needs
root and installs buildah and debootstrap.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.data import make_arrays, write_npz
from helpers.sweeps import write_tiny_grid

import mnistfc
from mnistfc.cli import main as cli
from mnistfc.folder.shards import list_shards, read_shard
from mnistfc.trial.search import chunk

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

# Installs packages, starts daemons or builds the image: under pytest-xdist (`make test`) every
# such module runs on one worker, one test after another (xdist_group "system").
pytestmark = pytest.mark.xdist_group("system")


ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "containers" / "build_local.sh"
DEFINITION = ROOT / "containers" / "mnistfc.def"
SBATCH = ROOT / "jobs" / "sweep-array.sbatch"
TAG = "localhost/mnistfc:test"
VARIANT = "cpu"
IMAGE_NAME = f"mnistfc:{mnistfc.__version__}-{VARIANT}"  # what shards record as their container

# Stands in for `apptainer exec [--nv] --bind A,B IMAGE CMD...`: runs CMD in the buildah image
# IMAGE as the calling user, with each bind mounted at the same path, and logs its arguments.
APPTAINER_SHIM = r"""#!/bin/bash
set -euo pipefail
printf '%q ' "$@" >> "$SHIM_LOG"; echo >> "$SHIM_LOG"
[[ $1 == exec ]] || { echo "shim: only exec, got $1" >&2; exit 90; }
shift
binds=
while [[ $1 == --* ]]; do
    case $1 in
        --nv) shift ;;
        --bind) binds=$2; shift 2 ;;
        *) echo "shim: unknown option $1" >&2; exit 91 ;;
    esac
done
image=$1
shift
ctr=$(buildah from --pull=never --quiet "$image")
trap 'buildah rm "$ctr" > /dev/null' EXIT
buildah config --volume /data- --volume /results- "$ctr"
mounts=()
IFS=, read -ra paths <<< "$binds"
for p in "${paths[@]}"; do mounts+=(-v "$p:$p"); done
# apptainer passes the caller's environment in; the SLURM ids are what shards record
envs=()
for name in $(compgen -e | grep '^SLURM_' || true); do envs+=(--env "$name=${!name}"); done
buildah run --isolation chroot --user "$(id -u):$(id -g)" "${mounts[@]}" "${envs[@]}" "$ctr" -- "$@"
"""


def _dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text()


def _dockerfile_entrypoint() -> list[str]:
    match = re.search(r"^ENTRYPOINT\s+(\[.*\])\s*$", _dockerfile(), re.MULTILINE)
    assert match, "Dockerfile has no exec-form ENTRYPOINT"
    return list(json.loads(match.group(1)))


def _arg_default(name: str) -> str:
    match = re.search(rf"^ARG\s+{name}=(\S+)\s*$", _dockerfile(), re.MULTILINE)
    assert match, f"Dockerfile has no ARG {name}=..."
    return match.group(1)


def _pins(name: str) -> dict[str, str]:
    pins = {}
    for line in (ROOT / "containers" / name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            package, version = line.split("==")
            pins[_normalize(package)] = version
    return pins


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _definition() -> tuple[dict[str, str], dict[str, str]]:
    """Split the .def as Apptainer does: header keywords, then %sections with their bodies."""
    header: dict[str, str] = {}
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in DEFINITION.read_text().splitlines():
        if line.startswith("%"):
            current = sections.setdefault(line[1:].split()[0], [])
        elif current is not None:
            current.append(line)
        elif line.strip() and not line.startswith("#"):
            key, _, value = line.partition(":")
            header[key.strip()] = value.strip()
    return header, {name: "\n".join(body).strip() + "\n" for name, body in sections.items()}


def _spython_recipe() -> Any:
    from spython.main.parse.parsers import SingularityParser

    recipes = SingularityParser(str(DEFINITION)).recipe
    assert len(recipes) == 1
    return next(iter(recipes.values()))


# --------------------------------------------------------------------- without building


def test_pins_cover_the_package_dependencies_and_agree_with_the_lock() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {
        _normalize(re.split(r"[<>=!~;\[ ]", dep, maxsplit=1)[0])
        for dep in project["dependencies"]
        if "python_version < '3.11'" not in dep  # the images run 3.11
    }
    direct = _pins("requirements.txt")
    lock = _pins("constraints.txt")
    # TensorFlow is the variant's (tensorflow[and-cuda] or tensorflow); the rest are pinned
    assert set(direct) == wanted - {"tensorflow"}
    assert all(lock[name] == version for name, version in direct.items())
    # both variants install the `tensorflow` that the metadata requires, so pip check holds
    assert "tensorflow" in lock and "tensorflow-cpu" not in lock
    assert any(name.startswith("nvidia-cudnn") for name in lock), "CUDA wheels missing from lock"


def test_dockerfile_and_definition_carry_the_package_version() -> None:
    assert _arg_default("VERSION") == mnistfc.__version__
    assert _arg_default("TF_VARIANT") == "cuda"
    assert _arg_default("BASE_IMAGE") == "python:3.11-slim-bookworm"
    header, _ = _definition()
    labels = dict(line.split(None, 1) for line in _spython_recipe().labels)
    assert labels["org.opencontainers.image.version"] == mnistfc.__version__
    assert header["Bootstrap"] == "docker-daemon"
    assert header["From"] == "mnistfc:latest"


def test_definition_parses_and_runs_the_images_entrypoint() -> None:
    recipe = _spython_recipe()
    runscript = shlex.split(recipe.cmd)
    assert runscript[0] == "exec" and runscript[-1] == "$@"
    assert runscript[1:-1] == _dockerfile_entrypoint() == ["mnistfc"]
    env = dict(line.split("=", 1) for line in recipe.environ)
    assert env["PATH"].startswith('"/opt/venv/bin:') and env["VIRTUAL_ENV"] == "/opt/venv"
    assert recipe.test is not None
    _, sections = _definition()
    assert {"labels", "environment", "runscript", "test", "help"} <= set(sections)
    assert "list_physical_devices" in sections["test"] and "nvidia-smi" in sections["test"]


def test_sbatch_script_refuses_bad_usage(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    run = subprocess.run(["bash", str(SBATCH), str(tmp_path), "2"], env=env, capture_output=True,
                         text=True)  # fmt: skip
    assert run.returncode == 2 and "SLURM_ARRAY_TASK_ID is not set" in run.stderr
    env["SLURM_ARRAY_TASK_ID"] = "0"
    run = subprocess.run(["bash", str(SBATCH), str(tmp_path), "2"], env=env, capture_output=True,
                         text=True)  # fmt: skip
    assert run.returncode == 2 and "sweep.json not found: plan first" in run.stderr
    run = subprocess.run(["bash", str(SBATCH), str(tmp_path)], env=env, capture_output=True,
                         text=True)  # fmt: skip
    assert run.returncode == 2 and "usage: sbatch --array" in run.stderr


# --------------------------------------------------------------------- the built image


@pytest.fixture(scope="module")
def image() -> Iterator[dict]:
    """Build the CPU variant once (base and layers cached across runs); yield its config."""
    if os.geteuid() != 0:
        pytest.skip("building the image needs root (debootstrap, buildah)")
    install = subprocess.run(["bash", str(BUILD), "install"], capture_output=True, text=True)
    if install.returncode != 0:
        reason = f"buildah/debootstrap could not be installed: {install.stderr.strip()[-500:]}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    subprocess.run(["bash", str(BUILD), "build", TAG, VARIANT], check=True, timeout=3000)
    out = subprocess.run(["buildah", "inspect", "--type", "image", TAG], capture_output=True,
                         text=True, check=True).stdout  # fmt: skip
    yield json.loads(out)


def run_in(
    tag: str,
    *command: str,
    mounts: tuple[tuple[Path, str], ...] = (),
    env: dict[str, str] | None = None,
    user: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command in a fresh container of the image (as `docker run --entrypoint` would)."""
    ctr = subprocess.run(["buildah", "from", "--pull=never", "--quiet", tag], capture_output=True,
                         text=True, check=True).stdout.strip()  # fmt: skip
    try:
        # buildah 1.28 mounts the image's anonymous volumes over user mounts given for both
        # VOLUMEs; dropping the declarations from this throwaway container avoids that.
        subprocess.run(["buildah", "config", "--volume", "/data-", "--volume", "/results-", ctr],
                       check=True)  # fmt: skip
        args = ["buildah", "run", "--isolation", "chroot"]
        for source, target in mounts:
            args += ["-v", f"{source}:{target}"]
        for key, value in (env or {}).items():
            args += ["--env", f"{key}={value}"]
        if user:
            args += ["--user", user]
        return subprocess.run([*args, ctr, "--", *command], capture_output=True, text=True,
                              timeout=600)  # fmt: skip
    finally:
        subprocess.run(["buildah", "rm", ctr], capture_output=True, check=True)


def _entrypoint_run(image: dict, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    return run_in(TAG, *image["OCIv1"]["config"]["Entrypoint"], *args, **kw)


@pytest.mark.container
def test_image_config_is_the_dockerfiles(image: dict) -> None:
    config = image["OCIv1"]["config"]
    assert config["Entrypoint"] == _dockerfile_entrypoint()
    assert config["Cmd"] == ["--help"]
    assert config["User"] == "1000:1000"  # the image's mnistfc user
    assert config["WorkingDir"] == "/opt/mnistfc"
    assert set(config["Volumes"]) == {"/data", "/results"}
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["MNISTFC_DATA_DIR"] == "/data"
    assert env["MNISTFC_IMAGE"] == IMAGE_NAME
    assert env["PATH"].startswith("/opt/venv/bin:")
    assert env["HOME"] == "/home/mnistfc"
    labels = config["Labels"]
    assert labels["org.opencontainers.image.title"] == "mnistfc"
    assert labels["org.opencontainers.image.version"] == mnistfc.__version__
    assert labels["org.opencontainers.image.licenses"] == "MIT"
    assert labels["org.opencontainers.image.base.name"].startswith("localhost/mnistfc-base")
    assert labels["mnistfc.tf-variant"] == VARIANT
    assert re.fullmatch(r"[0-9a-f]{7,}|unknown", labels["org.opencontainers.image.revision"])


@pytest.mark.container
def test_entrypoint_runs_as_a_user_and_python3_serves_submitit(image: dict) -> None:
    run = _entrypoint_run(image, "--help")
    assert run.returncode == 0, run.stderr
    assert "train" in run.stdout and "run-chunk" in run.stdout
    run = _entrypoint_run(image, "--version")
    assert run.stdout.strip() == f"mnistfc {mnistfc.__version__}"
    # cluster.container_python runs `apptainer exec ... IMAGE python3 -m submitit.core._submit`
    run = run_in(
        TAG, "sh", "-c", 'id -u; python3 -c "import mnistfc.launch.worker, submitit.core._submit"'
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() != "0"
    # any uid (docker run --user) gets a writable HOME for Keras's and Matplotlib's caches
    show = "import keras, matplotlib; print(matplotlib.get_configdir())"
    run = run_in(TAG, "python3", "-c", show, user="4242:4242")
    assert run.returncode == 0 and "Permission denied" not in run.stderr, run.stderr
    assert run.stdout.strip() == "/home/mnistfc/.config/matplotlib"


@pytest.mark.container
def test_installed_packages_are_exactly_the_locked_ones(image: dict) -> None:
    run = run_in(TAG, "pip", "list", "--format=json", "--disable-pip-version-check")
    assert run.returncode == 0, run.stderr
    installed = {_normalize(p["name"]): p["version"] for p in json.loads(run.stdout)}
    assert installed.pop("mnistfc") == mnistfc.__version__
    lock = _pins("constraints.txt")
    assert {n: v for n, v in installed.items() if lock.get(n) != v} == {}
    # exactly the lock, less what only the cuda variant installs: NVIDIA's CUDA wheels
    assert set(installed) == {n for n in lock if not n.startswith("nvidia-")}
    assert installed["tensorflow"] == lock["tensorflow"]


@pytest.mark.container
def test_train_in_the_image_writes_a_shard_naming_the_image(image: dict, tmp_path: Path) -> None:
    data, results = tmp_path / "data", tmp_path / "results"
    write_npz(data, make_arrays())
    results.mkdir()
    os.chown(results, 1000, 1000)  # the image's user, as `docker run -v` users must arrange
    # no --data-dir: the image's MNISTFC_DATA_DIR=/data finds the mounted dataset
    run = _entrypoint_run(
        image, "train", "--out", "/results/train", "--epochs", "1", "--batch-size", "64",
        "--valid-size", "28", mounts=((data, "/data:ro"), (results, "/results")),
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert "best epoch 1 of 1" in run.stdout
    out = results / "train"
    for name in ("performance.txt", "history.csv", "best.weights.h5", "accuracy.png"):
        assert (out / name).stat().st_size > 0
        assert (out / name).stat().st_uid == 1000
    (shard_file,) = list_shards(out)
    shard = read_shard(shard_file)
    assert shard["status"] == "completed" and len(shard["history"]) == 1
    assert shard["env"]["container"]["image"] == IMAGE_NAME
    assert shard["env"]["tensorflow"] == _pins("constraints.txt")["tensorflow"]
    assert shard["env"]["device"] == "cpu"


@pytest.mark.container
def test_sweep_and_aggregate_in_the_image_as_the_callers_uid(image: dict, tmp_path: Path) -> None:
    data, results = tmp_path / "data", tmp_path / "results"
    write_npz(data, make_arrays())
    results.mkdir()
    os.chown(results, 4242, 4242)  # docker run --user 4242:4242: a uid the image does not know
    mounts = ((data, "/data:ro"), (results, "/results"))
    # the image's own jobs/grid.toml (WORKDIR /opt/mnistfc), shrunk to two 1-epoch trials
    run = _entrypoint_run(
        image, "sweep", "jobs/grid.toml", "--results", "/results/grid", "--executor", "local",
        "--set", "base.epochs=1", "--set", "base.batch_size=64", "--set", "base.valid_size=28",
        "--set", "grid.units=[8]", "--set", "grid.dropout=[0.0,0.5]",
        mounts=mounts, user="4242:4242",
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert "2 completed, 0 diverged, 0 failed, 0 missing" in run.stdout
    run = _entrypoint_run(image, "aggregate", "/results/grid", mounts=mounts, user="4242:4242")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Permission denied" not in run.stderr
    report = results / "grid" / "report"
    assert (report / "results.csv").read_text().count("\n") == 3  # header + 2 trials
    assert (report / "report.html").stat().st_uid == 4242
    shards = [read_shard(p) for p in list_shards(results / "grid")]
    assert {s["env"]["container"]["image"] for s in shards} == {IMAGE_NAME}


@pytest.mark.container
def test_oci_archive_holds_the_image(image: dict, tmp_path: Path) -> None:
    archive = tmp_path / "mnistfc.oci.tar"
    subprocess.run(["bash", str(BUILD), "export", TAG, str(archive)], check=True, timeout=900)
    with tarfile.open(archive) as tar:

        def member(name: str) -> Any:
            file = tar.extractfile(name)
            assert file is not None, f"{name} missing from {archive}"
            return json.load(file)

        def blob(digest: str) -> Any:
            return member("blobs/" + digest.replace(":", "/"))

        assert member("oci-layout")["imageLayoutVersion"] == "1.0.0"
        (entry,) = member("index.json")["manifests"]
        manifest = blob(entry["digest"])
        names = set(tar.getnames())
        assert all("blobs/" + layer["digest"].replace(":", "/") in names
                   for layer in manifest["layers"])  # fmt: skip
        config = blob(manifest["config"]["digest"])["config"]
    assert config["Entrypoint"] == _dockerfile_entrypoint()
    assert config["User"] == "1000:1000"  # the image's mnistfc user
    assert config["Labels"]["org.opencontainers.image.version"] == mnistfc.__version__
    assert f"MNISTFC_IMAGE={IMAGE_NAME}" in config["Env"]


@pytest.mark.container
def test_definition_runscript_and_test_run_in_the_image(image: dict, tmp_path: Path) -> None:
    _, sections = _definition()
    # Apptainer sources %environment, then runs %runscript with the `apptainer run` arguments
    run = run_in(TAG, "sh", "-c", sections["environment"] + sections["runscript"], "run",
                 "--version")  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == f"mnistfc {mnistfc.__version__}"
    script = sections["environment"] + sections["test"]
    run = run_in(TAG, "sh", "-c", script)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "sees 0 GPU(s), 0 needed" in run.stdout
    # a node whose nvidia-smi lists a GPU that TensorFlow cannot use fails the %test
    fake = tmp_path / "fake-nvidia"
    fake.mkdir()
    (fake / "nvidia-smi").write_text("#!/bin/sh\necho 'GPU 0: Fake GPU (UUID: GPU-0)'\n")
    (fake / "nvidia-smi").chmod(0o755)
    path = "/opt/fake-nvidia:/usr/local/bin:/usr/bin:/bin"
    run = run_in(TAG, "sh", "-c", script, mounts=((fake, "/opt/fake-nvidia:ro"),),
                 env={"PATH": path})  # fmt: skip
    assert run.returncode != 0
    assert "sees 0 GPU(s), 1 needed" in run.stdout
    assert "TensorFlow cannot use the GPUs" in run.stderr
    # and MNISTFC_REQUIRE_GPU=1 fails where there is no GPU at all
    run = run_in(TAG, "sh", "-c", script, env={"MNISTFC_REQUIRE_GPU": "1"})
    assert run.returncode != 0 and "sees 0 GPU(s), 1 needed" in run.stdout


@pytest.fixture
def apptainer_shim(tmp_path: Path) -> tuple[Path, Path]:
    """An `apptainer` stand-in that runs in the built image; returns (shim, its log)."""
    folder = tmp_path / "shim"
    folder.mkdir()
    shim = folder / "apptainer"
    shim.write_text(APPTAINER_SHIM)
    shim.chmod(0o755)
    return shim, folder / "calls.log"


def _plan(tmp_path: Path, size: int) -> tuple[Path, Path, list[list[str]]]:
    data = tmp_path / "data"
    write_npz(data, make_arrays())
    results = tmp_path / "results"
    spec = write_tiny_grid(tmp_path / "jobs")
    args = ["sweep", str(spec), "--results", str(results), "--data-dir", str(data)]
    assert cli.main([*args, "--plan-only", "--chunk", str(size)]) == 0
    trials = json.loads((results / "sweep.json").read_text())["trials"]
    return (
        data.resolve(),
        results.resolve(),
        [[t["trial_id"] for t in c] for c in chunk(trials, size)],
    )


@pytest.mark.container
def test_sbatch_script_runs_its_chunk_in_the_image(
    image: dict,
    tmp_path: Path,
    apptainer_shim: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    data, results, chunks = _plan(tmp_path, size=3)
    assert f"sbatch --array=0-1 jobs/sweep-array.sbatch {results} 3" in capsys.readouterr().out
    shim, log = apptainer_shim
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "MNISTFC_"))}
    extra = tmp_path / "extra"
    extra.mkdir()
    env.update(SLURM_ARRAY_TASK_ID="1", APPTAINER=str(shim), SHIM_LOG=str(log),
               MNISTFC_BINDS=f"{results},{extra}")  # fmt: skip
    run = subprocess.run(["bash", str(SBATCH), str(results), "3", TAG], env=env,
                         capture_output=True, text=True, timeout=600)  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    calls = [shlex.split(line) for line in log.read_text().splitlines()]
    assert calls[-1] == [
        "exec", "--nv", "--bind", f"{results},{data},{extra}", TAG, "mnistfc", "run-chunk",
        str(results), "--index", "1", "--offset", "0", "--size", "3", "--data-dir", str(data),
    ]  # fmt: skip
    shards = {s["trial_id"]: s for s in map(read_shard, list_shards(results))}
    assert set(shards) == set(chunks[1])  # chunk 1 only: the last trial
    assert all(s["status"] == "completed" for s in shards.values())
    assert all(s["env"]["container"]["image"] == IMAGE_NAME for s in shards.values())


@pytest.mark.container
def test_image_passes_pip_check_and_keeps_only_what_runs_need(image: dict) -> None:
    run = run_in(TAG, "pip", "check", "--disable-pip-version-check")
    assert run.returncode == 0, run.stdout + run.stderr  # mnistfc's `tensorflow` is installed
    # the Dockerfile's cuts (headers, test suites, caches, build inputs), and the bytecode kept
    probe = r"""
import glob, json, os, sysconfig
site = sysconfig.get_path("purelib")
print(json.dumps({
    "left": [p for p in ("tensorflow/include", "pandas/tests", "matplotlib/tests", "h5py/tests")
             if os.path.exists(os.path.join(site, p))]
            + glob.glob(os.path.join(site, "numpy", "**", "tests"), recursive=True)
            + [p for p in ("/tmp/pins", "/tmp/src", "/root/.cache/pip") if os.path.exists(p)],
    "bytecode": len(glob.glob(os.path.join(site, "tensorflow", "**", "*.pyc"), recursive=True)),
    "testing": [os.path.isdir(os.path.join(site, m, "testing")) for m in ("numpy", "matplotlib")],
}))
"""
    run = run_in(TAG, "python3", "-c", probe, user="0:0")
    assert run.returncode == 0, run.stderr
    found = json.loads(run.stdout)
    assert found["left"] == []  # what the Dockerfile removes
    assert found["bytecode"] > 1000  # read-only images (Apptainer) could not write it later
    assert found["testing"] == [True, True]
