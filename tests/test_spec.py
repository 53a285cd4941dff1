from __future__ import annotations

from pathlib import Path

import pytest

from mnistfc.errors import ConfigError
from mnistfc.launch import load_profile
from mnistfc.trial.spec import load_spec, spec_from_dict

JOBS = Path(__file__).resolve().parents[1] / "jobs"


def test_the_exercise_specs_load() -> None:
    grid = load_spec(JOBS / "grid.toml")
    assert dict(grid.axes) == {
        "dropout": (0.0, 0.1, 0.3, 0.5, 0.8),
        "units": (16, 32, 64, 128, 256),
    }
    assert (grid.base.batch_size, grid.base.epochs, grid.base.learning_rate) == (32, 10, 1e-3)
    random = load_spec(JOBS / "random.toml")
    assert random.protocol == "repeats" and random.repeats == 3
    assert random.budgets == (10, 20, 50, 100, 200) and random.pool_size == 400
    assert dict(random.axes)["activation"] == ("relu", "elu", "sigmoid", "tanh")
    assert load_spec(JOBS / "random.toml", ["protocol=pool"]).protocol == "pool"


def test_overrides_go_through_validation() -> None:
    spec = load_spec(JOBS / "grid.toml", ["base.epochs=1", "grid.units=[8, 16]", "name=small"])
    assert spec.base.epochs == 1 and dict(spec.axes)["units"] == (8, 16) and spec.name == "small"
    assert spec.spec_hash != load_spec(JOBS / "grid.toml").spec_hash
    with pytest.raises(ConfigError, match="epochs: must be a positive integer"):
        load_spec(JOBS / "grid.toml", ["base.epochs=0"])
    with pytest.raises(ConfigError, match="must look like key=value"):
        load_spec(JOBS / "grid.toml", ["epochs"])


def test_every_problem_of_a_spec_is_listed_at_once() -> None:
    with pytest.raises(ConfigError) as err:
        spec_from_dict(
            {
                "kind": "random",
                "protocol": "bootstrap",
                "budgets": [10, 500],
                "pool_size": 200,
                "surprise": 1,
                "base": {"epochs": 0},
                "space": {
                    "units": [0, 32],
                    "dropout": [1.0],
                    "learning_rate": [-1.0],
                    "activation": ["relu", "swishy"],
                    "batch_size": [],
                    "colour": ["red"],
                },
            }
        )
    message = str(err.value)
    for fragment in (
        "unknown key(s) ['surprise']",
        "base: invalid trial config: epochs: must be a positive integer",
        "space.units: must be a positive integer, got 0",
        "space.dropout: must be in [0, 1), got 1.0",
        "space.learning_rate: must be a finite number > 0",
        "space.activation: 'swishy' is not one of",
        "space.batch_size: must be a non-empty list",
        "space.colour: unknown setting",
        "protocol: 'bootstrap' is not one of repeats, pool",
        "budget 500 is larger than the pool (200 trials)",
    ):
        assert fragment in message, fragment
    assert "10 problems" in message


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"kind": "grid", "grid": {"units": "16"}}, "grid.units: must be a non-empty list"),
        ({"kind": "grid", "grid": {"units": [16, 16]}}, "repeated values"),
        ({"kind": "grid", "grid": {"units": [16.5]}}, "expected int, got 16.5"),
        ({"kind": "grid"}, "[grid]: must be a table"),
        ({"kind": "cube", "grid": {}}, "kind must be one of grid, random"),
    ],
)
def test_grid_spec_errors(data: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        spec_from_dict(data)
    assert message in str(err.value)


def test_toml_syntax_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("kind = grid\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_spec(bad)
    with pytest.raises(ConfigError, match="no such file"):
        load_spec(tmp_path / "missing.toml")


def test_cluster_profiles() -> None:
    gpu = load_profile(JOBS / "clusters" / "slurm-gpu.toml")
    assert (gpu.executor, gpu.partition, gpu.gpus_per_task, gpu.account) == (
        "slurm",
        "gpu",
        1,
        None,
    )
    assert load_profile(None).executor == "local"
    assert load_profile(None, ["executor=debug"]).executor == "debug"
    with pytest.raises(ConfigError, match="a slurm profile needs a partition"):
        load_profile(None, ["executor=slurm"])
    with pytest.raises(ConfigError) as err:
        load_profile(None, ["executor=pbs", "cpus_per_task=0", "mem_gb=-1", "gpu=1"])
    message = str(err.value)
    for fragment in ("unknown key(s) ['gpu']", "'pbs' is not one of", "cpus_per_task", "mem_gb"):
        assert fragment in message
    assert load_profile(None, ["checkpoint_min=0"]).checkpoint_min == 0  # every epoch
    for bad in ("-1", "true", "'ten'", "inf"):
        with pytest.raises(ConfigError, match="checkpoint_min: must be a finite number >= 0"):
            load_profile(None, [f"checkpoint_min={bad}"])


def test_a_list_spec_holds_explicit_trials_and_reads_back_from_its_plan_form(
    tmp_path: Path,
) -> None:
    from mnistfc.trial.config import TrialConfig
    from mnistfc.trial.search import expand
    from mnistfc.trial.spec import list_spec

    stratified = TrialConfig(units=64, seed=2, valid_split="stratified")
    spec = list_spec("confirm", [TrialConfig(units=64, seed=1), stratified, stratified])
    # an entry never inherits the base's settings: the first trial keeps the default split
    assert [t.valid_split for t in spec.trials] == ["exercise", "stratified", "stratified"]
    assert dict(spec.axes) == {"seed": (1, 2), "valid_split": ("exercise", "stratified")}
    assert spec_from_dict(spec.to_dict()) == spec  # what sweep.json records reads back
    assert [t.config for t in expand(spec)] == [spec.trials[0], stratified]  # ids once
    path = tmp_path / "list.toml"
    path.write_text('kind = "list"\n[base]\nepochs = 2\n[[trials]]\nunits = 8\n'
                    '[[trials]]\nunits = 16\nepochs = 3\n')  # fmt: skip
    loaded = load_spec(path)
    assert [(t.units, t.epochs) for t in loaded.trials] == [(8, 2), (16, 3)]
    with pytest.raises(ConfigError) as err:
        spec_from_dict({"kind": "list", "trials": [{"units": -1}, 3, {"colour": 1}]})
    message = str(err.value)
    assert "trials[0]: invalid trial config: units" in message
    assert "trials[1]: must be a table of settings" in message
    assert "trials[2]: unknown trial config key(s) 'colour'" in message
    with pytest.raises(ConfigError, match="trials: must be a non-empty list"):
        spec_from_dict({"kind": "list", "trials": []})
