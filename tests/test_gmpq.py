"""GMPQ: mixed-precision layers, Grad-CAM attribution, double backprop, budgeted search."""
import io as std_io

import numpy as np
import pytest

import tfmc  # noqa: F401
from tfmc import gmpq
from tfmc._keras import keras, tf
from tfmc.bops import count_bops
from tfmc.gmpq.layers import MixedConv2D, quantize_weights
from tfmc.gmpq.search import DEFAULT_SHIFT, Budget, build_supernet, fill_policy, repair_policy
from tfmc.policy import BitPolicy
from tiny_models import chain_cnn, images

L = keras.layers


def _tiny_cam_model():
    keras.utils.set_random_seed(3)
    inp = keras.Input((6, 6, 2))
    x = L.Conv2D(3, 3, padding="same", name="conv")(inp)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inp, L.Dense(4, name="logits")(x), name="tiny")


def test_attribution_map_equals_a_hand_computation():
    model = _tiny_cam_model()
    x = images(5, (6, 6, 2))
    maps, scores = gmpq.attribution_map(gmpq.feature_model(model), x)
    features = keras.Model(model.inputs, model.get_layer("conv").output)(x).numpy()
    kernel, bias = model.get_layer("logits").get_weights()
    logits = features.mean(axis=(1, 2)) @ kernel + bias
    predicted = logits.argmax(axis=1)
    # y_c = sum_k W_kc mean_hw A_hwk + b_c, so sum_hw dy_c/dA_hwk = W_kc
    expected = np.maximum(np.einsum("bhwk,kb->bhw", features, kernel[:, predicted]), 0)
    np.testing.assert_allclose(scores.numpy(), logits, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(maps.numpy(), expected, rtol=1e-4, atol=1e-6)


def test_feature_layer_follows_batchnorm_and_activation_of_the_last_conv():
    assert gmpq.feature_layer(chain_cnn()) == "conv3"
    inp = keras.Input((8, 8, 3))
    x = L.Conv2D(4, 3, name="c")(inp)
    x = L.BatchNormalization(name="bn")(x)
    x = L.ReLU(name="act")(x)
    x = L.MaxPooling2D(name="pool")(x)
    model = keras.Model(inp, L.Dense(2)(L.Flatten()(x)))
    assert gmpq.feature_layer(model) == "act"


def test_a_model_without_a_conv_layer_is_an_error():
    model = keras.Sequential([keras.Input((8,)), L.Dense(4), L.Dense(2)], name="mlp")
    with pytest.raises(ValueError, match="GMPQ attribution needs a convolutional layer .* model 'mlp' has none"):
        gmpq.feature_layer(model)


@pytest.mark.parametrize("bits,expected", [(2, 6.0), (4, 1.5), (6, 24 / 36)])
def test_capacity_exponent_matches_the_paper_examples(bits, expected):
    b = tf.constant(float(bits))
    assert float(gmpq.capacity_exponent([(b, b), (b, b)], rho=24.0)) == pytest.approx(expected)


def test_attribution_loss_is_zero_for_equal_maps_at_p_1_and_a_hand_value_otherwise():
    teacher = tf.constant([[[1.0, 0.0], [0.0, 1.0]]])
    assert float(gmpq.attribution_loss(teacher, teacher, 1.0)) == pytest.approx(0.0)
    student = tf.constant([[[1.0, 0.0], [0.0, 0.0]]])
    # n(teacher^2) = (0.707, 0, 0, 0.707); n(student) = (1, 0, 0, 0)
    expected = ((2 ** -0.5 - 1) ** 2 + 0.5) / 4
    assert float(gmpq.attribution_loss(teacher, student, 2.0)) == pytest.approx(expected, rel=1e-5)


@pytest.fixture(scope="module")
def tiny_budget_and_supernet():
    model = chain_cnn()
    budget = gmpq.space_budget(model, "gmpq")
    return model, budget, build_supernet(model, budget, images(8))


def test_attribution_loss_has_a_gradient_for_the_bit_logits(tiny_budget_and_supernet):
    model, _, net = tiny_budget_and_supernet
    x = images(4)
    teacher, _ = gmpq.attribution_map(gmpq.feature_model(model), x)
    student = gmpq.feature_model(net, "conv3")
    logits = [net.get_layer(n).alpha_weight for n in ("conv2", "conv3")]
    with tf.GradientTape() as tape:
        maps, _ = gmpq.attribution_map(student, x)
        loss = gmpq.attribution_loss(teacher, maps, 1.5)
    grads = tape.gradient(loss, logits)
    for g in grads:
        assert g is not None and float(tf.reduce_max(tf.abs(g))) > 0


def test_supernet_copies_weights_and_leaves_the_model_alone(tiny_budget_and_supernet):
    model, _, net = tiny_budget_and_supernet
    assert type(net.get_layer("conv2")) is MixedConv2D and type(model.get_layer("conv2")) is L.Conv2D
    np.testing.assert_array_equal(net.get_layer("conv2").kernel.numpy(), model.get_layer("conv2").kernel.numpy())


def test_mixed_conv_with_one_sure_candidate_is_that_quantized_conv():
    keras.utils.set_random_seed(0)
    layer = MixedConv2D(4, 3, weight_bits=(2, 3), activation_bits=(4,), activation_clip=1.0)
    x = tf.constant(images(2, (5, 5, 3)))
    layer(x)
    layer.alpha_weight.assign([-50.0, 50.0])
    levels = 15.0
    xq = np.round(np.clip(x.numpy(), 0, 1) * levels) / levels
    expected = tf.nn.conv2d(xq, quantize_weights(layer.kernel, 3, per_axis=True), 1, "VALID") + layer.bias
    np.testing.assert_allclose(layer(x).numpy(), expected.numpy(), rtol=1e-5, atol=1e-5)
    assert len(np.unique(quantize_weights(layer.kernel, 3, True).numpy()[..., 0])) <= 7


def test_target_below_the_smallest_candidates_is_an_error(tiny_budget_and_supernet):
    _, budget, _ = tiny_budget_and_supernet
    # every layer at 2 x 2 bits: (110,592 + 221,184 + 110,592 + 640 + 200) MACs x 4 = 1,772,832
    with pytest.raises(ValueError, match=r"target of 1,418,265 BOPs \(0\.050 of 8-bit\) is below the minimum 1,772,832 BOPs \(0\.062 of 8-bit\) that the smallest candidates of space 'gmpq' allow"):
        gmpq.resolve_target(0.05, budget)


def test_repair_lowers_the_least_sure_layer_until_the_budget_fits():
    budget = Budget("gmpq", {"a": 100, "b": 100}, {"a": ((2, 4), (4,)), "b": ((2, 4), (4,))}, 6400, 1600, 3200)
    probs = {"a": [np.array([0.1, 0.9]), np.array([1.0])], "b": [np.array([0.4, 0.6]), np.array([1.0])]}
    policy, steps = repair_policy(BitPolicy({"a": (4, 4), "b": (4, 4)}), probs, budget, target=2400)
    assert steps == [("b", "weight", 4, 2)]
    assert policy == BitPolicy({"a": (4, 4), "b": (2, 4)})
    policy, steps = repair_policy(BitPolicy({"a": (4, 4), "b": (4, 4)}), probs, budget, target=1600)
    assert [s[0] for s in steps] == ["b", "a"]


def test_fill_raises_the_least_sure_layer_while_the_budget_allows():
    budget = Budget("gmpq", {"a": 100, "b": 50}, {"a": ((2, 4), (4,)), "b": ((2, 4), (4,))}, 6400, 1200, 2400)
    probs = {"a": [np.array([0.55, 0.45]), np.array([1.0])], "b": [np.array([0.9, 0.1]), np.array([1.0])]}
    start = BitPolicy({"a": (2, 4), "b": (2, 4)})  # 1,200 BOPs; raising a costs 800, b 400
    policy, steps = fill_policy(start, probs, budget, target=2100)
    assert steps == [("a", "weight", 2, 4)] and policy == BitPolicy({"a": (4, 4), "b": (2, 4)})
    policy, steps = fill_policy(start, probs, budget, target=1900)
    assert steps == [("b", "weight", 2, 4)]


@pytest.mark.parametrize("space,target", [("gmpq", 0.12), ("litert", 1.0)])
def test_search_on_a_tiny_model_returns_a_policy_within_budget(space, target):
    model = chain_cnn()
    before = [w.copy() for w in model.get_weights()]
    rng = np.random.default_rng(0)
    x, y = images(48), rng.integers(0, 10, 48)
    log = std_io.StringIO()
    result = gmpq.search(model, (x, y), target_bops=target, space=space, search_fraction=0.5, epochs=2,
                         batch_size=8, log=log)
    assert result.samples == 24
    assert result.achieved_bops == count_bops(model, result.policy) <= result.target_bops
    assert result.target_bops == int(target * result.int8_bops)
    assert sorted(result.policy) == ["conv1", "conv2", "conv3", "fc1", "logits"]
    assert len(result.history) == 2 and log.getvalue().count("gmpq epoch") == 2
    assert result.policy.metadata["achieved_bops"] == result.achieved_bops
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("train_mode", [True, False])
def test_train_mode_decides_whether_the_supernet_batchnorm_follows_the_batches(train_mode):
    model = chain_cnn()
    rng = np.random.default_rng(0)
    result = gmpq.search(model, (images(16), rng.integers(0, 10, 16)), target_bops=0.4, space="gmpq",
                         search_fraction=1.0, epochs=1, batch_size=8, train_mode=train_mode, log=std_io.StringIO())
    moving = lambda net: [w for w in net.get_layer("bn1").weights if "moving" in w.name]  # noqa: E731
    moved = [not np.array_equal(a.numpy(), b.numpy()) for a, b in zip(moving(model), moving(result.supernet))]
    # training mode normalises with batch statistics and updates the moving mean and variance;
    # inference mode keeps the float model's
    assert moved == [train_mode, train_mode]
    assert result.policy.metadata["train_mode"] is train_mode


@pytest.mark.parametrize("shift", [None, 0, 2])
def test_random_shift_defaults_to_4_pixels_for_images_and_is_recorded(shift):
    model = chain_cnn()
    rng = np.random.default_rng(0)
    result = gmpq.search(model, (images(16), rng.integers(0, 10, 16)), target_bops=0.4, space="gmpq",
                         search_fraction=1.0, epochs=1, batch_size=8, random_shift=shift, log=std_io.StringIO())
    assert result.policy.metadata["random_shift"] == (DEFAULT_SHIFT if shift is None else shift)
    assert result.achieved_bops <= result.target_bops


def test_the_default_shift_stays_below_half_of_small_images():
    from tfmc.gmpq.search import _check_shift

    assert [_check_shift(None, np.zeros((2, n, n + 3, 1))) for n in (16, 10, 9, 6, 3)] == [4, 4, 4, 2, 1]
    assert _check_shift(None, np.zeros((2, 20))) == 0


@pytest.mark.parametrize("shift,message", [
    (-1, r"random_shift must be a whole number of pixels >= 0, got -1"),
    (1.5, r"random_shift must be a whole number of pixels >= 0, got 1.5"),
    (8, r"random_shift must be below half the image size; 8 pixels for 16x16 images"),
])
def test_bad_random_shift_is_an_error(shift, message):
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=message):
        gmpq.search(chain_cnn(), (images(16), rng.integers(0, 10, 16)), target_bops=0.4, space="gmpq", random_shift=shift)


