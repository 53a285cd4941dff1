from __future__ import annotations

import pytest

from mnistfc.errors import ConfigError
from mnistfc.trial.config import TrialConfig


def test_defaults_are_the_exercise_model() -> None:
    cfg = TrialConfig()
    assert (cfg.units, cfg.dropout, cfg.activation, cfg.learning_rate) == (128, 0.3, "relu", 1e-3)
    assert (cfg.batch_size, cfg.epochs, cfg.valid_size, cfg.dataset) == (1000, 10, 2000, "mnist")


def test_trial_id_is_a_stable_content_hash() -> None:
    # Pinned: a change here renames every shard on disk, which must be deliberate.
    assert TrialConfig().trial_id == "788d96fe7049"
    assert TrialConfig(units=64).trial_id != TrialConfig().trial_id
    assert TrialConfig(dropout=0).trial_id == TrialConfig(dropout=0.0).trial_id
    assert isinstance(TrialConfig(dropout=0).dropout, float)


def test_round_trip_through_dict() -> None:
    cfg = TrialConfig(units=32, activation="tanh", learning_rate=0.01, seed=7)
    assert TrialConfig.from_dict(cfg.to_dict()) == cfg


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as err:
        TrialConfig(
            units=0, dropout=1.0, activation="relux", learning_rate=-1.0, batch_size=0, epochs=0
        )
    message = str(err.value)
    assert "6 problems" in message
    for fragment in (
        "units",
        "dropout: must be in [0, 1)",
        "'relux'",
        "learning_rate",
        "batch_size",
        "epochs",
    ):
        assert fragment in message


@pytest.mark.parametrize(
    ("field", "value"),
    [("units", "128"), ("units", 1.5), ("dropout", "0.1"), ("activation", 3), ("epochs", True)],
)
def test_wrong_types_are_refused(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=f"{field}: expected"):
        TrialConfig.from_dict({field: value})


def test_unknown_keys_are_refused_with_the_valid_ones() -> None:
    with pytest.raises(
        ConfigError, match=r"unknown trial config key\(s\) 'unit'.*valid keys: dataset, units"
    ):
        TrialConfig.from_dict({"unit": 5})


@pytest.mark.parametrize("lr", [0.0, float("nan"), float("inf")])
def test_learning_rate_must_be_finite_and_positive(lr: float) -> None:
    with pytest.raises(ConfigError, match="learning_rate"):
        TrialConfig(learning_rate=lr)
