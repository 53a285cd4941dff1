"""Claims: concurrent sweeps never run a trial twice, and a killed worker frees its trials."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers.sweeps import write_tiny_grid, write_two_pack_grid

from mnistfc.engine.pack.planner import pack_id, plan_packs
from mnistfc.folder.claims import Claims
from mnistfc.folder.result import SweepRef
from mnistfc.folder.shards import list_shards, read_shard
from mnistfc.launch.worker import TaskSpec, run_task
from mnistfc.trial.search import expand
from mnistfc.trial.spec import load_spec

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
         "import sys, time; from mnistfc.folder.claims import Claims; "
         f"c = Claims({str(tmp_path)!r}); assert c.claim('abc'); print('held', flush=True); "
         "time.sleep(120)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    assert not Claims(tmp_path).claim("abc")
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(timeout=30)
    assert Claims(tmp_path).claim("abc")  # the kernel dropped the dead process's lock


class _OnLog(logging.Handler):
    """Call ``action(n)`` at the n-th log record containing ``text``: a hand-off at a known
    point of the worker, instead of a timer raced against it."""

    def __init__(self, text: str, action: Callable[[int], None]) -> None:
        super().__init__(logging.INFO)
        self.text, self.action, self.seen = text, action, 0

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.seen += 1
            self.action(self.seen)


@contextlib.contextmanager
def _on_worker_log(text: str, action: Callable[[int], None]) -> Iterator[_OnLog]:
    logger = logging.getLogger("mnistfc.launch.worker")
    handler, level = _OnLog(text, action), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


WAITS = "is claimed by another worker"


def test_a_worker_waits_for_a_trial_claimed_elsewhere_and_runs_it_if_unfinished(
    tmp_path: Path, npz_dir: Path
) -> None:
    spec = load_spec(write_tiny_grid(tmp_path / "jobs"))
    configs = [t.config for t in expand(spec)]
    results = tmp_path / "results"
    other = Claims(results)
    assert other.claim(configs[0].trial_id)
    shards_at_release: list[int] = []

    def holder_dies(_: int) -> None:  # once the worker has seen the claim: gone, unfinished
        shards_at_release.append(len(list_shards(results)))
        other.release_all()

    task = TaskSpec(
        results_dir=str(results),
        data_dir=str(npz_dir),
        sweep=SweepRef("tiny", spec.spec_hash),
        packs=(tuple(configs),),
    )
    with _on_worker_log(WAITS, holder_dies):
        outcome = run_task(task)
    assert shards_at_release == [0]  # nothing ran while the trial was held
    assert {s for _, s in outcome} == {"completed"} and len(outcome) == len(configs)
    shards = [read_shard(p) for p in list_shards(results)]
    assert {s["trial_id"] for s in shards} == {c.trial_id for c in configs}
    # The pack ran whole, as planned: its id (and so its checkpoint's name) unchanged.
    assert {s["env"]["pack"]["id"] for s in shards} == {pack_id(configs)}


def test_claims_that_split_packs_never_mix_them(tmp_path: Path, npz_dir: Path) -> None:
    """Another worker holds one trial of each of two packs (batch sizes 16 and 32), finishes
    one and dies holding the other: each pack runs on its own, the first minus the trial
    finished elsewhere, the second whole under its planned id, with the numbers of a run
    nobody disturbed."""
    spec = load_spec(write_two_pack_grid(tmp_path / "jobs"))
    packs = [tuple(p) for p in plan_packs([t.config for t in expand(spec)])]
    assert [len({c.batch_size for c in p}) for p in packs] == [1, 1] and len(packs) == 2

    def task(results: Path) -> TaskSpec:
        return TaskSpec(results_dir=str(results), data_dir=str(npz_dir),
                        sweep=SweepRef("twopack", spec.spec_hash), packs=tuple(packs))  # fmt: skip

    undisturbed = tmp_path / "undisturbed"
    run_task(task(undisturbed))
    reference = {s["trial_id"]: s for s in map(read_shard, list_shards(undisturbed))}

    results = tmp_path / "results"
    finished, dies_holding = packs[0][1], packs[1][2]
    other = Claims(results)
    assert other.claim(finished.trial_id) and other.claim(dies_holding.trial_id)

    def holder(seen: int) -> None:  # after the worker met both claims
        if seen == 2:
            (results / "shards").mkdir(parents=True, exist_ok=True)
            name = f"{finished.trial_id}.json"
            shutil.copy(undisturbed / "shards" / name, results / "shards" / name)
            other.release_all()

    with _on_worker_log(WAITS, holder) as handler:
        outcome = dict(run_task(task(results)))
    assert handler.seen == 2
    assert outcome.pop(finished.trial_id) == "done elsewhere"
    assert set(outcome.values()) == {"completed"} and len(outcome) == 7
    shards = {s["trial_id"]: s for s in map(read_shard, list_shards(results))}
    rest = [c for c in packs[0] if c != finished]
    for pack in (rest, packs[1]):
        assert {shards[c.trial_id]["env"]["pack"]["id"] for c in pack} == {pack_id(pack)}
    for trial_id in outcome:
        got, want = shards[trial_id]["metrics"], reference[trial_id]["metrics"]
        for split in ("valid", "test"):
            assert got[split]["accuracy"] == pytest.approx(want[split]["accuracy"], abs=1e-6)
            assert got[split]["loss"] == pytest.approx(want[split]["loss"], rel=1e-4)
