"""Export a tf_keras model to a checked .tflite (LiteRT) file: float, dynamic, int8, QAT or mixed int4/int8.

Example:
  >>> import tfmc
  >>> result = tfmc.export.to_tflite(model, "model.tflite", mode="int8",
  ...                                representative_data=x_val[:100])  # doctest: +SKIP
  >>> result.size_bytes, result.agreement.rate  # doctest: +SKIP
"""
import contextlib
import dataclasses
import io
import os

import numpy as np

from tfmc import io as tfmc_io
from tfmc._keras import require_graph_model, tf
from tfmc.data import as_arrays, check_finite
from tfmc.errors import ExportError
from tfmc.export import bits as bits_lib
from tfmc.export import check as check_lib
from tfmc.export import flatbuffer
from tfmc.policy import BitPolicy

MODES = ("float32", "float16", "dynamic", "int8", "qat", "mixed")
IO_DTYPES = ("float32", "int8")
# Samples used by the post-export check, and by int8 calibration at most.
CHECK_SAMPLES = 16
CALIBRATION_SAMPLES = 200
# Relative top-1/top-2 gap under which float rounding may swap the two (per mode).
_TIE_TOLERANCE = {"float32": 1e-5, "float16": 2e-3}


@dataclasses.dataclass
class LayerExport:
    """What one Conv / Dense / Depthwise / Separable layer became in the .tflite.

    Attributes:
      name: the Keras layer's name.
      ops: its TFLite ops, e.g. ["CONV_2D"] (a separable layer has two).
      weights: stored weight type per op, e.g. ["int4"] (read from the file).
      activations: output type per op: "float32" or "int8".
      requested: (weight_bits, activation_bits) from the policy, or None.
      notes: each way the export differs from the request, in words.
    """

    name: str
    ops: list
    weights: list
    activations: list
    requested: tuple = None
    notes: list = dataclasses.field(default_factory=list)

    @property
    def changed(self):
        return bool(self.notes)


@dataclasses.dataclass
class ExportResult:
    """The written file, its size, what each layer became and the post-export check."""

    path: str
    size_bytes: int
    mode: str
    input_dtype: str
    output_dtype: str
    layers: list
    agreement: object  # check.Agreement
    recipe: list = None  # the ai-edge-quantizer recipe (mode "mixed")

    @property
    def changed(self):
        """{layer name: notes} for the layers whose bits were rounded to what LiteRT runs."""
        return {layer.name: layer.notes for layer in self.layers if layer.changed}

    def layer(self, name):
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(f"no exported layer named {name!r}")

    def to_markdown(self):
        """A table of the layers (ops, weights, activations, request, notes) under a one-line summary."""
        rows = [
            f"{self.path}: {self.size_bytes:,} bytes, mode {self.mode}, input {self.input_dtype}, "
            f"output {self.output_dtype}; {self.agreement}",
            "",
            "| layer | ops | weights | activations | requested (w, a) | notes |",
            "|---|---|---|---|---|---|",
        ]
        for layer in self.layers:
            requested = "-" if layer.requested is None else f"{layer.requested[0]}, {layer.requested[1]}"
            rows.append(
                f"| {layer.name} | {' + '.join(layer.ops)} | {' + '.join(layer.weights)} | "
                f"{' + '.join(layer.activations)} | {requested} | {'; '.join(layer.notes) or '-'} |"
            )
        return "\n".join(rows)


def is_qat_model(model):
    """True when ``model`` holds tfmot quantization wrappers (a tfmc.quantize / quantize_model result)."""
    return any(type(layer).__name__.startswith("QuantizeWrapper") for layer in model.layers)


