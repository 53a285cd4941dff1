"""The public Python API: README's notebook example runs as written (paths aside)."""

from __future__ import annotations

import dataclasses
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.data import make_arrays, write_npz

import mnistfc

ROOT = Path(__file__).resolve().parents[1]


def _readme_example() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Python API", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "README's Python API section has no python block"
    return match.group(1)


def test_the_public_surface_is_small_and_stable() -> None:
    assert set(mnistfc.__all__) == {
        "ConfigError", "DataError", "MnistfcError", "ShardError", "TrialConfig",
        "__version__", "load_results", "run_sweep", "run_study", "status", "train_model",
        "Executor", "Report", "Results", "StudyJobs", "Submission", "SweepRun", "SweepStatus",
        "TrialResult",
    }  # fmt: skip
    assert all(hasattr(mnistfc, name) for name in mnistfc.__all__)
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        _ = mnistfc.nothing  # type: ignore[attr-defined]


def test_importing_the_package_loads_neither_pandas_nor_tensorflow() -> None:
    code = "import sys, mnistfc; print(sorted({'pandas', 'tensorflow'} & set(sys.modules)))"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "[]"


def test_train_models_keywords_are_trialconfigs_fields_and_defaults() -> None:
    """One keyword per field, defaulting to the exercise's model: a new field fails here."""
    parameters = inspect.signature(mnistfc.train_model).parameters
    fields = {f.name: f.default for f in dataclasses.fields(mnistfc.TrialConfig)}
    given = {name: p.default for name, p in parameters.items() if name in fields}
    assert given == fields
    assert set(parameters) - set(fields) == {"out", "data_dir", "verbose"}


def test_status_of_a_folder_that_holds_no_sweep_names_it(tmp_path: Path) -> None:
    with pytest.raises(mnistfc.ConfigError, match="is not a sweep results folder"):
        mnistfc.status(tmp_path)


def test_a_bad_setting_is_one_config_error(tmp_path: Path) -> None:
    with pytest.raises(mnistfc.ConfigError, match="dropout"):
        mnistfc.train_model(tmp_path / "out", dropout=1.5)
    assert not (tmp_path / "out").exists()


def test_the_readme_example_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    write_npz(data, make_arrays(n_train=512, n_test=2100))  # room for the 2,000 validation images
    code = _readme_example()
    assert '"../shared/data"' in code and '"results/api' in code
    code = code.replace('"../shared/data"', repr(str(data)))
    code = code.replace('"results/api', f'"{tmp_path}/api')
    monkeypatch.chdir(ROOT)  # the example names jobs/grid.toml, as from the repository root
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "dropout" in out and "units" in out and "False 4" in out
    assert "failed jobs: ()" in out and "{'completed': 4}" in out
    results = mnistfc.load_results(tmp_path / "api" / "grid")
    table = results.grid_table()
    assert table is not None and table.shape == (2, 2) and not results.partial
    best = results.best_trial()
    assert best is not None and best["valid_accuracy"] == table.to_numpy().max()
    assert (tmp_path / "api" / "train" / "performance.txt").exists()
    assert results.budget_table() is None  # a grid has no budgets
