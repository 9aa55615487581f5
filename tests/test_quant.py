"""tfmc.quantize: per-layer bit widths through tfmot's 8-bit QAT scheme."""
import numpy as np
import pytest

import tfmc  # noqa: F401
from tfmc import io
from tfmc._keras import keras, tf
from tfmc.policy import BitPolicy
from tfmc.quant import qat_custom_objects, quantize, quantized_kernel
from tiny_models import chain_cnn, depthwise_cnn, images

L = keras.layers
# tfmot's ranges: per last kernel axis for Conv2D and DepthwiseConv2D, per tensor for Dense
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
    per_channel = type(model.get_layer(name)) is not L.Dense
    levels = _levels(quantized_kernel(qat.get_layer("quant_" + name)), per_channel)
    assert max(levels) <= 2 ** DEPTHWISE_BITS[name][0]
    assert len(np.unique(model.get_layer(name).get_weights()[0])) > 2 ** DEPTHWISE_BITS[name][0]


def test_layers_the_policy_leaves_out_stay_float(depthwise):
    model, qat = depthwise
    wrapped = sorted(layer.name for layer in qat.layers if layer.name.startswith("quant_") and layer.trainable_weights
                     and any("kernel" in v.name for v in layer.trainable_weights))
    assert wrapped == ["quant_dw", "quant_pw"]
    assert type(qat.get_layer("sep")) is L.SeparableConv2D
    # the float stem keeps its BatchNorm and ReLU; its ReLU quantizes its output for dw (the boundary)
    assert [type(qat.get_layer(n)) for n in ("stem", "stem_bn")] == [L.Conv2D, L.BatchNormalization]
    assert _producer(qat, "dw").name == "quant_stem_relu"


def _producer(qat, name):
    """The layer whose output quantizer quantizes what layer ``name`` reads (through unquantized layers)."""
    layer = qat.get_layer("quant_" + name)
    while True:
        layer = layer._inbound_nodes[0].inbound_layers
        if type(layer).__name__ == "QuantizeLayer" or getattr(layer, "quantize_config", None) is None:
            return layer
        config = layer.quantize_config
        if config.get_output_quantizers(layer.layer) or config.get_activations_and_quantizers(layer.layer):
            return layer


def _reads(qat, name, x):
    """What layer ``name`` of ``qat`` reads for input ``x``, at inference."""
    return keras.Model(qat.inputs, qat.get_layer("quant_" + name).input)(x, training=False).numpy()


def test_activation_bits_sit_on_the_output_quantizer_of_the_layer_read(chain):
    _, qat = chain
    # conv2 reads relu1 (Conv-BN-ReLU fused), fc1 reads gap, conv3 reads relu2 through the max pool
    expected = {"conv2": ("quant_relu1", 4), "fc1": ("quant_gap", 2), "conv3": ("quant_relu2", 8),
                "logits": ("quant_fc1", 8)}
    for name, (producer, bits) in expected.items():
        layer = _producer(qat, name)
        assert (layer.name, layer.quantize_config.activation_bits) == (producer, bits)
    assert qat.get_layer("quant_conv2").quantize_config.weight_bits == 2
    quantize_layer = _producer(qat, "conv1")
    assert type(quantize_layer).__name__ == "QuantizeLayer"
    assert quantize_layer.quantizer.num_bits == 8


def test_two_readers_with_different_bits_get_the_highest():
    keras.utils.set_random_seed(0)
    inp = keras.Input((6,))
    shared = L.Dense(5, activation="relu", name="shared")(inp)
    out = L.Add(name="add")([L.Dense(3, name="low")(shared), L.Dense(3, name="high")(shared)])
    qat = quantize(keras.Model(inp, out), {"shared": (8, 8), "low": (8, 3), "high": (8, 6)})
    assert qat.get_layer("quant_shared").quantize_config.activation_bits == 6


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
    qat(x, training=True)  # sets the range
    quantized_input = _reads(qat, "fc", x)
    assert len(np.unique(quantized_input)) <= 4
    assert len(np.unique(x)) == x.size


def test_qat_model_saves_and_loads(chain, tmp_path):
    _, qat = chain
    path = io.save_model(qat, tmp_path / "qat.keras")
    loaded = io.load_model(path, custom_objects=qat_custom_objects())
    x = images(4)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), qat.predict(x, verbose=0), atol=1e-6)
    for name in ("quant_conv2", "quant_relu1"):
        assert loaded.get_layer(name).quantize_config == qat.get_layer(name).quantize_config
    assert loaded.get_layer("quant_conv2").quantize_config.weight_bits == 2
    assert loaded.get_layer("quant_relu1").quantize_config.activation_bits == 4
    assert _producer(loaded, "conv2").name == "quant_relu1"


def test_unknown_layer_names_are_an_error():
    with pytest.raises(ValueError, match=r"names layers not in model 'chain': \['nope'\]"):
        quantize(chain_cnn(), {"nope": (4, 8)})


def test_separable_layers_cannot_be_quantized():
    with pytest.raises(ValueError, match="layer 'sep' is a SeparableConv2D; bit widths apply to Conv2D, DepthwiseConv2D and Dense layers"):
        quantize(depthwise_cnn(), {"sep": (4, 8)})


def test_bits_outside_range_are_an_error():
    with pytest.raises(ValueError, match="layer 'conv1': weight_bits must be in 2..16, got 1"):
        quantize(chain_cnn(), {"conv1": (1, 8)})


def _range_vars(layer):
    """(min, max, initialized) variables of the LearnedRangeQuantizer in ``layer``."""
    by_name = {v.name.split("/")[-1].split(":")[0]: v for v in layer.weights}
    prefix = next(name[: -len("_initialized")] for name in by_name if name.endswith("_initialized"))
    return by_name[prefix + "_min"], by_name[prefix + "_max"], by_name[prefix + "_initialized"]