def _check_args(model, mode, policy, representative_data, io_dtype):
    require_graph_model(model)
    if mode not in MODES:
        raise ExportError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
    if io_dtype is not None and io_dtype not in IO_DTYPES:
        raise ExportError(f"io_dtype must be 'float32' or 'int8', got {io_dtype!r}")
    if io_dtype == "int8" and mode not in ("int8", "qat", "mixed"):
        raise ExportError(f"int8 model input/output needs mode int8, qat or mixed; mode {mode!r} keeps float I/O")
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ExportError(
            f"export supports models with one input and one output; {model.name!r} has "
            f"{len(model.inputs)} inputs and {len(model.outputs)} outputs"
        )
    qat = is_qat_model(model)
    if mode == "qat" and not qat:
        raise ExportError(
            f"mode 'qat' expects a quantization-aware model (tfmc.quantize); {model.name!r} has no "
            "QuantizeWrapper layers (use mode 'int8' for post-training quantization)"
        )
    if mode not in ("qat", "mixed") and qat:
        raise ExportError(
            f"{model.name!r} is a quantization-aware model; export it with mode 'qat' or 'mixed', not {mode!r}")
    if policy is not None and not isinstance(policy, BitPolicy):
        raise ExportError(f"policy must be a tfmc.BitPolicy, got {type(policy).__name__}")
    if mode == "mixed" and policy is None:
        raise ExportError("mode 'mixed' needs policy=BitPolicy (the weight bits of each layer to quantize; "
                          "layers it leaves out stay float)")
    if policy is not None and mode not in ("mixed", "qat"):
        raise ExportError(f"a BitPolicy applies to modes 'mixed' and 'qat', not {mode!r}")
    if mode == "int8" and representative_data is None:
        raise ExportError("mode 'int8' needs representative_data (a few hundred typical inputs) to calibrate activations")
    if mode == "mixed" and representative_data is None and io_dtype == "int8":
        raise ExportError("int8 model I/O in mode 'mixed' needs representative_data (static int8 activations)")
    if mode == "mixed" and representative_data is not None and io_dtype == "float32":
        raise ExportError(
            "mode 'mixed' with representative_data quantizes activations and model I/O to int8 "
            "(ai-edge-quantizer static recipe); ask io_dtype='int8', or drop representative_data for float I/O"
        )


def _samples(model, representative_data, count, seed=0):
    shape = tuple(model.inputs[0].shape.as_list()[1:])
    if representative_data is None:
        if any(d is None for d in shape):
            raise ExportError(f"model input shape {shape} is not fixed; give representative_data to check the export")
        return np.random.default_rng(seed).random((count,) + shape).astype(np.float32)
    data = np.asarray(representative_data, dtype=np.float32)
    if data.ndim != len(shape) + 1 or any(e is not None and e != g for e, g in zip(shape, data.shape[1:])):
        raise ExportError(f"representative_data has shape {data.shape}; expected N x {shape}")
    if len(data) == 0:
        raise ExportError("representative_data is empty")
    check_finite(None, "representative_data", data)
    return data[:count]


def tflite_converter(model):
    """A ``tf.lite.TFLiteConverter`` for ``model``'s inference call (``training=False``), set to nothing else yet.

    It converts what ``TFLiteConverter.from_keras_model`` converts (the same
    signature, input and output names, ops and weights) several times
    faster: from_keras_model first exports the model as a Keras SavedModel,
    which traces every layer's functions for Keras' metadata (four fifths
    of converting a small CNN, about 4 s of 5 on this machine). Here only
    the inference function and the variables it reads are saved.
    """
    module = tf.Module()
    module.model_variables = list(model.variables)  # tracked, so the saved function can read them
    specs = [tf.TensorSpec(t.shape, t.dtype, name=t.name.split(":")[0]) for t in model.inputs]
    names = list(model.output_names)

    @tf.function(input_signature=specs, autograph=False)
    def serve(*inputs):
        outputs = model(list(inputs) if len(inputs) > 1 else inputs[0], training=False)
        if isinstance(outputs, dict):  # a functional model built with named outputs
            return outputs
        return dict(zip(names, outputs if isinstance(outputs, (list, tuple)) else [outputs]))

    module.serve = serve
    return tf.lite.TFLiteConverter.from_concrete_functions([serve.get_concrete_function()], module)


def _convert(model, mode, representative_data, io_dtype, strict_qdq=False):
    converter = tflite_converter(model)
    # Strict QDQ: quantize only the ops between the model's fake-quant ranges (qat mode's float layers).
    converter._experimental_strict_qdq = strict_qdq
    if mode != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if mode == "int8":
        calibration = _samples(model, representative_data, CALIBRATION_SAMPLES)
        converter.representative_dataset = lambda: ([sample[None]] for sample in calibration)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if io_dtype == "int8":
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    try:
        return converter.convert()
    except Exception as exc:  # the converter raises ConverterError and others; one clear message
        hint = ""
        if mode == "qat" and "must be" in str(exc) and "QI8" in str(exc):
            hint = " (activations below 8 bits cannot be converted: LiteRT kernels take 8-bit activations)"
        raise ExportError(f"TFLite conversion ({mode}) failed{hint}: {str(exc).strip().splitlines()[-1]}") from exc


