from __future__ import annotations

import pytest

from mnistfc.engine.model import build_model
from mnistfc.trial.config import TrialConfig


def test_architecture_matches_the_exercise() -> None:
    model = build_model(TrialConfig(units=128, dropout=0.3, activation="tanh", learning_rate=0.01))
    hidden, dropout, output = model.layers
    assert model.input_shape == (None, 784)
    assert (hidden.units, hidden.activation.__name__) == (128, "tanh")
    assert dropout.rate == 0.3
    assert (output.units, output.activation.__name__) == (10, "softmax")
    assert model.count_params() == 784 * 128 + 128 + 128 * 10 + 10
    assert type(model.optimizer).__name__ == "Adam"
    assert float(model.optimizer.learning_rate.numpy()) == pytest.approx(0.01)
    assert model.loss == "categorical_crossentropy"
