"""Status tells the truth when the scheduler cannot be asked (fake squeue and sacct)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from mnistfc.cli import main as cli
from mnistfc.folder.plan import Submission, record_submission, save_plan
from mnistfc.trial.packs import Pack, Task
from mnistfc.trial.search import expand
from mnistfc.trial.spec import spec_from_dict

GRID = {"kind": "grid", "name": "g", "base": {"epochs": 2}, "grid": {"units": [16, 32]}}


def _fake(bin_dir: Path, name: str, script: str) -> None:
    path = bin_dir / name
    path.write_text("#!/bin/bash\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


@pytest.fixture
def submitted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A sweep of 2 trials submitted to SLURM as array 77 (tasks 77_0, 77_1); no shards yet."""
    spec = spec_from_dict(GRID)
    trials = expand(spec)
    results = tmp_path / "r"
    save_plan(results, spec, trials, None, packed=True)
    tasks = tuple(Task((Pack((t,)),)) for t in trials)
    record_submission(results, Submission("slurm", tasks, True, ("77_0", "77_1")))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return results


def test_no_accounting_and_no_controller_is_unreachable_not_not_running(
    submitted: Path, capsys
) -> None:
    bin_dir = submitted.parent / "bin"
    _fake(bin_dir, "squeue", "echo 'squeue: error: Unable to contact slurm controller' >&2; exit 1")
    _fake(bin_dir, "sacct", "echo 'sacct: error: Problem talking to the database' >&2; exit 1")
    assert cli.main(["status", str(submitted)]) == 0
    out = capsys.readouterr().out
    assert "2 missing (0 running, 0 queued, 2 unknown, 0 not running)" in out
    assert "scheduler unreachable (squeue: squeue: error: Unable to contact slurm controller" in out
    assert "they may still be running" in out and "run the same `mnistfc sweep` again" not in out


def test_accounting_down_keeps_what_squeue_sees_and_no_more(submitted: Path, capsys) -> None:
    bin_dir = submitted.parent / "bin"
    _fake(bin_dir, "squeue", "echo '77_0|RUNNING'")
    _fake(bin_dir, "sacct", "echo 'sacct: error: slurmdbd: Connection refused' >&2; exit 1")
    assert cli.main(["status", str(submitted)]) == 0
    out = capsys.readouterr().out
    assert "2 missing (1 running, 0 queued, 1 unknown, 0 not running)" in out
    assert "scheduler unreachable (sacct: sacct: error: slurmdbd: Connection refused)" in out


def test_status_wait_keeps_counting_while_the_scheduler_is_away(submitted: Path, capsys) -> None:
    """The fake scheduler fails its first three answers, then says both tasks ended."""
    bin_dir = submitted.parent / "bin"
    calls = submitted.parent / "calls"
    counting = f'echo x >> {calls}; [ "$(wc -l < {calls})" -gt 6 ] || exit 1\n'
    _fake(bin_dir, "squeue", counting + "true")
    _fake(bin_dir, "sacct", counting + "printf '77_0|COMPLETED\\n77_1|FAILED\\n'")
    assert cli.main(["status", str(submitted), "--wait", "--interval", "0"]) == 1
    out = capsys.readouterr().out
    assert "2 not running)" in out and "run the same `mnistfc sweep` again" in out
    assert len(calls.read_text().splitlines()) >= 8  # it asked again and again, never gave up