def float_weight_layers(model):
    """Names of the Conv / Dense / Depthwise layers a QAT model computes in float (tfmot did not wrap them).

    These are the layers a tfmc.quantize policy leaves out.
    """
    return sorted(name for key, (name, layer) in flatbuffer.weighted_layers(model).items() if key == name)


def qat_float_model(qat):
    """The float model of a QAT model, holding the weights inference sees: each on its QAT grid.

    Every tfmot wrapper becomes the layer it wraps, with its quantized
    weights fake-quantized by their trained quantizers
    (as ``tfmc.quant.quantized_kernel``) and its other weights (biases,
    BatchNorm) as trained; the input QuantizeLayer becomes an identity.
    Converted to float32 and given to ai-edge-quantizer's dequantized-weight
    recovery, these weights are stored on exactly the QAT grid (mode
    "mixed" of a QAT model). ``qat`` is not changed.

    Args:
      qat: a tfmc.quantize (or tfmot quantize_model) model.

    Returns:
      A new float tf_keras model with the original layer names.
    """
    from tfmc._keras import keras

    def unwrap(layer):
        if type(layer).__name__ == "QuantizeLayer":
            return keras.layers.Activation("linear", name=layer.name)
        inner = getattr(layer, "layer", layer)
        config = inner.get_config()
        activation = getattr(inner, "activation", None)
        while type(activation).__name__ == "QuantizeAwareActivation":  # tfmot's wrapper of the layer's activation
            activation = activation.activation
        if type(activation).__name__ == "NoOpActivation":  # tfmot's stand-in for an activation fused later
            config["activation"] = "linear"
        elif activation is not None:
            config["activation"] = keras.activations.serialize(activation)
        return inner.__class__.from_config(config)

    float_model = keras.models.clone_model(qat, clone_function=unwrap)
    for layer, target in zip(qat.layers, float_model.layers):
        inner = getattr(layer, "layer", None)
        if inner is None or type(layer).__name__ == "QuantizeLayer":
            if layer.weights and type(layer).__name__ != "QuantizeLayer":
                target.set_weights(layer.get_weights())
            continue
        # tfmot takes the quantized weights (the kernel) out of the inner layer's list: read them from the
        # wrapper, through their trained quantizers, and the rest (biases) from the inner layer
        values = {w.name: w.numpy() for w in inner.weights}
        for weight, quantizer, quantizer_vars in layer._weight_vars:
            values[weight.name] = quantizer(tf.convert_to_tensor(weight), training=False,
                                            weights=quantizer_vars).numpy()
        target.set_weights([values[w.name] for w in target.weights])
    return float_model


def _convert_qat(model, representative_data, io_dtype):
    """The qat conversion, keeping the QAT model's float layers float wherever they sit.

    The converter quantizes every op whose inputs and outputs carry
    fake-quant ranges, so a float layer between two quantized ones comes out
    int8. Then the model is converted again in the converter's strict QDQ
    mode, which quantizes only what the fake-quant ops annotate (the float
    layer stays float with a DEQUANTIZE before and a QUANTIZE after it), and
    its UINT8 / UINT4 tensors are stored as the INT8 / INT4 that LiteRT's kernels take
    (``flatbuffer.signed_integers``).
    """
    tflite_bytes = _convert(model, "qat", representative_data, io_dtype)
    floats = set(float_weight_layers(model))
    if not floats:
        return tflite_bytes
    by_layer = flatbuffer.ops_by_layer(model, flatbuffer.weight_ops(tflite_bytes))
    if all(op.weight_type == "float32" for name in floats for op in by_layer.get(name, [])):
        return tflite_bytes  # float layers at the ends of the quantized region already stay float
    return flatbuffer.signed_integers(_convert(model, "qat", representative_data, io_dtype, strict_qdq=True))


