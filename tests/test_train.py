"""Training under tf.distribute strategies."""
import numpy as np
import pytest

import tiny_models
from tfmc import train
from tfmc._keras import keras, tf


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


def test_accuracy_is_the_share_of_top_1_hits():
    # an identity layer: each row's largest entry is its prediction
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(3, kernel_initializer="identity", use_bias=False)(inputs))
    x = np.array([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.1, 0.1, 0.8], [0.6, 0.3, 0.1]], np.float32)
    assert train.accuracy(model, x, np.array([0, 1, 2, 1])) == 0.75
    assert train.accuracy(model, x, np.array([0, 1, 2, 0]), batch_size=3) == 1.0


def test_unknown_strategy_is_named():
    with pytest.raises(ValueError, match="unknown strategy 'tpu'; expected one of default, mirrored, multiworker"):
        train.make_strategy("tpu")


def test_progress_shows_one_bar_over_every_step_instead_of_epoch_lines(capsys):
    x = tiny_models.images(64, seed=2)
    train.fit(tiny_models.chain_cnn(), x, np.arange(64) % 10, epochs=2, batch_size=16, progress="training",
              validation=(x[:16], np.arange(16) % 10), verbose=2)
    out, err = capsys.readouterr()
    assert out == ""  # Keras' per-epoch lines (verbose=2) are replaced by the bar
    final = err.replace("\r", "\n").strip().splitlines()[-1]
    assert final.startswith("training: 100%") and "| 8/8 [" in final
    assert "loss=" in final and "acc=" in final and "val_acc=" in final
