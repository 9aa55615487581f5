"""tfmc.quantize converts like tfmot's quantize_model: the same int8 graph at 8/8, float layers at the boundaries."""
import collections

import numpy as np
import pytest
import tensorflow_model_optimization as tfmot

import tfmc
from tfmc._keras import keras
from tfmc.bops import uniform_policy
from tfmc.export import flatbuffer, to_tflite

# tfmot's quantize_model on digits_cnn: one QUANTIZE in, one DEQUANTIZE out, the rest int8.
DIGITS_OPS = {"ADD": 2, "CONV_2D": 10, "DEPTHWISE_CONV_2D": 4, "DEQUANTIZE": 1, "FULLY_CONNECTED": 1,
              "MEAN": 1, "QUANTIZE": 1}


def _ops(tflite_bytes):
    """[(op name, input tensor names, output tensor names)] of the main subgraph, in order."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(bytes(tflite_bytes), 0))
    op_names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    tensors = model.subgraphs[0].tensors
    ops = []
    for op in model.subgraphs[0].operators:
        code = model.operatorCodes[op.opcodeIndex]
        name = op_names[max(code.builtinCode, code.deprecatedBuiltinCode)]
        ops.append((name, [tensors[i].name.decode() for i in op.inputs if i >= 0],
                    [tensors[i].name.decode() for i in op.outputs]))
    return ops


def _histogram(tflite_bytes):
    return dict(collections.Counter(flatbuffer.op_names(tflite_bytes)))


def _weight_types(tflite_bytes):
    return [(op.op, op.weight_type) for op in flatbuffer.weight_ops(tflite_bytes)]


def _qat_export(qat, path):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.random((32, 32, 32, 3)).astype("float32")
    qat.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    qat.fit(x, rng.integers(0, 10, 32), epochs=1, batch_size=16, verbose=0)
    result = to_tflite(qat, path, mode="qat", representative_data=x)
    with open(path, "rb") as f:
        return result, f.read()


@pytest.fixture(scope="module")
def digits():
    return tfmc.models.digits_cnn()


@pytest.fixture(scope="module")
def tfmot_export(digits, tmp_path_factory):
    return _qat_export(tfmot.quantization.keras.quantize_model(digits), tmp_path_factory.mktemp("q") / "tfmot.tflite")


@pytest.fixture(scope="module")
def tfmc_export(digits, tmp_path_factory):
    qat = tfmc.quantize(digits, uniform_policy(digits, 8, 8))
    return _qat_export(qat, tmp_path_factory.mktemp("q") / "tfmc.tflite")


def test_every_layer_at_8_bits_converts_to_tfmots_graph(tfmot_export, tfmc_export):
    (ours, ours_bytes), (theirs, theirs_bytes) = tfmc_export, tfmot_export
    assert _histogram(theirs_bytes) == DIGITS_OPS
    assert _histogram(ours_bytes) == DIGITS_OPS
    assert _weight_types(ours_bytes) == _weight_types(theirs_bytes)
    assert {kind for _, kind in _weight_types(ours_bytes)} == {"int8"}
    assert len(_weight_types(ours_bytes)) == 15
    assert abs(ours.size_bytes - theirs.size_bytes) <= 0.03 * theirs.size_bytes
    assert all(not layer.notes for layer in ours.layers)  # no "weights left float32"
    assert ours.agreement.agree == 16


def test_layers_the_policy_leaves_out_at_the_ends_stay_float_with_quantize_ops_only_at_their_boundaries(
        digits, tmp_path):
    """stem and logits left float: float input -> float conv -> QUANTIZE -> int8 -> DEQUANTIZE -> float dense."""
    policy = {name: bits for name, bits in uniform_policy(digits, 8, 8).items() if name not in ("stem", "logits")}
    result, tflite_bytes = _qat_export(tfmc.quantize(digits, policy), tmp_path / "partial.tflite")
    by_layer = {layer.name: layer.weights for layer in result.layers}
    assert by_layer.pop("stem") == ["float32"] and by_layer.pop("logits") == ["float32"]
    assert set(map(tuple, by_layer.values())) == {("int8",)} and len(by_layer) == 13
    assert _histogram(tflite_bytes) == DIGITS_OPS  # still one QUANTIZE and one DEQUANTIZE
    ops = _ops(tflite_bytes)
    names = [name for name, _, _ in ops]
    stem, logits = [op.index for op in flatbuffer.weight_ops(tflite_bytes) if op.weight_type == "float32"]
    assert (names[stem], names[logits]) == ("CONV_2D", "FULLY_CONNECTED")
    assert stem == 0 and names[1] == "QUANTIZE" and ops[1][1] == ops[0][2]
    assert logits == len(ops) - 1 and names[-2] == "DEQUANTIZE" and ops[-2][2][0] in ops[-1][1]
    assert result.agreement.agree >= 15


def test_a_float_layer_between_int8_layers_stays_float_with_quantize_ops_only_at_its_boundaries(digits, tmp_path):
    """block3_expand left float, block2_project at 4 bits: int8 -> DEQUANTIZE -> float conv -> QUANTIZE -> int8."""
    from tfmc.quant import quantized_kernel

    policy = {name: bits for name, bits in uniform_policy(digits, 8, 8).items() if name != "block3_expand"}
    policy["block2_project"] = (4, 8)
    qat = tfmc.quantize(digits, policy)
    result, tflite_bytes = _qat_export(qat, tmp_path / "middle.tflite")
    weights = {layer.name: layer.weights for layer in result.layers}
    assert weights.pop("block3_expand") == ["float32"]
    assert weights.pop("block2_project") == ["int4"]
    assert set(map(tuple, weights.values())) == {("int8",)} and len(weights) == 13
    assert _histogram(tflite_bytes) == {**DIGITS_OPS, "QUANTIZE": 2, "DEQUANTIZE": 2}
    ops = _ops(tflite_bytes)
    (position,) = [op.index for op in flatbuffer.weight_ops(tflite_bytes) if op.weight_type == "float32"]
    assert ops[position - 1][0] == "DEQUANTIZE" and ops[position - 1][2][0] in ops[position][1]
    assert ops[position + 1][0] == "QUANTIZE" and ops[position + 1][1] == ops[position][2]
    assert [name for name, _, _ in ops].index("DEQUANTIZE") == position - 1  # the first DEQUANTIZE is the boundary
    assert not result.layer("block3_expand").notes  # float by request, not "left float32 by the converter"
    # the unsigned tensors of the converter's strict mode were stored signed: the file holds the QAT grid
    (op,) = flatbuffer.ops_by_layer(qat, flatbuffer.weight_ops(tflite_bytes))["block2_project"]
    ints, scale = _stored_weights(tflite_bytes, op)
    bn = qat.get_layer("quant_block2_project_bn").layer
    gamma, _, _, variance = bn.get_weights()
    kernel = quantized_kernel(qat.get_layer("quant_block2_project")) * gamma / np.sqrt(variance + bn.epsilon)
    np.testing.assert_array_equal(ints, np.rint(kernel / scale))
    assert np.abs(ints).max() == 7
    assert result.agreement.agree == 16

def _stored_weights(tflite_bytes, op):
    """(integers, scale per output channel or tensor) of a weight op's INT4 tensor, in the Keras kernel layout."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(bytes(tflite_bytes), 0))
    (tensor,) = [t for t in model.subgraphs[0].tensors if t.name.decode() == op.tensor_names[1]]
    shape = tuple(tensor.shape)
    packed = np.frombuffer(bytes(model.buffers[tensor.buffer].data), np.uint8)
    nibbles = np.stack([packed & 0x0F, packed >> 4], -1).reshape(-1)[:int(np.prod(shape))].astype(np.int8)
    ints = np.where(nibbles > 7, nibbles - 16, nibbles).reshape(shape)
    scale = np.asarray(tensor.quantization.scale, np.float32)
    assert tensor.quantization.quantizedDimension == 0 and len(scale) in (1, shape[0])  # per channel or tensor
    # TFLite keeps the output channel first: CONV_2D [out, h, w, in], FULLY_CONNECTED [out, in]
    axes = (1, 2, 3, 0) if len(shape) == 4 else (1, 0)
    return np.transpose(ints, axes), scale