def _quantize_mixed(model, float_bytes, policy, representative_data, recover=False):
    """ai-edge-quantizer on ``float_bytes``: the policy's layers at their planned widths, the others float.

    With ``recover`` the weights are already on their QAT grids
    (``qat_float_model``), and CONV_2D / FULLY_CONNECTED weights take
    ai-edge-quantizer's dequantized-weight recovery, which reads the grid
    back instead of quantizing again.
    """
    from ai_edge_quantizer import quantizer

    static = representative_data is not None
    by_layer = flatbuffer.ops_by_layer(model, flatbuffer.weight_ops(float_bytes))
    plans, notes = [], {}
    for name, ops in by_layer.items():
        for op in ops:
            if name not in policy:  # left out of the policy: float, as tfmc.quantize leaves it
                plans.append((op.scope, bits_lib.OpPlan("float32", False, [])))
                continue
            layer_bits = policy[name]
            plan = bits_lib.plan_op(op.op, layer_bits.weight_bits, layer_bits.activation_bits, static)
            plans.append((op.scope, plan))
            notes.setdefault(name, []).extend(n for n in plan.notes if n not in notes.get(name, []))
    recipe = bits_lib.mixed_recipe(plans, static, recover=recover)
    q = quantizer.Quantizer(bytearray(float_bytes))
    q.load_quantization_recipe(recipe)
    calibration = None
    if static:
        from tflite_bench.host import load_interpreter

        signature = load_interpreter(float_bytes).get_signature_list()
        key = next(iter(signature))
        input_name = signature[key]["inputs"][0]
        data = _samples(model, representative_data, CALIBRATION_SAMPLES)
        # ai-edge-quantizer draws its own "Running Calibration" bar on sys.stderr; calibration is a moment of the
        # export stage, which shows no bar of its own
        with contextlib.redirect_stderr(io.StringIO()):
            calibration = q.calibrate({key: [{input_name: sample[None]} for sample in data]})
    result = q.quantize(calibration, enable_progress_report=False)
    planned = {scope: plan for scope, plan in plans}
    return bytes(result.quantized_model), recipe, notes, planned


def _layer_reports(model, tflite_bytes, mode, policy, notes, planned=None):
    reports = []
    qat_floats = set(float_weight_layers(model)) if mode == "qat" else set()
    for name, ops in flatbuffer.ops_by_layer(model, flatbuffer.weight_ops(tflite_bytes)).items():
        layer_notes = list(notes.get(name, []))
        for op in ops:
            plan = (planned or {}).get(op.scope)
            if plan is not None and plan.weights != op.weight_type:
                layer_notes.append(f"{op.op} weights are {op.weight_type}, not the planned {plan.weights}")
            elif mode in ("dynamic", "int8", "qat") and op.weight_type == "float32" and (
                    policy is None or name in policy) and name not in qat_floats:
                # a layer the policy (or the QAT model) leaves out is float by request
                # The converter's dynamic-range pass leaves small weight tensors in float.
                layer_notes.append(f"{op.op} weights left float32 by the TFLite converter")
        requested = None
        if policy is not None and name in policy:
            requested = (policy[name].weight_bits, policy[name].activation_bits)
        reports.append(LayerExport(
            name=name, ops=[op.op for op in ops], weights=[op.weight_type for op in ops],
            activations=[op.output_type for op in ops], requested=requested, notes=layer_notes,
        ))
    return reports


_STORED_BITS = {"int4": 4, "int8": 8, "int16": 16}


def _qat_notes(policy, layers):
    """For a QAT export with a policy: where the stored widths differ from the requested bits."""
    notes = {}
    for layer in layers:
        if layer.name not in policy:
            continue
        w, a = policy[layer.name].weight_bits, policy[layer.name].activation_bits
        for op, stored in zip(layer.ops, layer.weights):
            if _STORED_BITS.get(stored, 0) > w:
                notes.setdefault(layer.name, []).append(
                    f"{op} weights {w} bits stored as {stored} holding {2 ** w} levels")
        if a > 8:
            notes.setdefault(layer.name, []).append(f"activations {a} bits -> int8 (the converter emits 8-bit kernels)")
    return notes


def _io_dtype_of(tflite_bytes):
    from tflite_bench.host import load_interpreter

    interpreter = load_interpreter(tflite_bytes)
    return (np.dtype(interpreter.get_input_details()[0]["dtype"]).name,
            np.dtype(interpreter.get_output_details()[0]["dtype"]).name)


def _unknown_policy_layers(model, policy):
    known = {name for name, _ in flatbuffer.weighted_layers(model).values()}
    all_names = {layer.name for layer in model.layers} | known
    return sorted(set(policy) - all_names)


