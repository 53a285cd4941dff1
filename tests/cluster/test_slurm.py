"""Sweeps as real SLURM array jobs on the single-node cluster that slurm_local.sh brings up."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers.data import make_arrays, write_npz
from helpers.sweeps import write_tiny_grid, write_two_pack_grid

from mnistfc.cli import main as cli
from mnistfc.data.dataset import load_dataset
from mnistfc.engine.pack.loop import run_pack
from mnistfc.engine.runtime import HOLD_ENV
from mnistfc.folder.shards import list_shards, read_shard
from mnistfc.trial.config import TrialConfig

# Installs packages, starts daemons or builds the image: under pytest-xdist (`make test`) every
# such module runs on one worker, one test after another (xdist_group "system").
pytestmark = [pytest.mark.cluster, pytest.mark.xdist_group("system")]


@pytest.fixture(scope="module")
def slurm(slurm_state: Path) -> Iterator[dict[str, str]]:
    """The real SLURM (tests/conftest.py) with its SLURM_CONF and PATH in this process."""
    env = _exported(slurm_state / "env.sh")
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield env
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _exported(path: Path) -> dict[str, str]:
    out = subprocess.run(
        ["bash", "-c", f"set -a; source {path}; env -0"], capture_output=True, check=True
    ).stdout.decode()
    wanted = ("SLURM_CONF", "PATH")
    return {
        k: v for k, _, v in (item.partition("=") for item in out.split("\0") if item) if k in wanted
    }


def _sweep(spec: Path, results: Path, data: Path, *extra: str) -> int:
    return cli.main(
        [
            "sweep", str(spec), "--results", str(results), "--data-dir", str(data),
            "--executor", "slurm", "--cluster-set", "partition='debug'",
            "--cluster-set", "cpus_per_task=1", "--cluster-set", "mem_gb=1.5",
            "--cluster-set", "timeout_min=15", *extra,
        ]
    )  # fmt: skip


def _sacct(job: str) -> dict[str, str]:
    out = subprocess.run(
        ["sacct", "-n", "-P", "-X", "--format=JobID,State", "-j", job],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return dict(line.split("|", 1) for line in out.splitlines() if line)


def _array_id(results: Path, submission: int = -1) -> str:
    import json

    plan = json.loads((results / "sweep.json").read_text())
    return str(plan["submissions"][submission]["job_ids"][0]).split("_")[0]


def _wait(results: Path) -> None:
    cli.main(["status", str(results), "--wait", "--interval", "1"])


def test_an_array_sweep_runs_every_trial_and_resumes(
    slurm, tmp_path: Path, npz_dir: Path, capsys
) -> None:
    spec = write_tiny_grid(tmp_path / "jobs")
    results = tmp_path / "results"
    assert _sweep(spec, results, npz_dir, "--chunk", "2") == 0
    out = capsys.readouterr().out
    assert "2 task(s) of 2-2 trial(s)" in out and "follow with: mnistfc status" in out
    _wait(results)
    array = _array_id(results)
    states = _sacct(array)
    assert states == {f"{array}_0": "COMPLETED", f"{array}_1": "COMPLETED"}
    shards = [read_shard(p) for p in list_shards(results)]
    assert len(shards) == 4 and {s["status"] for s in shards} == {"completed"}
    assert {s["env"]["slurm"]["slurm_array_job_id"] for s in shards} == {array}
    assert {s["env"]["slurm"]["slurm_array_task_id"] for s in shards} == {"0", "1"}
    assert cli.main(["status", str(results)]) == 0
    assert "4 completed, 0 diverged, 0 failed, 0 missing" in capsys.readouterr().out
    # the same sweep again submits nothing
    assert _sweep(spec, results, npz_dir, "--chunk", "2") == 0
    assert "nothing to submit" in capsys.readouterr().out
    assert len(_sacct(array)) == 2


def test_a_failing_trial_fails_its_task_and_status_reports_it(
    slurm, tmp_path: Path, npz_dir: Path, capsys
) -> None:
    spec = write_tiny_grid(tmp_path / "jobs", dropouts="[0.0]", valid_sizes="[28, 500]")
    results = tmp_path / "results"
    # one trial per task: the two tasks whose trial has valid_size 500 fail
    assert _sweep(spec, results, npz_dir, "--chunk", "1") == 0
    _wait(results)
    states = _sacct(_array_id(results))
    assert sorted(states.values()) == ["COMPLETED", "COMPLETED", "FAILED", "FAILED"]
    assert cli.main(["status", str(results)]) == 1
    out = capsys.readouterr().out
    assert "2 completed, 0 diverged, 2 failed, 0 missing" in out
    assert "valid_size=500 does not fit the 128 test images" in out


def test_scancel_of_one_task_keeps_the_others_and_the_next_sweep_reruns_only_it(
    slurm, tmp_path: Path, npz_dir: Path, capsys
) -> None:
    spec = write_tiny_grid(tmp_path / "jobs")
    results = tmp_path / "results"
    # one task at a time, so task 1 is still pending when it is cancelled
    assert _sweep(spec, results, npz_dir, "--chunk", "2", "--max-parallel", "1") == 0
    array = _array_id(results)
    subprocess.run(["scancel", f"{array}_1"], check=True)
    _wait(results)
    assert _sacct(array)[f"{array}_0"] == "COMPLETED"
    assert _sacct(array).get(f"{array}_1", "CANCELLED").startswith("CANCELLED")
    kept = {p.name: p.read_bytes() for p in list_shards(results)}
    assert len(kept) == 2
    assert cli.main(["status", str(results)]) == 1
    assert "2 missing (0 running, 0 queued, 2 not running)" in capsys.readouterr().out
    assert _sweep(spec, results, npz_dir, "--chunk", "2") == 0
    assert "2 already have a shard, 2 to run" in capsys.readouterr().out
    _wait(results)
    assert {p.name: p.read_bytes() for p in list_shards(results) if p.name in kept} == kept
    assert len(list_shards(results)) == 4
    assert set(_sacct(_array_id(results)).values()) == {"COMPLETED"}


def test_a_refused_submission_shows_sbatchs_own_message(
    slurm, tmp_path: Path, npz_dir: Path, capsys
) -> None:
    spec = write_tiny_grid(tmp_path / "jobs")
    results = tmp_path / "results"
    code = _sweep(spec, results, npz_dir, "--cluster-set", "partition='nosuchpartition'")
    assert code == 1
    err = capsys.readouterr().err
    assert "sbatch refused array job 1 of 1" in err and "invalid partition" in err.lower()
    assert "Traceback" not in err
    assert list_shards(results) == []


LONG_PACK = """
name = "long"
kind = "grid"
[base]
epochs = 8
batch_size = 16
valid_size = 28
[grid]
units = [128]
dropout = [0.0, 0.3]
"""


def _write_long_pack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path, Path]:
    """A two-trial pack whose task holds after each epoch while the returned file exists.

    The hold (runtime.HOLD_ENV) makes the interruption deterministic: the task cannot finish
    before the test has signalled it, however fast the machine.
    """
    data = tmp_path / "data"
    write_npz(data, make_arrays(n_train=20_000, n_test=128))
    spec = tmp_path / "jobs" / "long.toml"
    spec.parent.mkdir()
    spec.write_text(LONG_PACK)
    hold = tmp_path / "hold"
    hold.touch()
    monkeypatch.setenv(HOLD_ENV, str(hold))  # sbatch exports it to the task
    return spec, data, hold


def _until(condition: Callable[[], bool], what: str, results: Path) -> None:
    # A liveness bound, not a race: nothing here depends on how fast the task runs.
    deadline = time.monotonic() + 600
    while not condition():
        assert time.monotonic() < deadline, f"{what} never happened:\n{_log(results)[-3000:]}"
        time.sleep(0.2)


def test_a_pack_preempted_then_requeued_ends_as_an_uninterrupted_run(
    slurm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """USR2 (SLURM's preemption / time-limit warning) mid-pack, then `scontrol requeue` of
    the resumed task mid-pack: one run, both interruptions, each at a hold."""
    spec, data, hold = _write_long_pack(tmp_path, monkeypatch)
    results = tmp_path / "results"
    assert _sweep(spec, results, data) == 0  # packed: one array task for both trials
    plan = json.loads((results / "sweep.json").read_text())
    task = str(plan["submissions"][-1]["job_ids"][0])  # one task: submitit sbatches no array
    _until(lambda: "holding after epoch end 1" in _log(results), "the first epoch's hold",
           results)  # fmt: skip
    # What SLURM sends before preempting or at --signal time: submitit checkpoints, requeues.
    done = subprocess.run(["scancel", "--signal=USR2", task], capture_output=True, text=True)
    assert done.returncode == 0, (done.stderr, _sacct(task), _log(results))

    def held_again() -> bool:  # the resumed task holds after the first epoch it ends
        logs = _log(results)
        return "pack resumed after epoch" in logs and logs.count("holding after epoch end") >= 2

    _until(held_again, "the resumed task's hold", results)
    # SIGTERM, KillWait seconds before SIGKILL: the pack stops at its next step.
    done = subprocess.run(["scontrol", "requeue", task], capture_output=True, text=True)
    assert done.returncode == 0, (done.stderr, _sacct(task), _log(results))
    _until(lambda: _log(results).count("pack resumed after epoch") >= 2, "the second resume",
           results)  # fmt: skip
    hold.unlink()
    _wait(results)
    assert _sacct(task) == {task: "COMPLETED"}
    logs = _log(results)
    assert "checkpoint requested" in logs
    assert "SIGUSR2 received: saving at the next step boundary" in logs
    assert "SIGTERM received: saving at the next step boundary" in logs
    assert "pack resumed after epoch 1, step 0" in logs and "pack resumed after epoch 2" in logs
    shards = {r["trial_id"]: r for r in map(read_shard, list_shards(results))}
    assert {r["status"] for r in shards.values()} == {"completed"} and len(shards) == 2
    assert not list((results / "checkpoints").glob("*.npz"))
    configs = [TrialConfig(units=128, dropout=d, epochs=8, batch_size=16, valid_size=28)
               for d in (0.0, 0.3)]  # fmt: skip
    monkeypatch.delenv(HOLD_ENV)
    for reference in run_pack(configs, load_dataset("mnist", data, 28)):
        got = shards[reference.trial_id]
        assert [h["epoch"] for h in got["history"]] == list(range(1, 9))
        assert [h["val_loss"] for h in got["history"]] == pytest.approx(
            [h["val_loss"] for h in reference.history], rel=1e-5
        )
        assert got["metrics"]["test"]["loss"] == pytest.approx(
            reference.metrics["test"]["loss"], rel=1e-5
        )


def test_a_pack_past_its_time_limit_requeues_itself_and_finishes(
    slurm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real time limit: SLURM signals USR2 before it, submitit checkpoints and requeues.

    The first run holds after its first epoch, so it is still running when the limit comes,
    however fast the machine; the requeued run is let through.
    """
    spec, data, hold = _write_long_pack(tmp_path, monkeypatch)
    results = tmp_path / "results"
    limits = ("--cluster-set", "timeout_min=1", "--cluster-set", "signal_delay_s=15")
    assert _sweep(spec, results, data, *limits) == 0
    _until(lambda: "pack resumed after epoch" in _log(results), "the requeued run", results)
    hold.unlink()
    _wait(results)
    task = str(json.loads((results / "sweep.json").read_text())["submissions"][-1]["job_ids"][0])
    assert _sacct(task) == {task: "COMPLETED"}
    logs = _log(results)
    assert "this job is timed-out" in logs and "pack resumed after epoch" in logs
    shards = [read_shard(p) for p in list_shards(results)]
    assert len(shards) == 2 and {s["status"] for s in shards} == {"completed"}
    assert all([h["epoch"] for h in s["history"]] == list(range(1, 9)) for s in shards)


def _log(results: Path) -> str:
    return "".join(p.read_text() for p in sorted((results / "submitit").rglob("*_log.*")))


def test_a_killed_chunked_array_resumes_its_checkpoint_with_identical_numbers(
    slurm, tmp_path: Path, npz_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """Chunks of 6: task 0 holds two packs. It is killed (SIGKILL, as a node failure) after
    its first pack finished and its second saved an epoch; the rerun resumes that pack."""
    spec = write_two_pack_grid(tmp_path / "jobs")
    results = tmp_path / "results"
    hold = tmp_path / "hold"
    hold.write_text("3")
    monkeypatch.setenv(HOLD_ENV, str(hold))
    # A SIGKILL gives no warning: only a save by time survives it; here every epoch's.
    assert _sweep(spec, results, npz_dir, "--chunk", "6", "--cluster-set", "checkpoint_min=0") == 0
    assert "2 task(s) of 2-6 trial(s)" in capsys.readouterr().out
    array = _array_id(results)
    checkpoints = results / "checkpoints"
    _until(lambda: len(list_shards(results)) == 6 and len(list(checkpoints.glob("*.npz"))) == 1,
           "task 0 holding in its second pack", results)  # fmt: skip
    subprocess.run(["scancel", "--signal=KILL", f"{array}_0"], check=True)
    _until(lambda: not _sacct(array).get(f"{array}_0", "RUNNING").startswith(("RUNNING", "PEND")),
           "the killed task to end", results)  # fmt: skip
    monkeypatch.delenv(HOLD_ENV)
    hold.unlink()
    capsys.readouterr()
    assert _sweep(spec, results, npz_dir, "--chunk", "6") == 0
    out = capsys.readouterr().out
    assert "6 already have a shard, 2 to run" in out and "1 resumed whole" in out
    _wait(results)
    assert "pack resumed after epoch 1, step 0" in _log(results)
    shards = {r["trial_id"]: r for r in map(read_shard, list_shards(results))}
    assert len(shards) == 8 and {r["status"] for r in shards.values()} == {"completed"}
    assert not list(checkpoints.glob("*.npz"))
    resumed = [c for c in json.loads((results / "sweep.json").read_text())["trials"]
               if c["trial_id"] in json.loads((results / "sweep.json").read_text())
               ["submissions"][-1]["tasks"][0][0]]  # fmt: skip
    configs = [TrialConfig.from_dict(t["config"]) for t in resumed]
    assert len(configs) == 2
    for reference in run_pack(configs, load_dataset("mnist", npz_dir, 28)):
        got = shards[reference.trial_id]
        assert [h["val_loss"] for h in got["history"]] == pytest.approx(
            [h["val_loss"] for h in reference.history], rel=1e-5
        )


def test_status_during_an_accounting_outage_says_so_and_still_counts(
    slurm, slurm_state: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """slurmdbd stops mid-sweep: sacct fails, squeue still sees the running pack."""
    spec, data, hold = _write_long_pack(tmp_path, monkeypatch)
    results = tmp_path / "results"
    assert _sweep(spec, results, data) == 0
    _until(lambda: any((results / "running").glob("*.json")), "the first epoch's heartbeat",
           results)  # fmt: skip
    script = Path(__file__).with_name("slurm_local.sh")
    subprocess.run(["bash", str(script), "stop-daemon", str(slurm_state), "slurmdbd"], check=True)
    try:
        capsys.readouterr()
        assert cli.main(["status", str(results)]) == 0
        out = capsys.readouterr().out
        with capsys.disabled():  # the status screen, for the CI log
            print(f"\nstatus during the slurmdbd outage:\n{out}")
        assert "2 missing (2 running, 0 queued, 0 not running)" in out
        assert "scheduler partly unreachable (sacct: " in out
        assert "running pack " in out and ": epoch 1/8 (2 trials, " in out
        assert "run the same `mnistfc sweep` again" not in out
    finally:
        subprocess.run(["bash", str(script), "start-daemon", str(slurm_state), "slurmdbd"],
                       check=True)  # fmt: skip
    hold.unlink()
    _wait(results)
    shards = [read_shard(p) for p in list_shards(results)]
    assert len(shards) == 2 and {s["status"] for s in shards} == {"completed"}
    assert not list((results / "running").glob("*.json"))


def test_a_sweep_past_max_array_size_and_the_qos_job_limit_completes(
    slurm, tmp_path: Path, npz_dir: Path, capsys
) -> None:
    """The test SLURM allows arrays of 4 tasks and QOS fewjobs 3 jobs (slurm_local.sh)."""
    spec = write_tiny_grid(tmp_path / "jobs", dropouts="[0.0, 0.1, 0.2]")  # 6 trials
    results = tmp_path / "arrays"
    assert _sweep(spec, results, npz_dir, "--chunk", "1", "--dry-run") == 0
    out = capsys.readouterr().out
    assert "2 array job(s) (MaxArraySize 4; no job limit known)" in out
    assert "#SBATCH --array=0-3%4   (tasks 0-3)" in out and "#SBATCH --array=0-1%2" in out
    assert _sweep(spec, results, npz_dir, "--chunk", "1") == 0
    _wait(results)
    plan = json.loads((results / "sweep.json").read_text())
    jobs = plan["submissions"][-1]["job_ids"]
    assert len(jobs) == 6 and len({j.split("_")[0] for j in jobs}) == 2
    shards = [read_shard(p) for p in list_shards(results)]
    assert len(shards) == 6 and {s["status"] for s in shards} == {"completed"}

    few = tmp_path / "few"
    assert _sweep(spec, few, npz_dir, "--chunk", "1", "--cluster-set", "qos='fewjobs'") == 0
    out = capsys.readouterr().out
    assert "3 task(s) of 2-2 trial(s)" in out and "job limit 3" in out
    _wait(few)
    assert len(list_shards(few)) == 6
    assert {read_shard(p)["env"]["cluster"] for p in list_shards(few)} == {"mnistfc-test"}


def test_plain_sbatch_arrays_reach_every_chunk_past_max_array_size(
    slurm, tmp_path: Path, npz_dir: Path, capsys
) -> None:
    spec = write_tiny_grid(tmp_path / "jobs", dropouts="[0.0, 0.1, 0.2]")  # 6 trials
    results = tmp_path / "plain"
    argv = ["sweep", str(spec), "--results", str(results), "--data-dir", str(npz_dir),
            "--plan-only", "--chunk", "1", "--executor", "slurm",
            "--cluster-set", "partition='debug'"]  # fmt: skip
    assert cli.main(argv) == 0
    lines = [line.split() for line in capsys.readouterr().out.splitlines()
             if line.strip().startswith("sbatch ")]  # fmt: skip
    assert len(lines) == 2 and "--export=ALL,MNISTFC_CHUNK_OFFSET=4" in lines[1]
    script = Path(__file__).resolve().parents[2] / "jobs" / "sweep-array.sbatch"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    for line in lines:
        args = [a if a != "jobs/sweep-array.sbatch" else str(script) for a in line[1:]]
        subprocess.run(["sbatch", "--parsable", "--cpus-per-task=1", "--mem=1500M",
                        f"--output={tmp_path}/%A_%a.out", *args],
                       env=env, check=True, capture_output=True, text=True)  # fmt: skip
    _until(lambda: len(list_shards(results)) == 6, "all six chunks' shards", results)
    outputs = "".join(p.read_text() for p in tmp_path.glob("*.out"))
    assert all(f"sweep-array: chunk {i} of " in outputs for i in range(6)), outputs


def test_a_cluster_study_returns_at_once_and_a_dependent_job_writes_the_report(
    slurm, tmp_path: Path, npz_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """Every part runs as jobs; the packs hold after their epoch until the test lets them go,
    so the report cannot exist when `study` returns, however fast the machine."""
    from test_study import JOBS, study_args

    hold = tmp_path / "hold"
    hold.touch()
    monkeypatch.setenv(HOLD_ENV, str(hold))
    results = tmp_path / "study"
    args = [a for a in study_args(results, npz_dir, valid_size=28) if a not in ("--executor",
            "debug")] + ["--cluster", str(JOBS / "clusters" / "slurm-cpu.toml"),
                         "--cluster-set", "partition='debug'", "--cluster-set", "cpus_per_task=1",
                         "--cluster-set", "mem_gb=1.5"]  # fmt: skip
    started = time.monotonic()
    assert cli.main(args) == 0
    elapsed = time.monotonic() - started
    out = capsys.readouterr().out
    with capsys.disabled():  # for the CI log
        print(f"\nstudy --cluster returned after {elapsed:.1f} s:\n{out}")
    assert "train: 1 job(s)" in out and "grid: " in out and "random: " in out
    assert "writes " in out and "(--dependency=afterany)" in out
    assert "confirm: 1 job(s)" in out and "confirm: after them, trains" in out
    assert not (results / "report.html").exists()
    _until(lambda: len(list((results / "grid" / "running").glob("*.json"))) > 0,
           "a grid pack holding after its epoch", results / "grid")  # fmt: skip
    assert cli.main(["status", str(results)]) == 0
    status = capsys.readouterr().out
    with capsys.disabled():  # the status screen, for the CI log
        print(f"\nstatus mid-study:\n{status}")
    assert "sweep grid: 4 trials" in status and "running pack " in status
    assert "report: job pending; it writes" in status
    hold.unlink()
    _until(lambda: (results / "report.html").exists(), "the report job's report", results)
    html = (results / "report.html").read_text()
    for heading in ("Single model", "grid: Grid: dropout x units", "random: Random search",
                    "The winners, retrained on new seeds"):  # fmt: skip
        assert heading in html
    shards = [read_shard(p) for p in (results / "train" / "shards").glob("*.json")]
    assert len(shards) == 1 and shards[0]["env"]["slurm"]["slurm_job_id"]  # ran as a job
    confirmed = [read_shard(p) for p in (results / "confirm" / "shards").glob("*.json")]
    confirm_job = json.loads((results / "study.json").read_text())["parts"]["confirm"][0]
    assert len(confirmed) == 8  # the searches' top 2 on 2 new seeds, inside the confirm job
    assert {s["env"]["slurm"]["slurm_job_id"] for s in confirmed} == {confirm_job}
    report_job = json.loads((results / "study.json").read_text())["report"]
    _until(lambda: _sacct(report_job).get(report_job) == "COMPLETED", "the report job", results)
    assert cli.main(args) == 0  # again: nothing left to run, so it just reports
    again = capsys.readouterr().out
    assert "every part is done: wrote" in again and "confirm: done" in again


def test_doctor_passes_on_the_test_slurm_and_fails_clearly_without_it(
    slurm, slurm_state: Path, real_mnist_dir: Path, tmp_path: Path, capsys
) -> None:
    argv = ["doctor", "--executor", "slurm", "--cluster-set", "partition='debug'",
            "--cluster-set", "qos='fewjobs'", "--data-dir", str(real_mnist_dir),
            "--results", str(tmp_path)]  # fmt: skip
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    with capsys.disabled():  # doctor's report, for the CI log
        print(f"\ndoctor on the test SLURM:\n{out}")
    assert "ok   site limits: arrays of at most 4 tasks; at most 3 jobs queued" in out
    assert "ok   partition debug" in out and "ok   qos fewjobs: yours" in out
    script = Path(__file__).with_name("slurm_local.sh")
    daemons = ("slurmdbd", "slurmctld")
    for daemon in daemons:
        subprocess.run(["bash", str(script), "stop-daemon", str(slurm_state), daemon], check=True)
    try:
        assert cli.main(argv) == 1
        out = capsys.readouterr().out
        with capsys.disabled():
            print(f"\ndoctor with slurmctld and slurmdbd stopped:\n{out}")
        assert "FAIL squeue: " in out and "-> the controller does not answer" in out
        assert "FAIL sacct: " in out and "-> no accounting here" in out
        assert "FAIL site limits: arrays of at most 1001 tasks" in out  # a guess, said so
        assert "FAIL partition debug: not checked: sinfo did not answer" in out
    finally:
        for daemon in reversed(daemons):
            subprocess.run(["bash", str(script), "start-daemon", str(slurm_state), daemon],
                           check=True)  # fmt: skip
