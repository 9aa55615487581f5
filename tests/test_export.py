"""tfmc.export.to_tflite in every mode, the bit rounding it reports, and `tfmc export`."""
import json
import os

import numpy as np
import pytest

import tfmc
from tfmc._keras import keras
from tfmc.export import ExportError, bits, to_tflite
from tfmc.quant import quantize

L = keras.layers


def _flatten_cnn(seed=0):
    """Conv, depthwise, pointwise, then Flatten -> Dense: logits that vary with the input."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((8, 8, 3))
    x = L.Conv2D(8, 3, padding="same", name="conv")(inp)
    x = L.BatchNormalization(name="bn")(x)
    x = L.ReLU(name="relu")(x)
    x = L.DepthwiseConv2D(3, padding="same", activation="relu", name="dw")(x)
    x = L.Conv2D(16, 1, activation="relu", name="pw")(x)
    x = L.Flatten(name="flat")(x)
    out = L.Dense(10, name="logits")(x)
    return keras.Model(inp, out, name="flatcnn")


@pytest.fixture(scope="module")
def model():
    return _flatten_cnn()


@pytest.fixture(scope="module")
def data():
    return np.random.default_rng(3).random((64, 8, 8, 3)).astype("float32")


def _tensor_types(path):
    """{tensor name: TensorType name} read straight from the flatbuffer schema."""
    from ai_edge_litert import schema_py_generated as schema

    with open(path, "rb") as f:
        m = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(f.read(), 0))
    names = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    return {t.name.decode(): names[t.type] for t in m.subgraphs[0].tensors}


def _io_dtypes(path):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path)
    return (np.dtype(interpreter.get_input_details()[0]["dtype"]).name,
            np.dtype(interpreter.get_output_details()[0]["dtype"]).name)


@pytest.mark.parametrize("mode,weight_type", [("float32", "float32"), ("float16", "float16")])
def test_float_modes_agree_on_every_sample(model, tmp_path, mode, weight_type):
    path = str(tmp_path / f"{mode}.tflite")
    result = to_tflite(model, path, mode=mode)
    assert result.path == path and result.size_bytes == os.path.getsize(path)
    assert result.agreement.samples == 16 and result.agreement.agree == 16
    assert [layer.name for layer in result.layers] == ["conv", "dw", "pw", "logits"]
    assert all(layer.weights == [weight_type] and layer.activations == ["float32"] for layer in result.layers)
    assert (result.input_dtype, result.output_dtype) == ("float32", "float32")
    assert result.changed == {}


def test_float16_is_smaller_than_float32(model, tmp_path):
    f32 = to_tflite(model, str(tmp_path / "a.tflite"), mode="float32")
    f16 = to_tflite(model, str(tmp_path / "b.tflite"), mode="float16")
    params = tfmc.count_params(model)
    # float16 halves the weights: the saving is at least 2 bytes per parameter less some BN folding
    assert f32.size_bytes - f16.size_bytes > 1.5 * params


def test_dynamic_mode_stores_int8_weights_with_float_io(model, tmp_path):
    result = to_tflite(model, str(tmp_path / "d.tflite"), mode="dynamic")
    assert result.layer("logits").weights == ["int8"]
    assert result.layer("logits").activations == ["float32"]
    # the converter's dynamic-range pass leaves tensors under 1024 elements in float, and says so
    assert result.layer("conv").weights == ["float32"]
    assert result.changed["conv"] == ["CONV_2D weights left float32 by the TFLite converter"]
    assert (result.input_dtype, result.output_dtype) == ("float32", "float32")


def test_int8_mode_with_int8_io_has_int8_tensors(model, data, tmp_path):
    path = str(tmp_path / "i8.tflite")
    result = to_tflite(model, path, mode="int8", representative_data=data, io_dtype="int8")
    assert _io_dtypes(path) == ("int8", "int8")
    assert (result.input_dtype, result.output_dtype) == ("int8", "int8")
    for layer in result.layers:
        assert layer.weights == ["int8"] and layer.activations == ["int8"], layer
    assert result.agreement.agree >= 12


def test_int8_mode_keeps_float_io_by_default(model, data, tmp_path):
    path = str(tmp_path / "i8f.tflite")
    result = to_tflite(model, path, mode="int8", representative_data=data)
    assert _io_dtypes(path) == ("float32", "float32")
    assert result.layer("pw").activations == ["int8"]


def test_qat_mode_converts_a_tfmc_quantize_model(model, tmp_path):
    policy = tfmc.BitPolicy({"conv": (8, 8), "pw": (3, 8), "logits": (8, 8)})
    qat = quantize(model, policy)
    path = str(tmp_path / "q.tflite")
    result = to_tflite(qat, path, mode="qat", policy=policy)
    assert [layer.name for layer in result.layers] == ["conv", "dw", "pw", "logits"]
    # the converter stores QAT weights of 4 bits or fewer as INT4
    assert result.layer("pw").weights == ["int4"] and "INT4" in _tensor_types(path).values()
    assert result.layer("pw").requested == (3, 8)
    assert result.changed["pw"] == ["CONV_2D weights 3 bits stored as int4 holding 8 levels"]
    assert result.layer("pw").activations == ["int8"]
    assert result.agreement.agree >= 12


POLICY = {"dw": (4, 8), "pw": (4, 8), "logits": (2, 4)}


@pytest.fixture(scope="module")
def mixed_dynamic(model, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("mixed") / "mixed.tflite")
    return to_tflite(model, path, mode="mixed", policy=tfmc.BitPolicy(POLICY))


def test_mixed_mode_stores_int4_weights_for_the_chosen_layers(mixed_dynamic):
    int4 = sorted(name for name, kind in _tensor_types(mixed_dynamic.path).items() if kind == "INT4")
    assert len(int4) == 2
    assert "/pw/" in int4[1] and "/logits/" in int4[0]
    assert mixed_dynamic.layer("pw").weights == ["int4"]
    assert mixed_dynamic.layer("logits").weights == ["int4"]
    assert mixed_dynamic.layer("conv").weights == ["float32"]  # not in the policy: float, as tfmc.quantize leaves it
    assert mixed_dynamic.agreement.samples == 16  # it loaded and ran in LiteRT


def test_mixed_mode_says_which_layers_it_rounded(mixed_dynamic):
    assert mixed_dynamic.changed == {
        "dw": ["weights 4 -> 8 bits (DEPTHWISE_CONV_2D has no int4 kernel in LiteRT)"],
        "logits": [
            "activations 4 bits not applied: without representative data they stay float32 and are "
            "quantized to 8 bits at run time",
            "weights 2 -> 4 bits (int4 is LiteRT's narrowest weight type)",
        ],
    }
    assert mixed_dynamic.layer("dw").weights == ["int8"]
    assert mixed_dynamic.recipe[-1]["op_config"]["weight_tensor_config"]["num_bits"] == 4


def test_mixed_static_mode_has_int8_activations_and_io(model, data, tmp_path):
    path = str(tmp_path / "ms.tflite")
    policy = tfmc.BitPolicy({"pw": (4, 8), "conv": (16, 16), "dw": (8, 8), "logits": (8, 8)})
    result = to_tflite(model, path, mode="mixed", policy=policy, representative_data=data, io_dtype="int8")
    assert _io_dtypes(path) == ("int8", "int8")
    assert result.layer("pw").weights == ["int4"] and result.layer("pw").activations == ["int8"]
    assert result.layer("conv").weights == ["float32"]
    assert result.changed["conv"] == [
        "activations 16 bits -> float32 (an int8 model cannot mix in int16 activations per layer)",
        "weights 16 bits -> float32 (LiteRT has no integer weights wider than 8 bits)",
    ]
    assert result.agreement.agree >= 12


def test_mixed_static_mode_keeps_a_layer_the_policy_leaves_out_float_between_int8_layers(model, data, tmp_path):
    from tfmc.export import flatbuffer

    path = str(tmp_path / "middle.tflite")
    policy = tfmc.BitPolicy({"conv": (8, 8), "pw": (4, 8), "logits": (8, 8)})  # dw left out
    result = to_tflite(model, path, mode="mixed", policy=policy, representative_data=data, io_dtype="int8")
    assert {layer.name: (layer.weights, layer.activations) for layer in result.layers} == {
        "conv": (["int8"], ["int8"]), "dw": (["float32"], ["float32"]), "pw": (["int4"], ["int8"]),
        "logits": (["int8"], ["int8"])}
    with open(path, "rb") as f:
        ops = flatbuffer.op_names(f.read())
    # int8 conv -> DEQUANTIZE -> float dw -> QUANTIZE -> int8 pw: the only QUANTIZE / DEQUANTIZE (int8 I/O)
    position = ops.index("DEPTHWISE_CONV_2D")
    assert ops[position - 1:position + 2] == ["DEQUANTIZE", "DEPTHWISE_CONV_2D", "QUANTIZE"]
    assert ops.count("QUANTIZE") == 1 and ops.count("DEQUANTIZE") == 1
    assert not result.changed and result.agreement.agree >= 12


@pytest.mark.parametrize("op,w,a,static,expected", [
    ("CONV_2D", 4, 8, True, ("int4", True, [])),
    ("FULLY_CONNECTED", 3, 8, False, ("int4", False, ["weights 3 -> 4 bits (int4 is LiteRT's narrowest weight type)"])),
    ("CONV_2D", 6, 8, True, ("int8", True, ["weights 6 -> 8 bits (LiteRT stores 5-7 bit weights as int8)"])),
    ("DEPTHWISE_CONV_2D", 2, 4, True, ("int8", True, [
        "activations 4 -> 8 bits (LiteRT integer kernels take 8-bit activations)",
        "weights 2 -> 8 bits (DEPTHWISE_CONV_2D has no int4 kernel in LiteRT)",
    ])),
    ("CONV_2D", 4, 16, True, ("float32", False, [
        "activations 16 bits -> float32 (an int8 model cannot mix in int16 activations per layer)",
    ])),
])
def test_plan_op_rounds_to_executable_widths(op, w, a, static, expected):
    plan = bits.plan_op(op, w, a, static)
    assert (plan.weights, plan.integer_activations, plan.notes) == expected


def test_scope_regex_matches_only_its_op():
    import re

    regex = bits.scope_regex("m/conv1/Relu;m/conv1/BiasAdd")
    assert re.search(regex, "m/conv1/Relu;m/conv1/BiasAdd;")
    assert not re.search(regex, "m/conv10/Relu;m/conv1/BiasAdd;")


@pytest.mark.parametrize("kwargs,message", [
    (dict(mode="int4"), r"mode must be one of float32, float16, dynamic, int8, qat, mixed; got 'int4'"),
    (dict(mode="int8"), r"mode 'int8' needs representative_data"),
    (dict(mode="mixed"), r"mode 'mixed' needs policy=BitPolicy"),
    (dict(mode="float16", io_dtype="int8"), r"int8 model input/output needs mode int8, qat or mixed; mode 'float16'"),
    (dict(mode="qat"), r"mode 'qat' expects a quantization-aware model \(tfmc.quantize\); 'flatcnn' has no"),
    (dict(mode="float32", policy=tfmc.BitPolicy({"pw": (4, 8)})), r"a BitPolicy applies to modes 'mixed' and 'qat'"),
    (dict(mode="mixed", policy=tfmc.BitPolicy({"nope": (4, 8)})), r"policy names layers not in model 'flatcnn': nope"),
    (dict(mode="int8", representative_data=np.zeros((4, 9, 9, 3))),
     r"representative_data has shape \(4, 9, 9, 3\); expected N x \(8, 8, 3\)"),
])
def test_bad_arguments_are_named_and_nothing_is_written(model, tmp_path, kwargs, message):
    path = tmp_path / "x.tflite"
    with pytest.raises(ExportError, match=message):
        to_tflite(model, str(path), **kwargs)
    assert os.listdir(tmp_path) == []


def test_a_qat_model_exports_only_in_modes_qat_and_mixed(model, tmp_path):
    qat = quantize(model, {"pw": (8, 8)})
    with pytest.raises(ExportError, match=r"is a quantization-aware model; export it with mode 'qat' or 'mixed', "
                                          r"not 'int8'"):
        to_tflite(qat, str(tmp_path / "x.tflite"), mode="int8", representative_data=np.zeros((4, 8, 8, 3)))
    assert os.listdir(tmp_path) == []


def test_cli_export_mixed_writes_the_file_and_prints_the_table(model, tmp_path, capsys):
    from tfmc import io
    from tfmc.cli import main

    model_path = str(tmp_path / "m.keras")
    io.save_model(model, model_path)
    bits_path = str(tmp_path / "bits.json")
    tfmc.BitPolicy({"pw": (3, 8)}).to_json(bits_path)
    out = str(tmp_path / "m.tflite")
    assert main(["export", model_path, "--mode", "mixed", "--bits", bits_path, "--out", out]) == 0
    printed = capsys.readouterr().out
    assert "| pw | CONV_2D | int4 | float32 | 3, 8 | weights 3 -> 4 bits" in printed
    assert "INT4" in _tensor_types(out).values()


def test_cli_export_rejects_a_bad_bits_file(model, tmp_path, capsys):
    from tfmc import io
    from tfmc.cli import main

    model_path = str(tmp_path / "m.keras")
    io.save_model(model, model_path)
    bad = tmp_path / "bits.json"
    bad.write_text(json.dumps({"kind": "prune", "keep_ratios": {}}))
    assert main(["export", model_path, "--mode", "mixed", "--bits", str(bad), "--out", str(tmp_path / "o.tflite")]) == 2
    assert "--bits" in capsys.readouterr().err
    assert not (tmp_path / "o.tflite").exists()


def _interpreter_view(tflite_bytes, inputs):
    """(signatures, [(name, shape signature)] of the inputs and outputs, op names in order, outputs on ``inputs``)."""
    from tflite_bench.host import load_interpreter
    from tfmc.export import flatbuffer

    ops = flatbuffer.op_names(tflite_bytes)
    interpreter = load_interpreter(tflite_bytes, threads=1)
    runner = interpreter.get_signature_runner()
    outputs = runner(**inputs)
    details = [(d["name"], tuple(d["shape_signature"]))
               for d in interpreter.get_input_details() + interpreter.get_output_details()]
    return interpreter.get_signature_list(), details, ops, outputs


def test_the_converter_converts_what_keras_own_converter_converts():
    from tfmc._keras import tf
    from tfmc.export import tflite_converter

    layers = keras.layers
    image, extra = keras.Input((8, 8, 3), name="image"), keras.Input((4,), name="extra")
    x = layers.BatchNormalization()(layers.Conv2D(6, 3, name="conv")(image))
    x = layers.Concatenate()([layers.GlobalAveragePooling2D()(layers.ReLU()(x)), extra])
    two = keras.Model([image, extra], [layers.Dense(3, name="class")(x), layers.Dense(1, name="score")(x)])
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    inputs = {"image": rng.random((1, 8, 8, 3), np.float32), "extra": rng.random((1, 4), np.float32)}
    ours = _interpreter_view(tflite_converter(two).convert(), inputs)
    theirs = _interpreter_view(tf.lite.TFLiteConverter.from_keras_model(two).convert(), inputs)
    assert ours[0] == theirs[0] == {"serving_default": {"inputs": ["extra", "image"], "outputs": ["class", "score"]}}
    assert ours[1] == theirs[1]
    assert ours[2] == theirs[2]
    for name in ("class", "score"):
        np.testing.assert_array_equal(ours[3][name], theirs[3][name])
    expected = two([inputs["image"], inputs["extra"]], training=False)
    np.testing.assert_allclose(ours[3]["class"], expected[0].numpy(), rtol=1e-5, atol=1e-5)
