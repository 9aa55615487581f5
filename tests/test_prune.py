"""Structural pruning: smaller models that compute what the masked original computes."""
import numpy as np
import pytest

import tiny_models
import tfmc
from tfmc._keras import keras
from tfmc.graph import ChannelGraph
from tfmc.policy import PrunePolicy
from tfmc.prune import prune
from tfmc.prune.masking import masked_copy

L = keras.layers


def _weights_snapshot(model):
    return [w.copy() for w in model.get_weights()]


@pytest.mark.parametrize("name", sorted(tiny_models.ALL))
def test_keep_everything_reproduces_the_model(name):
    model = tiny_models.ALL[name]()
    x = tiny_models.images()
    same = prune(model, 1.0, round_to=1)
    np.testing.assert_allclose(same(x).numpy(), model(x).numpy(), atol=1e-5)
    assert [w.shape for w in same.get_weights()] == [w.shape for w in model.get_weights()]


@pytest.mark.parametrize("name", sorted(tiny_models.ALL))
def test_pruned_model_equals_original_with_channels_zeroed(name):
    model = tiny_models.ALL[name]()
    before = _weights_snapshot(model)
    analysis = ChannelGraph(model)
    rng = np.random.default_rng(3)
    ratios = {g.name: float(rng.choice([0.3, 0.5, 0.75])) for g in analysis.groups if g.prunable}
    pruned, details = prune(model, ratios, round_to=1, return_details=True)

    x = tiny_models.images()
    reference = masked_copy(model, analysis, details["keep"])
    np.testing.assert_allclose(pruned(x).numpy(), reference(x).numpy(), atol=1e-4)
    # the masking matters, so the comparison above is not trivially true
    assert np.abs(reference(x).numpy() - model(x).numpy()).max() > 1e-3
    assert tfmc.count_params(pruned) < tfmc.count_params(model)
    assert tfmc.count_macs(pruned) < tfmc.count_macs(model)
    # the user's model is untouched
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    # every prunable group really lost channels in the built layers
    for group, count in details["kept_channels"].items():
        assert int(details["keep"][group].sum()) == count < analysis.group(group).channels


def test_kept_channel_counts_reach_the_layers():
    model = tiny_models.residual_cnn()
    pruned = prune(model, {"stem": 0.5, "block_a": 0.25}, round_to=4)
    assert pruned.get_layer("stem").filters == 8
    assert pruned.get_layer("block_b").filters == 8  # coupled through the Add
    assert pruned.get_layer("block_bn").get_weights()[0].shape == (8,)
    assert pruned.get_layer("block_a").filters == 4
    assert pruned.get_layer("block_a").get_weights()[0].shape == (3, 3, 8, 4)
    assert pruned.get_layer("proj").get_weights()[0].shape == (1, 1, 8, 24)


def test_channels_with_the_largest_consumer_l1_are_kept():
    model = tiny_models.chain_cnn()
    kernel = model.get_layer("conv2").get_weights()
    strong = [1, 5, 9, 13, 14, 15, 0, 2]
    kernel[0][:, :, :, :] *= 0.01
    kernel[0][:, :, strong, :] *= 100.0
    model.get_layer("conv2").set_weights(kernel)
    _, details = prune(model, {"conv1": 0.5}, round_to=8, return_details=True)
    assert sorted(np.flatnonzero(details["keep"]["conv1"]).tolist()) == sorted(strong)


def test_policy_object_is_accepted():
    model = tiny_models.chain_cnn()
    pruned = prune(model, PrunePolicy({"conv2": 0.5}, round_to=4))
    assert pruned.get_layer("conv2").filters == 12


def test_reconstruction_lowers_the_pruned_layer_error():
    from tfmc.data import digits

    data = digits(size=16)
    model = tiny_models.chain_cnn()
    ratios = {"conv1": 0.5, "conv2": 1.0}
    plain = prune(model, ratios, round_to=1)
    refit, details = prune(model, ratios, round_to=1, calib_data=data.x_train[:256], return_details=True)
    assert set(details["reconstruction_error"]) == {"conv2"}

    held_out = data.x_test[:128]
    def conv2_output(m):
        return keras.Model(m.inputs, m.get_layer("conv2").output).predict(held_out, verbose=0)

    target = conv2_output(model)
    error_plain = np.mean((conv2_output(plain) - target) ** 2)
    error_refit = np.mean((conv2_output(refit) - target) ** 2)
    assert error_refit < 0.7 * error_plain


def test_reconstruction_of_a_dense_layer_after_pooling():
    model = tiny_models.chain_cnn()
    x = tiny_models.images(64, seed=4)
    plain = prune(model, {"conv3": 0.5}, round_to=1)
    refit = prune(model, {"conv3": 0.5}, round_to=1, calib_data=x)
    probe = tiny_models.images(32, seed=5)
    def fc1_linear(m):
        gap = keras.Model(m.inputs, m.get_layer("gap").output).predict(probe, verbose=0)
        kernel, bias = m.get_layer("fc1").get_weights()
        return gap @ kernel + bias
    target = fc1_linear(model)
    assert np.mean((fc1_linear(refit) - target) ** 2) < np.mean((fc1_linear(plain) - target) ** 2)


