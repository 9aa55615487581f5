"""Map requested bit widths to what LiteRT executes, and write the ai-edge-quantizer recipe for them.

LiteRT's integer kernels take 8-bit activations (int16 only model-wide),
int8 weights everywhere and int4 weights on CONV_2D and FULLY_CONNECTED
(ai-edge-quantizer's supported-op table; DEPTHWISE_CONV_2D has no int4
kernel). A width LiteRT cannot execute is rounded up to the next one it can.
"""
import dataclasses
import re

INT4_OPS = ("CONV_2D", "FULLY_CONNECTED")
_ALGORITHM = "min_max_uniform_quantize"
# ai-edge-quantizer's algorithm that reads integer weights back from weights already on a symmetric grid,
# and the ops it covers (its algorithm_manager; DEPTHWISE_CONV_2D is not among them).
_RECOVERY = "dequantized_weight_recovery"
_RECOVERABLE = ("CONV_2D", "FULLY_CONNECTED")


@dataclasses.dataclass
class OpPlan:
    """What one weight op is quantized to: weight type and whether its activations are integer."""

    weights: str  # "int4", "int8" or "float32"
    integer_activations: bool
    notes: list


def plan_op(op, weight_bits, activation_bits, static):
    """Round (weight_bits, activation_bits) for ``op`` to what LiteRT executes.

    Args:
      op: the TFLite op name, e.g. "CONV_2D".
      weight_bits, activation_bits: the policy's request.
      static: True when activations are quantized with calibration data
        (int8), False for dynamic range (activations stay float at rest).

    Returns:
      OpPlan; ``notes`` says in words each change from the request.

    Example:
      >>> plan_op("DEPTHWISE_CONV_2D", 4, 8, static=True).weights
      'int8'
    """
    notes = []
    float_activations = False
    if static:
        if activation_bits < 8:
            notes.append(f"activations {activation_bits} -> 8 bits (LiteRT integer kernels take 8-bit activations)")
        elif activation_bits > 8:
            float_activations = True
            notes.append(
                f"activations {activation_bits} bits -> float32 (an int8 model cannot mix in int16 activations per layer)"
            )
    elif activation_bits != 8:
        notes.append(
            f"activations {activation_bits} bits not applied: without representative data they stay float32 "
            "and are quantized to 8 bits at run time"
        )
    if weight_bits > 8 or float_activations:
        if weight_bits > 8:
            notes.append(f"weights {weight_bits} bits -> float32 (LiteRT has no integer weights wider than 8 bits)")
        return OpPlan("float32", False, notes)
    if weight_bits <= 4 and op in INT4_OPS:
        if weight_bits < 4:
            notes.append(f"weights {weight_bits} -> 4 bits (int4 is LiteRT's narrowest weight type)")
        return OpPlan("int4", static, notes)
    if weight_bits <= 4:
        notes.append(f"weights {weight_bits} -> 8 bits ({op} has no int4 kernel in LiteRT)")
    elif weight_bits < 8:
        notes.append(f"weights {weight_bits} -> 8 bits (LiteRT stores 5-7 bit weights as int8)")
    return OpPlan("int8", static, notes)


def _op_config(weight_bits, static):
    config = {
        "weight_tensor_config": {"num_bits": weight_bits, "symmetric": True, "granularity": "CHANNELWISE", "dtype": "INT"},
        "compute_precision": "INTEGER",
        "explicit_dequantize": False,
    }
    if static:
        config["activation_tensor_config"] = {
            "num_bits": 8, "symmetric": False, "granularity": "TENSORWISE", "dtype": "INT",
        }
    return config


def scope_regex(scope):
    """The ai-edge-quantizer regex that matches exactly the op whose output tensors are ``scope``.

    ai-edge-quantizer matches a recipe's regex against the op's output
    tensor names joined by ";" with a trailing ";" (tfl_flatbuffer_utils.get_op_scope).
    """
    return "^" + re.escape(scope) + ";$"


def mixed_recipe(plans, static, recover=False):
    """An ai-edge-quantizer recipe (list of dicts): int8 for every op, then one entry per planned op.

    Args:
      plans: [(op scope, OpPlan)] for the weight ops (float32 plans stay float).
      static: int8 activations (needs calibration) or dynamic range.
      recover: the float weights are already on a symmetric grid (QAT):
        CONV_2D / FULLY_CONNECTED ops read it back with ai-edge-quantizer's
        dequantized-weight recovery instead of quantizing again.

    Returns:
      The recipe, ready for ``Quantizer.load_quantization_recipe``; later
      entries override earlier ones for the ops they match.
    """
    recipe = [{"regex": ".*", "operation": "*", "algorithm_key": _ALGORITHM, "op_config": _op_config(8, static)}]
    for scope, plan in plans:
        if plan.weights == "float32":
            entries = [("*", {"algorithm_key": "no_quantize", "op_config": {"compute_precision": "FLOAT"}})]
        else:
            config = _op_config(int(plan.weights[3:]), static)
            entries = [("*", {"algorithm_key": _ALGORITHM, "op_config": config})]
            if recover:
                entries += [(op, {"algorithm_key": _RECOVERY, "op_config": config}) for op in _RECOVERABLE]
        recipe += [{"regex": scope_regex(scope), "operation": op, **entry} for op, entry in entries]
    return recipe
