"""Bit operations (BOPs) and packed weight size of a model under a BitPolicy."""
import math

from tfmc import cost
from tfmc.errors import PolicyError
from tfmc.layers import handler_for
from tfmc.policy import BitPolicy

FLOAT_BITS = 32


def takes_bits(layer):
    """Whether a BitPolicy may give ``layer`` bit widths: its handler says (Conv2D, DepthwiseConv2D, Dense)."""
    return handler_for(layer).takes_bits(layer)


def check_policy_layers(model, policy):
    """Raise ValueError unless every layer ``policy`` names is a layer of ``model`` that takes bit widths.

    The layers that take bits are one set, the handlers' (``takes_bits``):
    the ones tfmc.quantize and the GMPQ search can quantize.

    Args:
      model: a functional or Sequential tf_keras model.
      policy: a BitPolicy.

    Raises:
      ValueError: naming the unknown layers (and the layers that may be named),
        or a named layer of another kind.
    """
    layers = {layer.name: layer for layer in model.layers}
    unknown = [name for name in policy if name not in layers]
    if unknown:
        allowed = [n for n, layer in layers.items() if takes_bits(layer)]
        raise PolicyError(f"the bit policy names layers not in model {model.name!r}: {unknown}; its layers with bits are {allowed}")
    for name in policy:
        if not takes_bits(layers[name]):
            raise PolicyError(
                f"layer {name!r} is a {type(layers[name]).__name__}; bit widths apply to Conv2D, "
                "DepthwiseConv2D and Dense layers"
            )


def bops_of(macs_by_name, policy):
    """BOPs of per-layer MACs under ``policy``: sum of MACs x weight bits x activation bits.

    Layers that ``policy`` leaves out count as float, 32 x 32 bits.
    """
    total = 0
    for name, macs in macs_by_name.items():
        if name in policy:
            bits = policy[name]
            total += macs * bits.weight_bits * bits.activation_bits
        else:
            total += macs * FLOAT_BITS * FLOAT_BITS
    return int(total)


def count_bops(model, policy=None):
    """Bit operations of one inference at batch 1 under ``policy``.

    BOPs of a layer = MACs x weight bits x activation bits (Wang et al.,
    "Generalizable Mixed-Precision Quantization via Attribution Rank
    Preservation", ICCV 2021); layers the policy leaves out are float and
    count 32 x 32. Layers without multiplies count zero.

    Args:
      model: a functional or Sequential tf_keras model with a fixed input size.
      policy: a BitPolicy (or a dict it accepts); None counts all layers as float.

    Returns:
      The BOPs as an int.

    Raises:
      ValueError: the policy names a layer the model lacks, or a layer without bits.

    Example:
      >>> tfmc.count_bops(model, tfmc.BitPolicy({"conv1": (4, 8)}))
    """
    policy = _as_policy(policy)
    check_policy_layers(model, policy)
    return bops_of(cost.macs_by_layer(model), policy)


def uniform_policy(model, weight_bits, activation_bits):
    """The BitPolicy giving every layer of ``model`` that takes bits the same bit widths."""
    names = [layer.name for layer in model.layers if takes_bits(layer)]
    return BitPolicy({name: (weight_bits, activation_bits) for name in names})


def packed_size_bytes(model, policy=None):
    """Bytes the model's parameters take when packed at their bit widths (not a file size).

    Each kernel of a layer in ``policy`` counts its weight bits per parameter;
    every other parameter (biases, BatchNormalization, float layers) counts 32
    bits. This is parameters x bits / 8, rounded up; a real .tflite adds
    graph structure and stores sub-8-bit weights only where the runtime can.
    """
    policy = _as_policy(policy)
    check_policy_layers(model, policy)
    bits = 0
    for layer in model.layers:
        for weight in layer.weights:
            count = int(math.prod(weight.shape))
            is_kernel = weight.name.split("/")[-1].split(":")[0] in ("kernel", "depthwise_kernel")
            if layer.name in policy and is_kernel:
                bits += count * policy[layer.name].weight_bits
            else:
                bits += count * FLOAT_BITS
    return (bits + 7) // 8


def _as_policy(policy):
    if policy is None:
        return BitPolicy({})
    if isinstance(policy, BitPolicy):
        return policy
    return BitPolicy(policy)
