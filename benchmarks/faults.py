"""Inject faults and hostile inputs into real sweeps and print what survived.

Faults: kill -9 of a worker mid-pack, of a shard writer mid-write (its temp file left
behind), of the whole sweep; two sweeps at once on one folder; with --slurm, SLURM's
preemption signal and `scontrol requeue` of a running array task (needs SLURM_CONF, e.g.
from tests/cluster/slurm_local.sh). Bad inputs: hostile specs, overrides, data files and
shards through the CLI. Prints one table; "trials lost" and "unclear errors" must be 0.

    python benchmarks/faults.py [--slurm] [--keep DIR]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
GRID = """
name = "faults"
kind = "grid"
[base]
epochs = {epochs}
batch_size = 16
valid_size = 28
[grid]
units = [{units}]
dropout = [0.0, 0.3]
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slurm", action="store_true", help="also fault a real SLURM")
    parser.add_argument("--keep", default=None, help="work folder (default: a temp folder)")
    args = parser.parse_args()
    work = Path(args.keep or tempfile.mkdtemp(prefix="mnistfc_faults_"))
    data = _make_data(work / "data")
    faults: list[tuple[str, bool, int]] = []
    for name, inject in _faults(args.slurm):
        started = time.perf_counter()
        survived, lost = inject(work / name.replace(" ", "_"), data)
        faults.append((name, survived, lost))
        print(f"  {name}: {'survived' if survived else 'NOT survived'}, {lost} trial(s) lost "
              f"({time.perf_counter() - started:.0f} s)", flush=True)  # fmt: skip
    inputs = _bad_inputs(work / "inputs", data)
    unclear = [name for name, clear in inputs if not clear]
    print()
    print("| faults injected | survived | trials lost | bad inputs tried | unclear errors |")
    print("|---|---|---|---|---|")
    print(f"| {len(faults)} | {sum(s for _, s, _ in faults)} | {sum(n for *_, n in faults)} "
          f"| {len(inputs)} | {len(unclear)} |")  # fmt: skip
    for name in unclear:
        print(f"unclear: {name}")
    if unclear or any(not s or n for _, s, n in faults):
        sys.exit(1)


# ------------------------------------------------------------------------------------ faults
def _faults(slurm: bool) -> list[tuple[str, Callable[[Path, Path], tuple[bool, int]]]]:
    faults = [
        ("kill -9 worker mid-pack", _kill_worker),
        ("kill -9 mid-shard-write", _kill_mid_write),
        ("kill -9 whole sweep", _kill_sweep),
        ("two sweeps at once", _two_sweeps),
    ]
    if slurm:
        faults += [("slurm preemption signal", _slurm("preempt")),
                   ("slurm scontrol requeue", _slurm("requeue"))]  # fmt: skip
    return faults


def _kill_worker(folder: Path, data: Path) -> tuple[bool, int]:
    spec, results = _spec(folder, epochs=6), folder / "results"
    _cli("sweep", spec, "--results", results, "--data-dir", data, "--plan-only", "--chunk", "2")
    hold = _hold(folder)  # the worker waits after its first epoch: killed mid-pack, always
    # A kill -9 gives no warning: only a save by time survives it; here every epoch's.
    worker = _start("run-chunk", results, "--index", "0", "--size", "2", "--checkpoint-min", "0",
                    env=_held(hold))  # fmt: skip
    _wait_for(lambda: any((results / "checkpoints").glob("*.npz")), worker)
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    hold.unlink()
    rerun = _cli("run-chunk", results, "--index", "0", "--size", "2", "--verbose")
    return _outcome(results, 2, resumed="pack resumed after epoch" in rerun)