def _input_range(qat, name):
    """(min, max, initialized) of the quantizer on the activations layer ``name`` reads."""
    return tuple(float(v.numpy()) for v in _range_vars(_producer(qat, name)))


def test_the_first_training_batch_sets_the_input_range_and_later_batches_do_not_reset_it():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((1000,)), L.Dense(2, name="fc")])
    qat = quantize(model, {"fc": (8, 3)})
    assert _input_range(qat, "fc") == (-6.0, 6.0, 0.0)  # tfmot's start until training begins
    x = np.linspace(-1.0, 3.0, 2000, dtype="float32").reshape(2, 1000)  # 0.1 % of 2000: the 2nd from each end
    qat(x, training=True)
    low, high, initialized = _input_range(qat, "fc")
    np.testing.assert_allclose([low, high, initialized], [x.flat[1], x.flat[-2], 1.0], rtol=1e-6)
    qat(10 * x, training=True)
    assert _input_range(qat, "fc") == (low, high, 1.0)


def test_an_image_quantized_to_3_bits_keeps_8_levels_after_one_training_batch():
    # tfmot's moving average starts at [-6, 6]: 3 bits left an image in [0, 1] two levels.
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1)), L.Conv2D(2, 3, name="conv")])
    qat = quantize(model, {"conv": (8, 3)})
    x = np.random.default_rng(0).uniform(size=(16, 8, 8, 1)).astype("float32")
    qat(x, training=True)
    quantized = _reads(qat, "conv", x)
    assert len(np.unique(quantized)) == 8
    assert 0.0 <= quantized.min() and quantized.max() <= 1.0


def test_the_input_range_is_trained_by_the_values_it_clips():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), L.Dense(1, use_bias=False, kernel_initializer="ones", name="fc")])
    qat = quantize(model, {"fc": (8, 4)})  # below 8 bits: LearnedRangeQuantizer
    x = np.random.default_rng(0).uniform(size=(256, 4)).astype("float32")
    qat(x[:4] * 0.5, training=True)  # a first batch narrower than the data: the rest is clipped at its max
    range_vars = list(_range_vars(_producer(qat, "fc"))[:2])
    assert all(v.trainable for v in range_vars)
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(qat(x, training=True))
    grad_min, grad_max = tape.gradient(total, range_vars)
    # d sum / d max counts the clipped values (kernel of ones): PACT's gradient of the clip
    clipped = np.sum(x > _input_range(qat, "fc")[1])
    assert clipped > 100 and float(grad_max) == pytest.approx(clipped, rel=0.02)
    assert float(grad_min) == 0.0  # nothing below min: the inputs are positive and min is 0


def test_activation_quantizer_rejects_bad_bits():
    from tfmc.quant import LearnedRangeQuantizer

    with pytest.raises(ValueError, match="num_bits must be an integer in 2..16, got 1"):
        LearnedRangeQuantizer(1)
    assert LearnedRangeQuantizer(4).get_config() == {"num_bits": 4, "init_tail": 0.001}


def test_qat_trains_under_two_replicas(mirrored):
    # Each replica's layer must use its own quantized kernel although the
    # activation quantizers' range updates let the other replica run in between.
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
    assert _input_range(qat, "conv2")[2] == 1.0


def test_qat_at_8_bits_trains_under_two_replicas_like_tfmots(mirrored):
    # every layer 8/8: tfmot's own quantizers (moving averages, the input's all-values range)
    import tensorflow_model_optimization as tfmot

    from tfmc.bops import uniform_policy

    model = chain_cnn()
    x, y = images(16), np.random.default_rng(0).integers(0, 10, 16)
    trained = {}
    with mirrored.scope():
        candidates = {"tfmc": quantize(model, uniform_policy(model, 8, 8)),
                      "tfmot": tfmot.quantization.keras.quantize_model(model)}
    for name, qat in candidates.items():
        with mirrored.scope():
            qat.compile(keras.optimizers.SGD(0.1), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        history = qat.fit(x, y, epochs=3, batch_size=8, verbose=0)
        trained[name] = (qat, history.history["loss"])
    for name, (qat, losses) in trained.items():
        assert losses[-1] < losses[0], name
        copies = [v.numpy() for v in qat.get_layer("quant_conv2").weights[0].values]
        np.testing.assert_array_equal(copies[0], copies[1])
    ours, theirs = trained["tfmc"][0], trained["tfmot"][0]
    assert [layer.name for layer in ours.layers[2:]] == [layer.name for layer in theirs.layers[2:]]  # after the input and its QuantizeLayer


def test_weights_below_8_bits_sit_on_their_grid_inside_the_stored_width():
    from tfmc.quant import StoredGridWeightsQuantizer

    quantizer = StoredGridWeightsQuantizer(3)
    holder = keras.layers.Layer()
    variables = quantizer.build((4,), "w", holder)
    w = tf.constant([-0.9, -0.1, 0.2, 0.62])
    # 3 bits: levels -3..3 x 0.3 (max |w| / 3), as tfmot's symmetric narrow range
    np.testing.assert_allclose(quantizer(w, True, variables).numpy(), [-0.9, 0.0, 0.3, 0.6], atol=1e-6)
    # stored as a 4-bit fake-quant over +-7 steps of 0.3; the variable keeps tfmot's range, max |w|
    assert (quantizer.stored_bits, float(variables["max_var"].numpy())) == (4, pytest.approx(0.9))
    with pytest.raises(ValueError, match="num_bits must be an integer in 2..7, got 8"):
        StoredGridWeightsQuantizer(8)