def to_tflite(model, path, *, mode, policy=None, representative_data=None, io_dtype=None):
    """Convert ``model`` to a .tflite file, check it in LiteRT and write it atomically.

    Modes:
      float32: plain conversion.
      float16: weights stored as float16 (dequantized to float32 at load).
      dynamic: int8 weights, float activations quantized at run time.
      int8: full-integer post-training quantization calibrated on
        ``representative_data``; model I/O float32 unless ``io_dtype="int8"``.
      qat: convert a quantization-aware model (tfmc.quantize or tfmot's
        quantize_model) to an int8 model; ``policy`` (optional) is the
        request to report rounding against.
      mixed: from ``policy``, an ai-edge-quantizer recipe that stores int4
        weights for the CONV_2D / FULLY_CONNECTED ops of layers at 4 bits or
        fewer and int8 weights elsewhere. With ``representative_data`` the
        activations (and model I/O) are int8 (static); without, they stay
        float (dynamic range). Widths LiteRT cannot run are rounded up
        (tfmc.export.bits.plan_op) and the layer's notes say so.

    Every export is loaded in the LiteRT interpreter and its top-1 output is
    compared with the Keras model on 16 samples (the first of
    ``representative_data``, else seeded uniform noise); float32 / float16
    must agree on every sample that is not a near tie, or nothing is written.

    Args:
      model: a functional or Sequential tf_keras model with one input and one output.
      path: where to write the .tflite.
      mode: one of MODES.
      policy: a BitPolicy (modes mixed and qat).
      representative_data: float inputs, N x input shape (int8 needs it), or a
        tf.data.Dataset of them (read to the end).
      io_dtype: "float32" or "int8" model input/output (int8, qat, mixed).

    Returns:
      ExportResult: path, size_bytes, per-layer LayerExport list (what each
      layer became, read back from the flatbuffer), agreement, recipe.

    Raises:
      ExportError: a bad argument (the message names it and what was
        expected), conversion failed, or the check failed.

    Example:
      >>> policy = tfmc.BitPolicy({"conv2": (4, 8), "dw": (4, 8)})
      >>> r = to_tflite(model, "m.tflite", mode="mixed", policy=policy)  # doctest: +SKIP
      >>> r.layer("conv2").weights, r.changed["dw"]  # doctest: +SKIP
      (['int4'], ['weights 4 -> 8 bits (DEPTHWISE_CONV_2D has no int4 kernel in LiteRT)'])
    """
    representative_data = as_arrays(representative_data, "representative_data")
    _check_args(model, mode, policy, representative_data, io_dtype)
    if policy is not None:
        unknown = _unknown_policy_layers(model, policy)
        if unknown:
            raise ExportError(f"policy names layers not in model {model.name!r}: {', '.join(unknown)}")
    samples = _samples(model, representative_data, CHECK_SAMPLES)
    recipe, notes, planned = None, {}, None
    layers_of = model
    if mode == "mixed":
        qat = is_qat_model(model)
        layers_of = qat_float_model(model) if qat else model
        float_bytes = _convert(layers_of, "float32", None, None)
        try:
            tflite_bytes, recipe, notes, planned = _quantize_mixed(
                layers_of, float_bytes, policy, representative_data, recover=qat)
        except Exception as exc:  # ai-edge-quantizer raises many types; one clear message
            raise ExportError(f"ai-edge-quantizer failed on the mixed recipe: {exc}") from exc
    elif mode == "qat":
        tflite_bytes = _convert_qat(model, representative_data, io_dtype)
    else:
        tflite_bytes = _convert(model, mode, representative_data, io_dtype)
    try:
        agreement = check_lib.check_tflite(
            model, tflite_bytes, samples, exact=mode in _TIE_TOLERANCE, tie_tolerance=_TIE_TOLERANCE.get(mode, 1e-3))
        layers = _layer_reports(layers_of, tflite_bytes, mode, policy, notes, planned)
    except ExportError as exc:
        raise ExportError(f"the {mode} export of {model.name!r} failed its check: {exc}") from exc
    if mode == "qat" and policy is not None:
        for name, extra in _qat_notes(policy, layers).items():
            layers[[layer.name for layer in layers].index(name)].notes.extend(extra)
    input_dtype, output_dtype = _io_dtype_of(tflite_bytes)
    tfmc_io.write_bytes(path, tflite_bytes)
    return ExportResult(
        path=os.fspath(path), size_bytes=len(tflite_bytes), mode=mode, input_dtype=input_dtype,
        output_dtype=output_dtype, layers=layers, agreement=agreement, recipe=recipe,
    )


__all__ = ["ExportError", "ExportResult", "IO_DTYPES", "LayerExport", "MODES", "float_weight_layers", "is_qat_model",
           "qat_float_model", "tflite_converter", "to_tflite"]
