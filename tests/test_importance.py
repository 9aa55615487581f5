"""Channel importance criteria: exact selections on a hand-computable layer, Taylor's data, policy metadata, CLI."""
import json

import numpy as np
import pytest

import tiny_models
import tfmc
from tfmc import cli
from tfmc._keras import keras
from tfmc.errors import UsageError
from tfmc.graph import ChannelGraph
from tfmc.prune.importance import CRITERIA, L1, Random, Taylor, get_importance, resolve
from tfmc.prune.select import channel_importance

L = keras.layers

# the reader's kernel: one row per channel of group "p"
#   row   L1    L2     BN |gamma|
#   0     2.0   2.0    0.1
#   1     2.4   1.697  5.0
#   2     3.0   3.0    0.2
#   3     0.2   0.141  4.0
READER = np.array([[2.0, 0.0], [1.2, -1.2], [0.0, 3.0], [-0.1, 0.1]], np.float32)
GAMMA = np.array([0.1, -5.0, 0.2, 4.0], np.float32)


def _tiny(batchnorm=True):
    inp = keras.Input((3,))
    x = L.Dense(4, name="p")(inp)
    if batchnorm:
        x = L.BatchNormalization(name="bn")(x)
    out = L.Dense(2, name="r")(x)
    model = keras.Model(inp, out)
    model.get_layer("p").set_weights([np.arange(12, dtype=np.float32).reshape(3, 4) / 10 - 0.5,
                                      np.array([0.1, -0.2, 0.3, 0.0], np.float32)])
    model.get_layer("r").set_weights([READER, np.zeros(2, np.float32)])
    if batchnorm:
        model.get_layer("bn").set_weights([GAMMA, np.zeros(4, np.float32), np.zeros(4, np.float32),
                                           np.ones(4, np.float32)])
    return model


def _kept(model, criterion, data=None):
    _, details = tfmc.prune(model, {"p": 0.5}, round_to=1, importance=criterion, calib_data=data,
                            return_details=True)
    return np.flatnonzero(details["keep"]["p"]).tolist()


@pytest.mark.parametrize("criterion, kept", [("l1", [1, 2]), ("l2", [0, 2]), ("bn_scale", [1, 3])])
def test_each_weight_criterion_keeps_the_hand_computed_channels(criterion, kept):
    assert _kept(_tiny(), criterion) == kept


def test_the_default_is_l1_and_equals_the_consumer_l1_of_before():
    model = tiny_models.residual_cnn()
    analysis = ChannelGraph(model)
    scores = L1().scores(analysis)
    before = channel_importance(analysis)
    assert scores.keys() == before.keys()
    for name in scores:
        np.testing.assert_array_equal(scores[name], before[name])
    a = tfmc.prune(model, 0.5, return_details=True)[1]["keep"]
    b = tfmc.prune(model, 0.5, importance="l1", return_details=True)[1]["keep"]
    assert all(np.array_equal(a[g], b[g]) for g in a)


def test_bn_scale_falls_back_to_l1_without_a_batchnorm():
    assert _kept(_tiny(batchnorm=False), "bn_scale") == _kept(_tiny(batchnorm=False), "l1") == [1, 2]


def test_random_is_seeded():
    model = _tiny()
    expected = np.argsort(-np.random.default_rng([3, 0]).random(4), kind="stable")[:2]
    assert _kept(model, Random(seed=3)) == sorted(expected.tolist())
    assert _kept(model, {"name": "random", "seed": 3}) == _kept(model, Random(seed=3))


def test_taylor_scores_are_the_first_order_term_computed_by_hand():
    model = _tiny(batchnorm=False)
    x = np.random.default_rng(0).normal(size=(20, 3)).astype(np.float32)
    wp, bp = model.get_layer("p").get_weights()
    a = x @ wp + bp                              # what the reader reads
    logits = a @ READER
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    grad_logits = p - np.eye(2)[logits.argmax(1)]  # cross-entropy against the model's own classes, summed
    expected = np.abs((a * (grad_logits @ READER.T)).sum(0))
    scores = Taylor().scores(ChannelGraph(model), x)
    np.testing.assert_allclose(scores["p"], expected, rtol=1e-4, atol=1e-6)
    assert _kept(model, "taylor", x) == sorted(np.argsort(-expected, kind="stable")[:2].tolist())


def test_taylor_needs_calibration_images():
    with pytest.raises(UsageError, match="the taylor importance criterion needs calibration images"):
        tfmc.prune(_tiny(), 0.5, importance="taylor")


def test_unknown_criterion_lists_the_known_ones():
    with pytest.raises(UsageError, match=r"unknown importance criterion 'l3'; expected one of l1, l2, bn_scale"):
        get_importance("l3")
    with pytest.raises(UsageError, match="bad parameters"):
        get_importance({"name": "random", "sed": 1})
    assert sorted(CRITERIA) == ["bn_scale", "l1", "l2", "random", "taylor"]


def test_a_policy_is_applied_with_the_criterion_it_records_unless_overridden():
    model = _tiny()
    policy = tfmc.PrunePolicy({"p": 0.5}, round_to=1, metadata={"importance": {"name": "bn_scale"}})
    assert resolve(None, policy) == get_importance("bn_scale")
    _, details = tfmc.prune(model, policy, return_details=True)
    assert np.flatnonzero(details["keep"]["p"]).tolist() == [1, 3]
    assert details["importance"] == {"name": "bn_scale"}
    _, details = tfmc.prune(model, policy, importance="l1", return_details=True)  # explicit wins
    assert np.flatnonzero(details["keep"]["p"]).tolist() == [1, 2]


def test_cli_records_the_criterion_and_applies_it_again(tmp_path):
    model = tiny_models.chain_cnn(input_shape=(32, 32, 3))
    path = tmp_path / "chain.keras"
    model.save(path)
    assert cli.main(["prune", str(path), "--ratios", "0.5", "--importance", "l2", "--out", str(tmp_path / "a")]) == 0
    policy_file = tmp_path / "a" / "policy.json"
    assert json.loads(policy_file.read_text())["metadata"]["importance"] == {"name": "l2"}
    assert cli.main(["prune", str(path), "--ratios", str(policy_file), "--out", str(tmp_path / "b.keras")]) == 0
    again = keras.models.load_model(tmp_path / "b.keras")
    reference = tfmc.prune(model, 0.5, importance="l2")
    for layer in reference.layers:
        for w, v in zip(layer.get_weights(), again.get_layer(layer.name).get_weights()):
            np.testing.assert_array_equal(w, v)
    l1 = tfmc.prune(model, 0.5)
    assert any(not np.array_equal(w, v) for w, v in zip(l1.get_weights(), reference.get_weights()))
