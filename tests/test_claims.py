"""Claims: concurrent sweeps never run a trial twice, and a killed worker frees its trials."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest
from helpers.sweeps import write_tiny_grid, write_two_pack_grid

from mnistfc.engine.pack.planner import plan_packs
from mnistfc.engine.runtime import HOLD_ENV
from mnistfc.errors import Interrupted
from mnistfc.folder.checkpoints import checkpoint_path
from mnistfc.folder.claims import Claims
from mnistfc.folder.result import SweepRef
from mnistfc.folder.shards import list_shards, read_shard, shard_path
from mnistfc.launch.worker import TaskSpec, run_task
from mnistfc.trial.packs import Pack, Task
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
    point of the worker or engine, instead of a timer raced against it."""

    def __init__(self, text: str, action: Callable[[int], None]) -> None:
        super().__init__(logging.INFO)
        self.text, self.action, self.seen = text, action, 0

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.seen += 1
            self.action(self.seen)


@contextlib.contextmanager
def _on_log(
    text: str, action: Callable[[int], None], logger_name: str = "mnistfc.launch.worker"
) -> Iterator[_OnLog]:
    logger = logging.getLogger(logger_name)
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
    pack = Pack(tuple(expand(spec)))
    configs = pack.configs
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
        task=Task((pack,)),
    )
    with _on_log(WAITS, holder_dies):
        outcome = run_task(task)
    assert shards_at_release == [0]  # nothing ran while the trial was held
    assert {s for _, s in outcome} == {"completed"} and len(outcome) == len(configs)
    shards = [read_shard(p) for p in list_shards(results)]
    assert {s["trial_id"] for s in shards} == {c.trial_id for c in configs}
    # The pack ran whole, as planned: its id (and so its checkpoint's name) unchanged.
    assert {s["env"]["pack"]["id"] for s in shards} == {pack.id}


def test_claims_that_split_packs_never_mix_them(tmp_path: Path, npz_dir: Path) -> None:
    """Another worker holds one trial of each of two packs (batch sizes 16 and 32), finishes
    one and dies holding the other: each pack runs on its own, the first minus the trial
    finished elsewhere, the second whole under its planned id, with the numbers of a run
    nobody disturbed."""
    packs, task, undisturbed = _two_packs(tmp_path, npz_dir)
    results = tmp_path / "results"
    finished, holder = _another_worker(results, tmp_path / "undisturbed", packs)
    with _on_log(WAITS, holder) as handler:
        outcome = dict(run_task(task(results, packs)))
    assert handler.seen == 2
    assert outcome.pop(finished) == "done elsewhere"
    assert set(outcome.values()) == {"completed"} and len(outcome) == 7
    shards = {s["trial_id"]: s for s in map(read_shard, list_shards(results))}
    rest = packs[0].without([finished])
    assert rest is not None
    for pack in (rest, packs[1]):
        assert {shards[i]["env"]["pack"]["id"] for i in pack.trial_ids} == {pack.id}
    _assert_same_numbers(shards, undisturbed, outcome)


