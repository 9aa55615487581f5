"""A tfmot QuantizeConfig that sets one layer's weight and activation bit widths over tfmot's 8-bit config.

tfmc builds its QAT model as tfmot's ``quantize_model`` does (the 8-bit
scheme's Conv-BatchNorm-ReLU folding and its output quantizers), so the
TFLite converter fuses it the same way. What changes per layer is only the
width of the quantizers tfmot puts there: a layer's own weights get the
policy's weight bits, and the output quantizer of the layer that produces a
policy layer's input gets that layer's activation bits (the width of the
activations it reads, as in BOPs and GMPQ).
"""
from tensorflow_model_optimization.quantization.keras import QuantizeConfig

from tfmc._keras import keras, register
from tfmc.policy import LayerBits
from tfmc.quant.quantizers import activation_quantizer, weight_quantizer

L = keras.layers

# Float layer class -> (kernel attribute, one weight range per output channel) for
# the layers a BitPolicy may name. The GMPQ search simulates Conv2D weights per
# output channel and depthwise / Dense weights per tensor; tfmc.quantize takes
# the granularity from tfmot's registry (depthwise: per last kernel axis, which
# is per tensor at depth multiplier 1).
KERNELS = {
    L.DepthwiseConv2D: ("depthwise_kernel", False),
    L.Conv2D: ("kernel", True),
    L.Dense: ("kernel", False),
}


def kernel_spec(layer):
    """(kernel attribute, per_axis) for a Conv2D, DepthwiseConv2D or Dense ``layer``; None for other layers."""
    return KERNELS.get(type(layer))


def _per_axis(quantizer):
    return bool(getattr(quantizer, "per_axis", False))


@register
class LayerBitsQuantizeConfig(QuantizeConfig):
    """tfmot's QuantizeConfig for a layer (``config``) with its quantizers set to other bit widths.

    Weights are quantized as ``config`` quantizes them (tfmot's 8-bit scheme:
    symmetric, narrow range, the last value's min / max, per output channel
    for convolutions) at ``weight_bits``; activations and outputs that
    ``config`` quantizes get ``activation_bits``: tfmot's moving average at 8
    bits and above, tfmc's LearnedRangeQuantizer below 8. At 8 / 8 every
    quantizer is ``config``'s own, so the model converts exactly as tfmot's.
    The composition follows tfmot's ``FixedQuantizeConfig``.

    Args:
      config: the tfmot QuantizeConfig to change the widths of (e.g. what
        ``Default8BitQuantizeRegistry().get_quantize_config(layer)`` returns).
      weight_bits: weight bit width, 2..16.
      activation_bits: activation / output bit width, 2..16.

    Raises:
      ValueError: a bit width outside 2..16, or ``config`` not a QuantizeConfig.

    Example:
      >>> base = tfmot.quantization.keras.default_8bit.Default8BitQuantizeRegistry().get_quantize_config(conv)
      >>> config = LayerBitsQuantizeConfig(base, weight_bits=4, activation_bits=8)
    """

    def __init__(self, config, weight_bits=8, activation_bits=8):
        if not isinstance(config, QuantizeConfig):
            raise ValueError(f"config must be a tfmot QuantizeConfig, got {type(config).__name__}")
        bits = LayerBits(weight_bits, activation_bits)
        self.config = config
        self.weight_bits = bits.weight_bits
        self.activation_bits = bits.activation_bits

    def _weight_quantizer(self, quantizer):
        if self.weight_bits == 8:
            return quantizer
        return weight_quantizer(self.weight_bits, _per_axis(quantizer))

    def _activation_quantizer(self, quantizer):
        return quantizer if self.activation_bits == 8 else activation_quantizer(self.activation_bits)

    def get_weights_and_quantizers(self, layer):
        return [(w, self._weight_quantizer(q)) for w, q in self.config.get_weights_and_quantizers(layer)]

    def get_activations_and_quantizers(self, layer):
        return [(a, self._activation_quantizer(q)) for a, q in self.config.get_activations_and_quantizers(layer)]

    def set_quantize_weights(self, layer, quantize_weights):
        self.config.set_quantize_weights(layer, quantize_weights)

    def set_quantize_activations(self, layer, quantize_activations):
        self.config.set_quantize_activations(layer, quantize_activations)

    def get_output_quantizers(self, layer):
        return [self._activation_quantizer(q) for q in self.config.get_output_quantizers(layer)]

    def get_config(self):
        return {
            "config": keras.utils.serialize_keras_object(self.config),
            "weight_bits": self.weight_bits,
            "activation_bits": self.activation_bits,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["config"] = keras.utils.deserialize_keras_object(config["config"])
        return cls(**config)

    def __eq__(self, other):
        return isinstance(other, LayerBitsQuantizeConfig) and self.get_config() == other.get_config()

    def __repr__(self):
        return f"LayerBitsQuantizeConfig({type(self.config).__name__}, w={self.weight_bits}, a={self.activation_bits})"