LOW_BITS = {"c1": (3, 8), "c2": (4, 8), "fc1": (2, 8), "logits": (4, 8)}


@pytest.fixture(scope="module")
def low_bit_digits(tmp_path_factory):
    data = tfmc.data.load("digits", image_size=16)
    keras.utils.set_random_seed(0)
    L = keras.layers
    inp = keras.Input(data.x_train.shape[1:])
    x = L.Conv2D(8, 3, activation="relu", name="c1")(inp)
    x = L.Conv2D(16, 3, use_bias=False, name="c2")(x)
    x = L.BatchNormalization(name="bn")(x)
    x = L.ReLU(name="relu")(x)
    x = L.MaxPooling2D(name="pool")(x)
    x = L.Flatten(name="flat")(x)
    x = L.Dense(32, activation="relu", name="fc1")(x)
    out = L.Dense(10, name="logits")(x)
    qat = tfmc.quantize(keras.Model(inp, out, name="low_bit"), LOW_BITS)
    qat.compile(keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    qat.fit(data.x_train, data.y_train, epochs=8, batch_size=32, verbose=0)
    path = tmp_path_factory.mktemp("int4") / "low_bit.tflite"
    result = to_tflite(qat, path, mode="qat", policy=tfmc.BitPolicy(LOW_BITS), representative_data=data.x_val)
    with open(path, "rb") as f:
        return data, qat, result, f.read()


def _assert_stored_on_the_qat_grid(qat, tflite_bytes, named_by):
    """Each LOW_BITS layer's INT4 file weights are the QAT model's fake-quantized kernel, integer for integer."""
    from tfmc.quant import quantized_kernel

    by_layer = flatbuffer.ops_by_layer(named_by, flatbuffer.weight_ops(tflite_bytes))
    assert sorted(by_layer) == sorted(LOW_BITS)
    for name, ops in by_layer.items():
        ints, scale = _stored_weights(tflite_bytes, ops[0])
        kernel = quantized_kernel(qat.get_layer("quant_" + name))
        if name == "c2":  # the converter folds the BatchNorm into the kernel: one factor per output channel
            gamma, _, _, variance = qat.get_layer("quant_bn").layer.get_weights()
            kernel = kernel * gamma / np.sqrt(variance + qat.get_layer("quant_bn").layer.epsilon)
        levels = 2 ** (LOW_BITS[name][0] - 1) - 1
        np.testing.assert_array_equal(ints, np.rint(kernel / scale))  # the same integers ...
        assert np.abs(ints).max() == levels  # ... on the trained grid, not a finer INT4 one
        np.testing.assert_allclose(ints * scale, kernel, rtol=0, atol=1e-6 * np.abs(kernel).max())


def test_conv_and_dense_trained_at_4_bits_or_fewer_are_stored_int4_on_the_qat_grid(low_bit_digits):
    _, qat, result, tflite_bytes = low_bit_digits
    assert {layer.name: layer.weights for layer in result.layers} == {name: ["int4"] for name in LOW_BITS}
    _assert_stored_on_the_qat_grid(qat, tflite_bytes, qat)


def _assert_agrees_on_held_out_data(data, qat, tflite_bytes):
    from tflite_bench.host import load_interpreter

    from tfmc.export import check

    keras_outputs = qat.predict(data.x_test, verbose=0)
    file_outputs = check.tflite_outputs(load_interpreter(tflite_bytes), data.x_test)
    agreement, _, _ = check.top1_agreement(keras_outputs, file_outputs, tie_tolerance=0.0)
    assert agreement.samples == len(data.x_test) and agreement.rate >= 0.99
    assert np.mean(keras_outputs.argmax(-1) == data.y_test) > 0.8  # a trained model, not a tie everywhere


def test_the_int4_file_agrees_with_the_qat_model_on_held_out_data(low_bit_digits):
    data, qat, _, tflite_bytes = low_bit_digits
    _assert_agrees_on_held_out_data(data, qat, tflite_bytes)


def test_mode_mixed_starts_from_the_qat_model_and_keeps_its_grid(low_bit_digits, tmp_path):
    """ai-edge-quantizer's weight recovery reads the QAT grid back instead of re-quantizing float weights."""
    from tfmc.export import qat_float_model

    data, qat, _, _ = low_bit_digits
    path = tmp_path / "mixed.tflite"
    result = to_tflite(qat, path, mode="mixed", policy=tfmc.BitPolicy(LOW_BITS), representative_data=data.x_val,
                       io_dtype="int8")
    assert {layer.name: layer.weights for layer in result.layers} == {name: ["int4"] for name in LOW_BITS}
    assert result.changed == {"c1": ["weights 3 -> 4 bits (int4 is LiteRT's narrowest weight type)"],
                              "fc1": ["weights 2 -> 4 bits (int4 is LiteRT's narrowest weight type)"]}
    with open(path, "rb") as f:
        tflite_bytes = f.read()
    _assert_stored_on_the_qat_grid(qat, tflite_bytes, qat_float_model(qat))
    _assert_agrees_on_held_out_data(data, qat, tflite_bytes)