def test_split_packs_resume_their_checkpoints_and_leave_shards_done_elsewhere_alone(
    tmp_path: Path, npz_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both packs were stopped after epoch 1 (checkpoints on disk). Then another worker
    finished a trial of the first and died holding one of the second. The rerun resumes
    both checkpoints under their planned ids (the finished trial trains along, its shard
    left byte for byte), and every number is that of a run nobody disturbed."""
    packs, task, undisturbed = _two_packs(tmp_path, npz_dir)
    results = tmp_path / "results"
    hold = tmp_path / "hold"
    hold.touch()
    monkeypatch.setenv(HOLD_ENV, str(hold))  # the engine holds at each epoch end; a stop

    def stop(_: int) -> None:
        os.kill(os.getpid(), signal.SIGTERM)

    for pack in packs:  # requested there saves the pack: a known point, not a timer
        with (
            _on_log("holding after epoch end", stop, "mnistfc.engine.runtime"),
            pytest.raises(Interrupted, match="after epoch 1"),
        ):
            run_task(task(results, [pack]))
    monkeypatch.delenv(HOLD_ENV)
    assert all(checkpoint_path(results, p.id).exists() for p in packs)
    assert list_shards(results) == []

    finished, holder = _another_worker(results, tmp_path / "undisturbed", packs)
    with (
        _on_log(WAITS, holder) as handler,
        _on_log(
            "pack resumed after epoch 1", lambda _: None, "mnistfc.engine.pack.loop"
        ) as resumed,
    ):
        outcome = dict(run_task(task(results, packs)))
    assert handler.seen == 2 and resumed.seen == 2  # both checkpoints resumed
    assert not any(checkpoint_path(results, p.id).exists() for p in packs)
    assert outcome.pop(finished) == "done elsewhere"
    assert set(outcome.values()) == {"completed"} and len(outcome) == 7
    done_elsewhere = shard_path(results, finished)
    assert (
        done_elsewhere.read_bytes() == shard_path(tmp_path / "undisturbed", finished).read_bytes()
    )
    shards = {s["trial_id"]: s for s in map(read_shard, list_shards(results))}
    for pack in packs:  # every trial ran in its planned pack, under the planned id
        ids = [i for i in pack.trial_ids if i != finished]
        assert {shards[i]["env"]["pack"]["id"] for i in ids} == {pack.id}
    _assert_same_numbers(shards, undisturbed, outcome)


def _two_packs(
    tmp_path: Path, npz_dir: Path
) -> tuple[list[Pack], Callable[[Path, list[Pack]], TaskSpec], dict[str, dict]]:
    """Two planned packs (batch 16 and 32, 4 trials each, 2 epochs), a task maker, and the
    shards of a run of both that nobody disturbed (in ``tmp_path/undisturbed``), by id."""
    spec = load_spec(write_two_pack_grid(tmp_path / "jobs"))
    packs = [Pack(tuple(p)) for p in plan_packs(expand(spec), config=lambda t: t.config)]
    assert [len({c.batch_size for c in p.configs}) for p in packs] == [1, 1] and len(packs) == 2

    def task(results: Path, these: list[Pack]) -> TaskSpec:
        return TaskSpec(results_dir=str(results), data_dir=str(npz_dir),
                        sweep=SweepRef("twopack", spec.spec_hash), task=Task(tuple(these)),
                        checkpoint_s=1e9)  # fmt: skip

    undisturbed = tmp_path / "undisturbed"
    run_task(task(undisturbed, packs))
    return packs, task, {s["trial_id"]: s for s in map(read_shard, list_shards(undisturbed))}


def _another_worker(
    results: Path, source: Path, packs: list[Pack]
) -> tuple[str, Callable[[int], None]]:
    """Claim one trial of each pack as another worker would. Return the id of the one it
    finishes, and the hand-off: once this worker has met both claims, that trial's shard
    appears (copied from ``source``) and the other worker dies, holding the second unrun."""
    finished, dies_holding = packs[0].trial_ids[1], packs[1].trial_ids[2]
    other = Claims(results)
    assert other.claim(finished) and other.claim(dies_holding)

    def holder(seen: int) -> None:
        if seen == 2:
            path = shard_path(results, finished)
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(shard_path(source, finished), path)
            other.release_all()

    return finished, holder


def _assert_same_numbers(
    shards: dict[str, dict], reference: dict[str, dict], trial_ids: Iterable[str]
) -> None:
    for trial_id in trial_ids:
        got, want = shards[trial_id]["metrics"], reference[trial_id]["metrics"]
        for split in ("valid", "test"):
            assert got[split]["accuracy"] == pytest.approx(want[split]["accuracy"], abs=1e-6)
            assert got[split]["loss"] == pytest.approx(want[split]["loss"], rel=1e-4)