@pytest.mark.parametrize(
    "build, size",
    [(keras.applications.MobileNet, 32), (keras.applications.MobileNetV2, 32), (keras.applications.ResNet50, 32)],
)
def test_keras_applications_prune_save_and_load(build, size, tmp_path):
    keras.utils.set_random_seed(0)
    model = build(weights=None, input_shape=(size, size, 3), classes=10)
    pruned = prune(model, 0.5)
    assert tfmc.count_macs(pruned) < 0.6 * tfmc.count_macs(model)
    x = tiny_models.images(2, (size, size, 3))
    out = pruned(x, training=False).numpy()
    assert out.shape == (2, 10) and np.isfinite(out).all()
    path = tmp_path / "pruned.keras"
    pruned.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(loaded(x, training=False).numpy(), out)


@pytest.mark.parametrize("bad", [0.0, 1.5, -0.2])
def test_ratio_outside_range_fails(bad):
    with pytest.raises(ValueError, match=r"must be in \(0, 1\]"):
        prune(tiny_models.chain_cnn(), bad)
    with pytest.raises(ValueError, match=r"keep ratio for 'conv1' must be in \(0, 1\]"):
        prune(tiny_models.chain_cnn(), {"conv1": bad})


def test_unknown_group_lists_valid_ones():
    with pytest.raises(ValueError, match="unknown channel group 'conv9'; prunable groups are: conv1, conv2, conv3, fc1"):
        prune(tiny_models.chain_cnn(), {"conv9": 0.5})


def test_frozen_group_refuses_to_prune():
    with pytest.raises(ValueError, match="channel group 'logits' cannot be pruned: reaches model output of layer 'logits'"):
        prune(tiny_models.chain_cnn(), {"logits": 0.5})


def test_subclassed_model_fails_clearly():
    class Net(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(TypeError, match="tfmc needs a functional or Sequential model"):
        prune(Net(), 0.5)


def test_model_without_prunable_group_says_why():
    inp = keras.Input((4,))
    model = keras.Model(inp, L.Dense(2, name="only")(inp))
    with pytest.raises(ValueError, match="no prunable channel group: .*only: reaches model output of layer 'only'"):
        prune(model, 0.5)


def _nested_and_shared_model():
    keras.utils.set_random_seed(7)
    inner_in = keras.Input((8, 8, 16))
    inner = keras.Model(inner_in, L.Conv2D(8, 1, name="inner_conv")(inner_in), name="inner")
    inp = keras.Input((8, 8, 3))
    x = L.Conv2D(16, 3, padding="same", activation="relu", name="free")(inp)
    x = L.Conv2D(16, 3, padding="same", activation="relu", name="before_shared")(x)
    shared = L.Conv2D(16, 1, name="shared")
    y = shared(shared(x))
    z = L.Conv2D(16, 3, padding="same", name="into_nested")(y)
    z = inner(z)
    out = L.Dense(4, name="out")(L.GlobalAveragePooling2D(name="gap")(z))
    return keras.Model(inp, out)


@pytest.mark.parametrize("kind", ["sequential", "nested_and_shared"])
def test_sequential_nested_and_shared_models_prune(kind):
    if kind == "sequential":
        keras.utils.set_random_seed(5)
        model = keras.Sequential([
            keras.Input((16, 16, 3)),
            L.Conv2D(16, 3, activation="relu", name="c1"),
            L.BatchNormalization(name="bn"),
            L.Conv2D(16, 3, activation="relu", name="c2"),
            L.GlobalAveragePooling2D(name="g"),
            L.Dense(3, name="d"),
        ])
        ratios, expected_prunable = 0.5, ["c1", "c2"]
    else:
        model = _nested_and_shared_model()
        ratios, expected_prunable = 0.5, ["free"]
    analysis = ChannelGraph(model)
    assert [g.name for g in analysis.groups if g.prunable] == expected_prunable
    pruned, details = prune(model, ratios, round_to=1, return_details=True)
    assert type(pruned) is type(model)
    x = tiny_models.images(4, tuple(model.inputs[0].shape[1:]))
    np.testing.assert_allclose(pruned(x).numpy(), masked_copy(model, analysis, details["keep"])(x).numpy(), atol=1e-4)
    assert tfmc.count_params(pruned) < tfmc.count_params(model)


def test_keep_one_keeps_groups_whose_size_is_off_the_rounding_grid():
    # 10 channels rounded to the nearest multiple of 8 would be 8: keep 1.0 must still keep all 10
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(10, 3, name="ten")(inp)
    x = keras.layers.Conv2D(4, 1, name="reader")(x)
    model = keras.Model(inp, keras.layers.GlobalAveragePooling2D()(x))
    same = prune(model, 1.0)
    assert same.get_layer("ten").filters == 10
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype(np.float32)
    np.testing.assert_array_equal(same(x).numpy(), model(x).numpy())
