"""Training under tf.distribute strategies."""
import numpy as np
import pytest

import tiny_models
from tfmc import train
from tfmc._keras import tf


def test_fine_tune_step_under_mirrored_strategy(mirrored):
    strategy = mirrored
    model = tiny_models.chain_cnn()
    x = tiny_models.images(64, seed=2)
    y = np.arange(64) % 10
    before = [w.copy() for w in model.get_weights()]
    trained, history = train.fit(model, x, y, epochs=1, batch_size=16, strategy=strategy)
    assert trained(x[:4]).shape == model(x[:4]).shape == (4, 10)
    assert len(history.history["loss"]) == 1 and np.isfinite(history.history["loss"][0])
    assert any(not np.array_equal(a, b) for a, b in zip(before, trained.get_weights()))
    for a, b in zip(before, model.get_weights()):  # the caller's model is untouched
        np.testing.assert_array_equal(a, b)


def test_training_lowers_the_loss():
    model = tiny_models.chain_cnn()
    x = tiny_models.images(128, seed=3)
    y = (x.mean(axis=(1, 2, 3)) > np.median(x.mean(axis=(1, 2, 3)))).astype(int)
    trained, history = train.fit(model, x, y, epochs=8, batch_size=32, learning_rate=3e-3)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert 0.0 <= train.accuracy(trained, x, y) <= 1.0


def test_unknown_strategy_is_named():
    with pytest.raises(ValueError, match="unknown strategy 'tpu'; expected one of default, mirrored, multiworker"):
        train.make_strategy("tpu")
