"""tfmc.quantize: per-layer bit widths through tfmot QAT."""
import numpy as np
import pytest

import tfmc  # noqa: F401
from tfmc import io
from tfmc._keras import keras, tf
from tfmc.policy import BitPolicy
from tfmc.quant import qat_custom_objects, quantize, quantized_kernel
from tiny_models import chain_cnn, depthwise_cnn, images

L = keras.layers
# per-channel for Conv2D, per-tensor for Dense and DepthwiseConv2D
CHAIN_BITS = {"conv1": (8, 8), "conv2": (2, 4), "conv3": (3, 8), "fc1": (4, 2), "logits": (6, 8)}
DEPTHWISE_BITS = {"dw": (3, 8), "pw": (2, 6)}


def _trained_qat(model, bits):
    qat = quantize(model, BitPolicy(bits))
    qat.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = images(32, model.input_shape[1:])
    y = np.random.default_rng(0).integers(0, 10, 32)
    qat.fit(x, y, epochs=2, batch_size=16, verbose=0)
    return qat


@pytest.fixture(scope="module")
def chain():
    model = chain_cnn()
    return model, _trained_qat(model, CHAIN_BITS)


@pytest.fixture(scope="module")
def depthwise():
    model = depthwise_cnn()
    return model, _trained_qat(model, DEPTHWISE_BITS)


def _levels(kernel, per_channel):
    if per_channel:
        return [len(np.unique(kernel[..., c])) for c in range(kernel.shape[-1])]
    return [len(np.unique(kernel))]


@pytest.mark.parametrize("name", sorted(CHAIN_BITS))
def test_trained_kernels_hold_at_most_2_to_the_bits_levels(chain, name):
    model, qat = chain
    bits = CHAIN_BITS[name][0]
    wrapper = qat.get_layer("quant_" + name)
    per_channel = type(model.get_layer(name)) is L.Conv2D
    levels = _levels(quantized_kernel(wrapper), per_channel)
    assert max(levels) <= 2 ** bits
    float_levels = _levels(model.get_layer(name).get_weights()[0], per_channel)
    assert min(float_levels) > 2 ** bits or bits == 8  # the float kernel had more


@pytest.mark.parametrize("name", sorted(DEPTHWISE_BITS))
def test_depthwise_and_pointwise_kernels_hold_at_most_2_to_the_bits_levels(depthwise, name):
    model, qat = depthwise
    per_channel = type(model.get_layer(name)) is L.Conv2D  # the depthwise kernel is per tensor
    levels = _levels(quantized_kernel(qat.get_layer("quant_" + name)), per_channel)
    assert max(levels) <= 2 ** DEPTHWISE_BITS[name][0]
    assert len(np.unique(model.get_layer(name).get_weights()[0])) > 2 ** DEPTHWISE_BITS[name][0]


def test_layers_the_policy_leaves_out_stay_float(depthwise):
    model, qat = depthwise
    wrapped = sorted(layer.name for layer in qat.layers if layer.name.startswith("quant_"))
    assert wrapped == ["quant_dw", "quant_pw"]
    assert type(qat.get_layer("sep")) is L.SeparableConv2D


def test_training_changes_the_weights_and_not_the_float_model(chain):
    model, qat = chain
    before = chain_cnn().get_layer("conv2").get_weights()[0]
    np.testing.assert_array_equal(model.get_layer("conv2").get_weights()[0], before)
    assert not np.allclose(qat.get_layer("quant_conv2").weights[0].numpy(), before)


def test_input_activations_are_quantized_to_their_bits():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,)), L.Dense(3, name="fc")])
    qat = quantize(model, {"fc": (8, 2)})
    x = np.random.default_rng(0).normal(size=(64, 6)).astype("float32")
    qat(x, training=True)  # sets the moving-average range
    quantized_input = qat.get_layer("quant_fc").layer.input_activation(tf.constant(x)).numpy()
    assert len(np.unique(quantized_input)) <= 4
    assert len(np.unique(x)) == x.size


def test_qat_model_saves_and_loads(chain, tmp_path):
    _, qat = chain
    path = io.save_model(qat, tmp_path / "qat.keras")
    loaded = io.load_model(path, custom_objects=qat_custom_objects())
    x = images(4)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), qat.predict(x, verbose=0), atol=1e-6)
    assert loaded.get_layer("quant_conv2").quantize_config.get_config() == {
        "weight_bits": 2, "activation_bits": 4, "kernel_attr": "kernel", "per_axis": True,
    }


def test_unknown_layer_names_are_an_error():
    with pytest.raises(ValueError, match=r"names layers not in model 'chain': \['nope'\]"):
        quantize(chain_cnn(), {"nope": (4, 8)})


