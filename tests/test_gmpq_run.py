"""The GMPQ search's run folder: a search stopped mid-way resumes to exactly the uninterrupted one."""
import json
import os

import numpy as np
import pytest

from tfmc import gmpq
from tfmc._keras import keras
from tfmc.errors import OutputError
from tiny_models import images

L = keras.layers


def dropout_cnn(seed=0):
    """A small CNN with dropout (its masks are part of what a resume must reproduce)."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((12, 12, 3))
    x = L.Conv2D(8, 3, padding="same", name="conv1")(inp)
    x = L.BatchNormalization(name="bn1")(x)
    x = L.ReLU(name="relu1")(x)
    x = L.Conv2D(12, 3, strides=2, padding="same", activation="relu", name="conv2")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    x = L.Dropout(0.3, name="dropout")(x)
    return keras.Model(inp, L.Dense(10, name="logits")(x), name="dropout_cnn")


SEARCH = dict(target_bops=0.3, space="gmpq", search_fraction=1.0, epochs=3, batch_size=8, random_shift=2, seed=3,
              verbose=False)


@pytest.fixture(scope="module")
def setting():
    model = dropout_cnn()
    x, y = images(24, (12, 12, 3)), np.random.default_rng(0).integers(0, 10, 24)
    return model, (x, y), gmpq.search(model, (x, y), **SEARCH)


def _without_time(history):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


def test_a_stopped_search_resumes_to_the_same_policy_and_history(setting, tmp_path):
    model, data, straight = setting
    out = tmp_path / "run"
    first = gmpq.search(model, data, **SEARCH, out_dir=out, stop_after=1)
    assert first.epochs_done == 1 and not first.complete
    assert json.loads((out / "checkpoint.json").read_text())["epochs_done"] == 1
    assert not (out / "policy.json").exists()
    resumed = gmpq.search(model, data, **SEARCH, out_dir=out, resume=True)
    assert resumed.complete and resumed.epochs_done == 3
    assert {n: b for n, b in resumed.policy.items()} == {n: b for n, b in straight.policy.items()}
    timeless = lambda p: {k: v for k, v in p.metadata.items() if k != "search_seconds"}  # noqa: E731
    assert timeless(resumed.policy) == timeless(straight.policy)
    assert _without_time(resumed.history) == _without_time(straight.history)
    for a, b in zip(resumed.supernet.get_weights(), straight.supernet.get_weights()):
        np.testing.assert_array_equal(a, b)
    journal = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert _without_time(journal) == _without_time(straight.history)
    assert (out / "history.csv").read_text().startswith("epoch,ce,attr,comp,p,cd,expected_bops,argmax_bops,seconds\n")
    assert {"policy.json", "bits.png", "losses.png", "cost.png", "tensorboard", "ckpt-000003"} <= set(os.listdir(out))
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(out / "tensorboard"))


def test_a_folder_of_another_search_is_refused_naming_what_differs(setting, tmp_path):
    model, data, _ = setting
    out = tmp_path / "run"
    gmpq.search(model, data, **SEARCH, out_dir=out, stop_after=1)
    with pytest.raises(OutputError, match=r"already holds a GMPQ search \(1 epochs done\).*resume it"):
        gmpq.search(model, data, **SEARCH, out_dir=out)
    changed = dict(SEARCH, attribution_weight=0.0, seed=4)
    with pytest.raises(OutputError, match=r"holds a different GMPQ search \(it differs in: attribution_weight, "
                                          r"seed\); refusing to resume it"):
        gmpq.search(model, data, **changed, out_dir=out, resume=True)
    x, y = data
    with pytest.raises(OutputError, match=r"it differs in: search_data\)"):
        gmpq.search(model, (x[::-1], y[::-1]), **SEARCH, out_dir=out, resume=True)


def test_a_search_with_dropout_checkpoints_its_generator_under_a_mirrored_strategy(mirrored, tmp_path):
    model = dropout_cnn()
    x, y = images(32, (12, 12, 3)), np.random.default_rng(0).integers(0, 10, 32)
    result = gmpq.search(model, (x, y), **dict(SEARCH, epochs=1), strategy=mirrored, out_dir=tmp_path / "run")
    assert result.complete
    with np.load(tmp_path / "run" / "ckpt-000001" / "variables.npz") as stored:
        last = stored[f"arr_{len(stored.files) - 1}"]
        first = stored["arr_0"]
    assert last.dtype == np.int64 and last.shape == (3,)  # the dropout generator's Philox state, saved last
    np.testing.assert_array_equal(first, result.supernet.weights[0].numpy())
