"""Claims: concurrent sweeps never run a trial twice, and a killed worker frees its trials."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from sweeps import write_tiny_grid

from mnistfc.claims import Claims
from mnistfc.records import SweepRef, list_shards
from mnistfc.search import expand
from mnistfc.spec import load_spec
from mnistfc.worker import TaskSpec, run_task

ROOT = Path(__file__).resolve().parents[1]


def test_a_claimed_trial_is_refused_until_released(tmp_path: Path) -> None:
    first, second = Claims(tmp_path), Claims(tmp_path)
    assert first.claim("abc") and not second.claim("abc")
    first.release("abc")
    assert second.claim("abc")
    second.release_all()
    assert list((tmp_path / "claims").iterdir()) == []


def test_a_killed_holder_frees_its_claims(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from mnistfc.claims import Claims; "
         f"c = Claims({str(tmp_path)!r}); assert c.claim('abc'); print('held', flush=True); "
         "time.sleep(120)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    assert not Claims(tmp_path).claim("abc")
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(timeout=30)
    assert Claims(tmp_path).claim("abc")  # the kernel dropped the dead process's lock


def test_a_worker_waits_for_a_trial_claimed_elsewhere_and_runs_it_if_unfinished(
    tmp_path: Path, npz_dir: Path
) -> None:
    spec = load_spec(write_tiny_grid(tmp_path / "jobs"))
    configs = [t.config for t in expand(spec)]
    results = tmp_path / "results"
    other = Claims(results)
    assert other.claim(configs[0].trial_id)
    # The holder "dies" after a moment without finishing: the worker then runs the trial.
    threading.Timer(3.0, other.release_all).start()
    task = TaskSpec(
        results_dir=str(results),
        data_dir=str(npz_dir),
        sweep=SweepRef("tiny", spec.spec_hash),
        packs=(tuple(configs),),
    )
    started = time.monotonic()
    outcome = run_task(task)
    assert time.monotonic() - started >= 3.0  # it waited for the holder
    assert outcome[-1] == (configs[0].trial_id, "completed")  # run last, after the wait
    assert {s for _, s in outcome} == {"completed"} and len(outcome) == len(configs)
    assert {p.stem for p in list_shards(results)} == {c.trial_id for c in configs}