def test_separable_layers_cannot_be_quantized():
    with pytest.raises(ValueError, match="layer 'sep' is a SeparableConv2D; bit widths apply to Conv2D, DepthwiseConv2D and Dense layers"):
        quantize(depthwise_cnn(), {"sep": (4, 8)})


def test_bits_outside_range_are_an_error():
    with pytest.raises(ValueError, match="layer 'conv1': weight_bits must be in 2..16, got 1"):
        quantize(chain_cnn(), {"conv1": (1, 8)})


def _input_range(wrapper):
    values = {v.name.split("/")[-1].split(":")[0]: float(v.numpy()) for v in wrapper.weights if "activation" in v.name}
    return values["post_activation_min"], values["post_activation_max"], values["post_activation_initialized"]


def test_the_first_training_batch_sets_the_input_range_and_later_batches_do_not_reset_it():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((1000,)), L.Dense(2, name="fc")])
    qat = quantize(model, {"fc": (8, 3)})
    wrapper = qat.get_layer("quant_fc")
    assert _input_range(wrapper) == (-6.0, 6.0, 0.0)  # tfmot's start until training begins
    x = np.linspace(-1.0, 3.0, 2000, dtype="float32").reshape(2, 1000)  # 0.1 % of 2000: the 2nd from each end
    qat(x, training=True)
    low, high, initialized = _input_range(wrapper)
    np.testing.assert_allclose([low, high, initialized], [x.flat[1], x.flat[-2], 1.0], rtol=1e-6)
    qat(10 * x, training=True)
    assert _input_range(wrapper) == (low, high, 1.0)


def test_an_image_quantized_to_3_bits_keeps_8_levels_after_one_training_batch():
    # tfmot's moving average starts at [-6, 6]: 3 bits left an image in [0, 1] two levels.
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1)), L.Conv2D(2, 3, name="conv")])
    qat = quantize(model, {"conv": (8, 3)})
    x = np.random.default_rng(0).uniform(size=(16, 8, 8, 1)).astype("float32")
    qat(x, training=True)
    quantized = qat.get_layer("quant_conv").layer.input_activation(tf.constant(x)).numpy()
    assert len(np.unique(quantized)) == 8
    assert 0.0 <= quantized.min() and quantized.max() <= 1.0


def test_the_input_range_is_trained_by_the_values_it_clips():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), L.Dense(1, use_bias=False, kernel_initializer="ones", name="fc")])
    qat = quantize(model, {"fc": (8, 8)})
    x = np.random.default_rng(0).uniform(size=(256, 4)).astype("float32")
    qat(x[:4] * 0.5, training=True)  # a first batch narrower than the data: the rest is clipped at its max
    wrapper = qat.get_layer("quant_fc")
    range_vars = [v for v in wrapper.trainable_weights if "post_activation_m" in v.name]
    assert len(range_vars) == 2
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(qat(x, training=True))
    grad_min, grad_max = tape.gradient(total, range_vars)
    # d sum / d max counts the clipped values (kernel of ones): PACT's gradient of the clip
    clipped = np.sum(x > _input_range(wrapper)[1])
    assert clipped > 100 and float(grad_max) == pytest.approx(clipped, rel=0.02)
    assert float(grad_min) == 0.0  # nothing below min: the inputs are positive and min is 0


def test_activation_quantizer_rejects_bad_bits():
    from tfmc.quant import LearnedRangeQuantizer

    with pytest.raises(ValueError, match="num_bits must be an integer in 2..16, got 1"):
        LearnedRangeQuantizer(1)
    assert LearnedRangeQuantizer(4).get_config() == {"num_bits": 4, "init_tail": 0.001}


def test_qat_trains_under_two_replicas(mirrored):
    # Each replica's layer must use its own quantized kernel although the input
    # quantizer's range update lets the other replica run in between.
    strategy = mirrored
    model = chain_cnn()
    with strategy.scope():
        qat = quantize(model, CHAIN_BITS)
        qat.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = images(16), np.random.default_rng(0).integers(0, 10, 16)
    qat.fit(x, y, epochs=1, batch_size=8, verbose=0)
    for name in ("conv2", "fc1"):
        kernel = qat.get_layer("quant_" + name).weights[0]
        copies = [v.numpy() for v in kernel.values]
        assert len(copies) == 2
        np.testing.assert_array_equal(copies[0], copies[1])
        assert not np.allclose(copies[0], model.get_layer(name).get_weights()[0])
    assert _input_range(qat.get_layer("quant_conv2"))[2] == 1.0