def _kill_mid_write(folder: Path, data: Path) -> tuple[bool, int]:
    spec, results = _spec(folder, epochs=1), folder / "results"
    _cli("sweep", spec, "--results", results, "--data-dir", data, "--executor", "local")
    # What a writer killed between write and rename leaves: a partial hidden temp file, and
    # the trial it was writing has no shard yet.
    victim = sorted((results / "shards").glob("*.json"))[0]
    text = victim.read_text()
    victim.unlink()
    (victim.parent / f".{victim.name}.4242.tmp").write_text(text[: len(text) // 2])
    status = _cli("status", results, check=False)
    rerun = _cli("sweep", spec, "--results", results, "--data-dir", data, "--executor", "local")
    exact = "1 missing" in status and "1 already have a shard, 1 to run" in rerun
    return _outcome(results, 2, resumed=exact)


def _kill_sweep(folder: Path, data: Path) -> tuple[bool, int]:
    spec, results = _spec(folder, epochs=6), folder / "results"
    args = ("sweep", spec, "--results", results, "--data-dir", data, "--executor", "local",
            "--no-pack", "--chunk", "1", "--max-parallel", "1")  # fmt: skip
    sweep = _start(*args, new_session=True)
    _wait_for(lambda: len(list((results / "shards").glob("*.json"))) >= 1, sweep)
    os.killpg(sweep.pid, signal.SIGKILL)  # the sweep and every worker it started
    sweep.wait()
    done = len(list((results / "shards").glob("*.json")))
    rerun = _cli(*args)
    exact = f"{done} already have a shard, {2 - done} to run" in rerun
    return _outcome(results, 2, resumed=exact)


def _two_sweeps(folder: Path, data: Path) -> tuple[bool, int]:
    spec, results = _spec(folder, epochs=3), folder / "results"
    args = ("sweep", spec, "--results", results, "--data-dir", data, "--executor", "local",
            "--no-pack", "--chunk", "1", "--max-parallel", "2")  # fmt: skip
    sweeps = [_start(*args) for _ in range(2)]
    for sweep in sweeps:
        sweep.wait(timeout=900)
    logs = "".join(p.read_text() for p in (results / "submitit").rglob("*_log.err"))
    once = all(logs.count(f"trial {p.stem}: ") == 1 for p in (results / "shards").glob("*.json"))
    return _outcome(results, 2, resumed=once)


def _slurm(how: str) -> Callable[[Path, Path], tuple[bool, int]]:
    def inject(folder: Path, data: Path) -> tuple[bool, int]:
        # The task holds after its first epoch until it has been signalled and resumed, so
        # the signal always lands mid-pack, however fast the machine.
        spec, results = _spec(folder, epochs=6), folder / "results"
        hold = _hold(folder)
        _cli("sweep", spec, "--results", results, "--data-dir", data, "--executor", "slurm",
             "--cluster-set", "partition='debug'", "--cluster-set", "cpus_per_task=1",
             "--cluster-set", "mem_gb=1.5", env=_held(hold))  # fmt: skip
        job = str(json.loads((results / "sweep.json").read_text())["submissions"][-1]["job_ids"][0])

        def logs() -> str:
            return "".join(p.read_text() for p in (results / "submitit").rglob("*_log.*"))

        _wait_for(lambda: "holding after epoch end" in logs(), None)
        command = ["scancel", "--signal=USR2", job] if how == "preempt" else [
            "scontrol", "requeue", job]  # fmt: skip
        subprocess.run(command, check=True, env=ENV)
        _wait_for(lambda: "pack resumed after epoch" in logs(), None)
        hold.unlink()
        _cli("status", results, "--wait", "--interval", "1", check=False)
        return _outcome(results, 2, resumed="pack resumed after epoch" in logs())

    return inject


# -------------------------------------------------------------------------------- bad inputs
def _bad_inputs(folder: Path, data: Path) -> list[tuple[str, bool]]:
    """Run each hostile input through the CLI; clear = exit 2 (1 for I/O), one line, no trace."""
    folder.mkdir(parents=True)
    good = (ROOT / "jobs" / "grid.toml").read_text()
    specs = {
        "unknown key": good + "\nbogus = 1\n",
        "wrong type": good.replace("epochs = 10", 'epochs = "ten"'),
        "negative epochs": good.replace("epochs = 10", "epochs = -1"),
        "dropout 1.0": good.replace("0.8]", "1.0]"),
        "nan learning rate": good.replace("learning_rate = 0.001", "learning_rate = nan"),
        "empty axis": good.replace("units = [16, 32, 64, 128, 256]", "units = []"),
        "bool as number": good.replace("batch_size = 32", "batch_size = true"),
        "not toml": "name = [unclosed\n",
        "binary spec": "\x00\xff\xfe garbage",
        "unknown activation": good.replace('"relu"', '"relux"'),
    }
    cases: list[tuple[str, list[str | Path], int]] = []
    for name, text in specs.items():
        path = folder / f"{name.replace(' ', '_')}.toml"
        path.write_bytes(text.encode("utf-8", "surrogateescape"))
        cases.append((f"spec: {name}", ["sweep", path, "--results", folder / "r", "--data-dir",
                                        data, "--dry-run"], 2))  # fmt: skip
    grid = ROOT / "jobs" / "grid.toml"
    for override in ("base.units=0", "grid.dropout=[2.0]", "nosuchkey=1", "=", "base.seed=-5"):
        argv = ["sweep", grid, "--results", folder / "r", "--data-dir", data, "--set", override]
        cases.append((f"override {override}", [*argv, "--dry-run"], 2))
    for name, writer in _bad_data_files().items():
        bad = folder / f"data_{name.replace(' ', '_')}"
        writer(bad)
        cases.append(
            (f"data: {name}", ["data", "info", "--dataset", "mnist", "--data-dir", bad], 2)
        )
    cases.append(("data: missing folder", ["data", "info", "--dataset", "mnist", "--data-dir",
                                            folder / "nowhere"], 2))  # fmt: skip
    results: list[tuple[str, bool]] = []
    for name, argv, code in cases:
        done = _run(*argv)
        err_lines = [line for line in done.stderr.splitlines() if line.startswith("mnistfc")]
        clear = done.returncode == code and "Traceback" not in done.stderr and len(err_lines) == 1
        results.append((name, clear))
    results += _bad_shards(folder / "shards_case")
    return results


def _bad_data_files() -> dict[str, Callable[[Path], None]]:
    arrays = _arrays(256, 64)

    def npz(mutate: Callable[[dict[str, np.ndarray]], None]) -> Callable[[Path], None]:
        def write(folder: Path) -> None:
            folder.mkdir(parents=True)
            bad = {k: v.copy() for k, v in arrays.items()}
            mutate(bad)
            np.savez(folder / "mnist.npz", **bad)

        return write

    def truncated(folder: Path) -> None:
        npz(lambda a: None)(folder)
        path = folder / "mnist.npz"
        path.write_bytes(path.read_bytes()[:1000])

    def idx_magic(folder: Path) -> None:
        folder.mkdir(parents=True)
        for stem, key in (("train-images-idx3-ubyte", "x_train"), ("train-labels-idx1-ubyte",
                          "y_train"), ("t10k-images-idx3-ubyte", "x_test"),
                          ("t10k-labels-idx1-ubyte", "y_test")):  # fmt: skip
            x = arrays[key]
            header = (0x0DEAD if key == "x_train" else 0x0800 | x.ndim).to_bytes(4, "big")
            header += b"".join(d.to_bytes(4, "big") for d in x.shape)
            (folder / f"{stem}.gz").write_bytes(gzip.compress(header + x.tobytes()))

    return {
        "truncated npz": truncated,
        "labels out of range": npz(lambda a: a["y_train"].__setitem__(0, 11)),
        "count mismatch": npz(lambda a: a.__setitem__("y_test", a["y_test"][:-1])),
        "float pixels": npz(lambda a: a.__setitem__("x_train", a["x_train"].astype(np.float64))),
        "wrong shape": npz(lambda a: a.__setitem__("x_test", a["x_test"].reshape(64, 784))),
        "idx bad magic": idx_magic,
    }


def _bad_shards(folder: Path) -> list[tuple[str, bool]]:
    """Good shards plus hostile ones: aggregate must name and skip each, numbers untouched."""
    data = _make_data(folder / "data")
    spec = _spec(folder, epochs=1)
    results = folder / "results"
    _cli("sweep", spec, "--results", results, "--data-dir", data, "--executor", "local")
    good = sorted((results / "shards").glob("*.json"))
    record = json.loads(good[0].read_text())
    hostile = {
        "random bytes": os.urandom(200),
        "not utf-8": b"\xff\xfe{",
        "json list": b"[1, 2]",
        "unknown schema": json.dumps({**record, "schema_version": 99}).encode(),
        "missing keys": json.dumps({"trial_id": record["trial_id"]}).encode(),
        "nan accuracy": json.dumps(record)
        .replace(f'"accuracy": {record["metrics"]["test"]["accuracy"]}', '"accuracy": NaN', 1)
        .encode(),
        "edited trial id": json.dumps({**record, "trial_id": "0" * 12}).encode(),
    }
    _cli("aggregate", results, check=False)
    before = (results / "report" / "results.csv").read_text()
    for name, payload in hostile.items():
        (results / "shards" / f"zz{abs(hash(name)) % 10**10:010d}.json").write_bytes(payload)
    done = _run("aggregate", results)
    after = (results / "report" / "results.csv").read_text()
    named = done.stdout + done.stderr
    clear = done.returncode == 0 and "Traceback" not in named and before == after
    return [(f"shard: {name}", clear and f"zz{abs(hash(name)) % 10**10:010d}" in named)
            for name in hostile]  # fmt: skip


# ----------------------------------------------------------------------------------- helpers
def _outcome(results: Path, planned: int, *, resumed: bool) -> tuple[bool, int]:
    from mnistfc.folder.shards import list_shards, read_shard

    done = [s for s in map(read_shard, list_shards(results)) if s["status"] == "completed"]
    return resumed and len(done) == planned, planned - len(done)


def _spec(folder: Path, *, epochs: int, units: str = "64") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "faults.toml"
    path.write_text(GRID.format(epochs=epochs, units=units))
    return path


def _arrays(n_train: int, n_test: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    y_train = (np.arange(n_train) % 10).astype(np.uint8)
    y_test = (np.arange(n_test) % 10).astype(np.uint8)

    def images(labels: np.ndarray) -> np.ndarray:
        x = rng.integers(0, 60, size=(len(labels), 28, 28)).astype(np.uint8)
        for i, k in enumerate(labels):
            x[i, 2 + 9 * (k // 4) : 8 + 9 * (k // 4), 1 + 7 * (k % 4) : 7 + 7 * (k % 4)] = 220
        return x

    return {"x_train": images(y_train), "y_train": y_train, "x_test": images(y_test),
            "y_test": y_test}  # fmt: skip


def _make_data(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(folder / "mnist.npz", **_arrays(12_000, 128))
    return folder


def _hold(folder: Path) -> Path:
    """Create the file that makes packs wait after each saved epoch (mnistfc.engine.runtime)."""
    folder.mkdir(parents=True, exist_ok=True)
    hold = folder / "hold"
    hold.touch()
    return hold


def _held(hold: Path) -> dict[str, str]:
    return {**ENV, "MNISTFC_HOLD_FILE": str(hold)}


def _run(*argv: str | Path, env: dict[str, str] = ENV) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "mnistfc", *map(str, argv)]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)


def _cli(*argv: str | Path, check: bool = True, env: dict[str, str] = ENV) -> str:
    done = _run(*argv, env=env)
    if check and done.returncode != 0:
        raise SystemExit(f"mnistfc {' '.join(map(str, argv))} failed:\n{done.stderr[-2000:]}")
    return done.stdout + done.stderr


def _start(
    *argv: str | Path, new_session: bool = False, env: dict[str, str] = ENV
) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "mnistfc", *map(str, argv)]
    return subprocess.Popen(command, env=env, text=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=new_session)  # fmt: skip


def _wait_for(ready: Callable[[], bool], process: subprocess.Popen[str] | None) -> None:
    deadline = time.monotonic() + 600
    while not ready():
        if process is not None and process.poll() is not None:
            raise SystemExit("the process ended before the fault could be injected")
        if time.monotonic() > deadline:
            raise SystemExit("timed out waiting to inject the fault")
        time.sleep(0.1)


if __name__ == "__main__":
    main()
