"""Read a .tflite flatbuffer: which ops hold each Keras layer's weights, and their stored types."""
import dataclasses

from tfmc._keras import keras
from tfmc.layers import handler_for

# Ops whose second input is a weight tensor tfmc reports on.
WEIGHT_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


def _becomes_weight_op(layer):
    """Whether ``layer``'s handler maps it to one of WEIGHT_OPS (tfmc.layers: ``litert_ops``)."""
    return bool(set(handler_for(layer).litert_ops) & set(WEIGHT_OPS))


def _schema():
    from ai_edge_litert import schema_py_generated

    return schema_py_generated


def _names(enum_class):
    return {value: name for name, value in vars(enum_class).items() if not name.startswith("_")}


@dataclasses.dataclass
class WeightOp:
    """One CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED op of a .tflite model."""

    index: int
    op: str  # e.g. "CONV_2D"
    weight_type: str  # type the weights are stored in: "float32", "float16", "int8", "int4"
    output_type: str  # type of the op's output activations
    scope: str  # the op's output tensor names joined by ";" (ai-edge-quantizer's op scope, without the final ";")
    tensor_names: list  # weight tensor and output tensor names, for matching to layers


def weight_ops(tflite_bytes):
    """The weight-holding ops of the main subgraph, in execution order.

    The stored weight type follows a DEQUANTIZE feeding the op (float16 and
    weight-only exports keep their weights behind one).
    """
    schema = _schema()
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(bytes(tflite_bytes), 0))
    op_names, type_names = _names(schema.BuiltinOperator), _names(schema.TensorType)
    subgraph = model.subgraphs[0]
    tensors = subgraph.tensors

    def op_name(op):
        code = model.operatorCodes[op.opcodeIndex]
        return op_names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "CUSTOM")

    producer = {out: op for op in subgraph.operators for out in op.outputs}
    found = []
    for index, op in enumerate(subgraph.operators):
        name = op_name(op)
        if name not in WEIGHT_OPS:
            continue
        weight = op.inputs[1]
        stored = weight
        source = producer.get(weight)
        if source is not None and op_name(source) == "DEQUANTIZE":
            stored = source.inputs[0]
        outputs = [tensors[i].name.decode() for i in op.outputs]
        found.append(WeightOp(
            index=index,
            op=name,
            weight_type=type_names[tensors[stored].type].lower(),
            output_type=type_names[tensors[op.outputs[0]].type].lower(),
            scope=";".join(outputs),
            tensor_names=[tensors[weight].name.decode(), tensors[stored].name.decode()] + outputs,
        ))
    return found


def op_names(tflite_bytes):
    """The builtin op names of the main subgraph, in execution order, e.g. ["QUANTIZE", "CONV_2D", ...]."""
    schema = _schema()
    model = schema.Model.GetRootAsModel(bytes(tflite_bytes), 0)
    names, subgraph = _names(schema.BuiltinOperator), model.Subgraphs(0)
    found = []
    for index in range(subgraph.OperatorsLength()):
        code = model.OperatorCodes(subgraph.Operators(index).OpcodeIndex())
        found.append(names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "CUSTOM"))
    return found


def weighted_layers(model):
    """{name as it appears in tensor names: (Keras layer name, layer)} for conv/dense/depthwise/separable layers.

    Nested models are searched; a tfmot QuantizeWrapper appears under its
    own name (``quant_conv1``) and is reported as the layer it wraps.
    """
    found = {}
    for layer in model.layers:
        inner = getattr(layer, "layer", None)
        if isinstance(layer, keras.Model) and inner is None:
            found.update(weighted_layers(layer))
        elif inner is not None and _becomes_weight_op(inner):
            found[layer.name] = (inner.name, inner)
        elif _becomes_weight_op(layer):
            found[layer.name] = (layer.name, layer)
    return found


def ops_by_layer(model, ops):
    """{Keras layer name: [WeightOp, ...]}, matching tensor-name path segments to layer names.

    Tensor names look like ``model/conv1/BiasAdd;model/bn1/FusedBatchNormV3``:
    the converter fuses ops and joins their names with ";". The weight
    tensor's names are tried before the output's, because fused outputs also
    name the neighbouring BatchNormalization and activation layers.

    Raises:
      ValueError: a weight op matched no layer of the model.
    """
    layers = weighted_layers(model)
    result = {}
    for op in ops:
        owner = None
        for tensor_name in op.tensor_names:
            for part in tensor_name.split(";"):
                for segment in part.split("/")[:-1] or part.split("/"):
                    if segment in layers:
                        owner = layers[segment][0]
                        break
                if owner:
                    break
            if owner:
                break
        if owner is None:
            raise ValueError(f"could not tell which layer the {op.op} op #{op.index} ({op.scope!r}) belongs to")
        result.setdefault(owner, []).append(op)
    return result


def _signed_values(data, bits, count):
    """Stored unsigned ``bits``-wide values (UINT8 bytes, or UINT4 nibbles packed low first) as signed, moved down."""
    import numpy as np

    raw = np.asarray(data, np.uint8)
    if bits == 8:
        return (raw.astype(np.int16) - 128).astype(np.int8).view(np.uint8)
    nibbles = np.stack([raw & 0x0F, raw >> 4], -1).reshape(-1)[:count].astype(np.int16) - 8
    nibbles = (nibbles & 0x0F).astype(np.uint8)
    if len(nibbles) % 2:
        nibbles = np.append(nibbles, np.uint8(0))
    return nibbles[0::2] | (nibbles[1::2] << 4)


def signed_integers(tflite_bytes):
    """``tflite_bytes`` with every UINT8 / UINT4 tensor stored as INT8 / INT4, holding the same real numbers.

    The TFLite converter's strict QDQ mode (``_experimental_strict_qdq``)
    keeps the float ops a QAT model leaves float, but writes its quantized
    tensors unsigned (UINT8, and UINT4 for weights of 4 bits or fewer),
    which LiteRT's per-channel integer kernels refuse. Moving each tensor's
    stored values and zero points down by half its range (128, or 8) gives
    the signed tensor of the same real values (``scale * (q - zero_point)``
    is unchanged); symmetric weights (zero point 128 or 8) become signed
    weights with zero point 0, as the kernels expect. INT32 biases keep
    their values (their zero point is 0).
    """
    import numpy as np
    from tensorflow.lite.tools import flatbuffer_utils

    types = _schema().TensorType
    signed = {types.UINT8: (types.INT8, 8), types.UINT4: (types.INT4, 4)}
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(tflite_bytes))
    moved = set()
    for subgraph in model.subgraphs:
        for tensor in subgraph.tensors:
            if tensor.type not in signed:
                continue
            tensor.type, bits = signed[tensor.type]
            quantization = tensor.quantization
            if quantization is not None and quantization.zeroPoint is not None:
                quantization.zeroPoint = [int(z) - 2 ** (bits - 1) for z in quantization.zeroPoint]
            buffer = model.buffers[tensor.buffer]
            if tensor.buffer not in moved and buffer.data is not None and len(buffer.data):
                buffer.data = _signed_values(buffer.data, bits, int(np.prod(tensor.shape)))
                moved.add(tensor.buffer)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))