def test_fixed_layers_keep_their_bits_and_count_in_the_budget():
    model = chain_cnn()
    assert gmpq.end_layers(model, "gmpq") == ["conv1", "logits"]
    fixed = {"conv1": (8, 8), "logits": (8, 8)}
    budget = gmpq.space_budget(model, "gmpq", fixed)
    assert budget.candidates["conv1"] == ((8,), (8,)) and budget.candidates["conv2"] == ((2, 3, 4, 6), (2, 3, 4, 6))
    # conv1 (110,592 MACs) and logits (200) at 8 x 8, the other three at 2 x 2
    assert budget.min_bops == (110_592 + 200) * 64 + (221_184 + 110_592 + 640) * 4
    rng = np.random.default_rng(0)
    result = gmpq.search(model, (images(16), rng.integers(0, 10, 16)), target_bops=0.4, space="gmpq",
                         fixed_bits=fixed, search_fraction=1.0, epochs=1, batch_size=8, log=std_io.StringIO())
    held = [(result.policy[n].weight_bits, result.policy[n].activation_bits) for n in ("conv1", "logits")]
    assert held == [(8, 8), (8, 8)]
    assert result.achieved_bops == count_bops(model, result.policy) <= result.target_bops
    assert result.policy.metadata["fixed_bits"] == {"conv1": [8, 8], "logits": [8, 8]}


def test_fixed_bits_for_a_layer_the_space_does_not_search_is_an_error():
    with pytest.raises(ValueError, match=r"fixed_bits names layers that space 'gmpq' does not search in model 'chain': \['pool'\]"):
        gmpq.space_budget(chain_cnn(), "gmpq", {"pool": (8, 8)})
