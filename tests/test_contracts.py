"""The architecture's contracts hold for mnistfc, and each one fails on code that breaks it
(so a kept contract means something)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import grimp
import pytest
from helpers.contracts import FolderFilesContract, OutputContract

ROOT = Path(__file__).resolve().parents[1]
Build = Callable[[dict[str, str]], grimp.ImportGraph]


def test_every_contract_of_the_project_is_kept() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    run = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "0 broken" in run.stdout
    for name in ("Only folder/ names", "Only cli/ prints", "No import cycles", "Packages, top"):
        assert name in run.stdout


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Build]:
    """Write a throwaway package ``fakepkg`` from {module: source}; return its import graph."""
    monkeypatch.syspath_prepend(str(tmp_path))

    def build(modules: dict[str, str]) -> grimp.ImportGraph:
        for name, source in modules.items():
            path = tmp_path / Path(*name.split(".")).with_suffix(".py")
            path.parent.mkdir(parents=True, exist_ok=True)
            for parent in path.parents:
                if parent == tmp_path:
                    break
                (parent / "__init__.py").touch()
            path.write_text(textwrap.dedent(source))
        return grimp.build_graph("fakepkg", cache_dir=None)

    yield build
    for name in [m for m in sys.modules if m.startswith("fakepkg")]:
        del sys.modules[name]
    shutil.rmtree(tmp_path / "fakepkg", ignore_errors=True)


def _folder_contract() -> FolderFilesContract:
    options = {"owner": "fakepkg.folder", "names": ["shards", "sweep.json"],
               "constants": ["PLAN_FILE"]}  # fmt: skip
    return FolderFilesContract("folder", {}, options)


def test_a_path_built_outside_the_folder_package_breaks_it(fake) -> None:
    graph = fake({
        "fakepkg.folder.plan": 'PLAN_FILE = "sweep.json"\ndef p(r): return r / PLAN_FILE\n',
        "fakepkg.fine": 'state = "shards"  # a word, not a path\n"""mentions shards/x.json"""\n',
        "fakepkg.bad1": 'def f(root): return root / "shards"\n',
        "fakepkg.bad2": 'def f(root): return list(root.glob("*/sweep.json"))\n',
        "fakepkg.bad3": 'def f(r): return f"{r}/shards/{1}.json"\n',
        "fakepkg.bad4": "from fakepkg.folder.plan import PLAN_FILE\n",
    })  # fmt: skip
    check = _folder_contract().check(graph, verbose=False)
    assert not check.kept
    found = check.metadata["found"]
    assert [line.split(":")[0] for line in found] == [f"fakepkg.bad{i}" for i in (1, 2, 3, 4)]


def test_the_folder_package_itself_keeps_it(fake) -> None:
    graph = fake({"fakepkg.folder.shards": 'def d(r): return r / "shards"\n'})
    assert _folder_contract().check(graph, verbose=False).kept


def _output_contract() -> OutputContract:
    options = {"allowed": ["fakepkg.cli"], "job_logging": "fakepkg.runtime:log_job",
               "entry_points": ["fakepkg.worker:Runner.__call__"]}  # fmt: skip
    return OutputContract("output", {}, options)


RUNTIME = """
import logging
def log_job():
    logging.getLogger("fakepkg").addHandler(logging.StreamHandler())
"""
# The job entry point: the one caller log_job may have.
WORKER = """
from fakepkg.runtime import log_job
class Runner:
    def __call__(self):
        log_job()
"""


def test_printing_or_configuring_logging_outside_the_cli_breaks_it(fake) -> None:
    graph = fake({
        "fakepkg.runtime": RUNTIME,
        "fakepkg.cli.main": "import logging\n"
                            'def main():\n    print("hi")\n    logging.basicConfig()\n',
        "fakepkg.worker": WORKER,
        "fakepkg.lib": 'import sys\ndef f():\n    print("x")\n    sys.stderr.write("y")\n',
        "fakepkg.other": "from fakepkg import runtime\ndef job():\n    runtime.log_job()\n",
        "fakepkg.noisy": "import logging\nlogging.getLogger().setLevel(10)\n",
    })  # fmt: skip
    check = _output_contract().check(graph, verbose=False)
    assert not check.kept
    found = sorted(check.metadata["found"])
    assert [line.split(" ")[0] for line in found] == [
        "fakepkg.lib:3", "fakepkg.lib:4", "fakepkg.noisy:2", "fakepkg.other:3"]  # fmt: skip
    assert "job calls log_job, which only a job entry point may" in found[-1]


def test_the_cli_and_the_job_entry_points_keep_it(fake) -> None:
    graph = fake({
        "fakepkg.runtime": RUNTIME,
        "fakepkg.cli.main": 'def main():\n    print("hi")\n',
        "fakepkg.worker": WORKER,
    })  # fmt: skip
    assert _output_contract().check(graph, verbose=False).kept
