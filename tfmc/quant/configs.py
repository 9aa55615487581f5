"""tfmot QuantizeConfigs whose weight and activation bit widths are set per layer.

A layer's *activation bits* are the width of the activations it reads (its
input), as in the BOPs count (MACs x weight bits x activation bits) and in
GMPQ / EdMIPS. tfmot's wrapper can only quantize a layer's weights, its
``activation`` attribute and its outputs, so the quantizable layers here carry
one more activation hook, ``input_activation`` (the identity), that runs on
the input before the operation; the config hands that hook an activation
quantizer and the wrapper swaps it for a fake-quant.
"""
from tensorflow_model_optimization.quantization.keras import QuantizeConfig, quantizers

from tfmc._keras import keras, register
from tfmc.policy import LayerBits
from tfmc.quant.quantizers import LearnedRangeQuantizer

L = keras.layers


class _InputHook:
    """Adds ``input_activation`` (identity until tfmot replaces it) before the layer's op."""

    kernel_attr = "kernel"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.input_activation = keras.activations.get("linear")

    def call(self, inputs):
        # tfmot's wrapper sets the layer's kernel attribute to this replica's
        # quantized kernel and then calls the layer. Under a multi-replica
        # tf.distribute strategy the input quantizer's range update is a
        # cross-replica merge, during which the other replicas' wrappers run
        # and overwrite that shared attribute; the op would then use another
        # replica's kernel and this replica's kernel would get no gradient
        # ("Values to regroup had different lengths"). Put ours back first.
        kernel = getattr(self, self.kernel_attr)
        inputs = self.input_activation(inputs)
        setattr(self, self.kernel_attr, kernel)
        return super().call(inputs)


@register
class QuantizableConv2D(_InputHook, L.Conv2D):
    """Conv2D whose input passes through ``input_activation`` (a quantizer under QAT)."""


@register
class QuantizableDepthwiseConv2D(_InputHook, L.DepthwiseConv2D):
    """DepthwiseConv2D whose input passes through ``input_activation`` (a quantizer under QAT)."""

    kernel_attr = "depthwise_kernel"


@register
class QuantizableDense(_InputHook, L.Dense):
    """Dense whose input passes through ``input_activation`` (a quantizer under QAT)."""


# Float layer class -> (quantizable class, kernel attribute, per-output-channel weights).
# Conv2D weights get one range per output channel, as LiteRT stores them; depthwise and
# dense weights one range per tensor, as tfmot's 8-bit default does.
QUANTIZABLE = {
    L.DepthwiseConv2D: (QuantizableDepthwiseConv2D, "depthwise_kernel", False),
    L.Conv2D: (QuantizableConv2D, "kernel", True),
    L.Dense: (QuantizableDense, "kernel", False),
}


def quantizable_class(layer):
    """The (quantizable class, kernel attribute, per_axis) for ``layer``, or None if unsupported."""
    for float_class, entry in QUANTIZABLE.items():
        if type(layer) is float_class or type(layer) is entry[0]:
            return entry
    return None


@register
class LayerBitsQuantizeConfig(QuantizeConfig):
    """Fake-quantize one layer's kernel to ``weight_bits`` and its input to ``activation_bits``.

    Weights: symmetric, narrow range, the last value's min/max (per output
    channel when ``per_axis``), as tfmot's 8-bit scheme does. Input
    activations: asymmetric, per tensor, with a range that the first training
    batch sets and training then learns (``LearnedRangeQuantizer``; tfmot's
    moving average from [-6, 6] is too slow for 2-4 bits on short runs).

    Args:
      weight_bits: kernel bit width, 2..16.
      activation_bits: input activation bit width, 2..16.
      kernel_attr: the layer attribute that holds the kernel ("kernel" or
        "depthwise_kernel").
      per_axis: one quantization range per output channel instead of per tensor.

    Raises:
      ValueError: a bit width outside 2..16, or an unknown kernel attribute.

    Example:
      >>> config = LayerBitsQuantizeConfig(4, 8)
      >>> layer = tfmot.quantization.keras.quantize_annotate_layer(QuantizableConv2D(8, 3), config)
    """

    def __init__(self, weight_bits, activation_bits, kernel_attr="kernel", per_axis=True):
        bits = LayerBits(weight_bits, activation_bits)
        if kernel_attr not in ("kernel", "depthwise_kernel"):
            raise ValueError(f"kernel_attr must be 'kernel' or 'depthwise_kernel', got {kernel_attr!r}")
        self.weight_bits = bits.weight_bits
        self.activation_bits = bits.activation_bits
        self.kernel_attr = kernel_attr
        self.per_axis = bool(per_axis)

    def weight_quantizer(self):
        return quantizers.LastValueQuantizer(
            num_bits=self.weight_bits, per_axis=self.per_axis, symmetric=True, narrow_range=True
        )

    def activation_quantizer(self):
        return LearnedRangeQuantizer(self.activation_bits)

    def get_weights_and_quantizers(self, layer):
        return [(getattr(layer, self.kernel_attr), self.weight_quantizer())]

    def get_activations_and_quantizers(self, layer):
        if not hasattr(layer, "input_activation"):
            raise ValueError(
                f"layer {layer.name!r} ({type(layer).__name__}) has no input_activation hook; "
                "build it with tfmc.quantize, which swaps in the Quantizable* classes"
            )
        return [(layer.input_activation, self.activation_quantizer())]

    def set_quantize_weights(self, layer, quantize_weights):
        if len(quantize_weights) != 1:
            raise ValueError(f"expected 1 quantized weight for {layer.name!r}, got {len(quantize_weights)}")
        setattr(layer, self.kernel_attr, quantize_weights[0])

    def set_quantize_activations(self, layer, quantize_activations):
        if len(quantize_activations) != 1:
            raise ValueError(f"expected 1 quantized activation for {layer.name!r}, got {len(quantize_activations)}")
        layer.input_activation = quantize_activations[0]

    def get_output_quantizers(self, layer):
        return []

    def get_config(self):
        return {
            "weight_bits": self.weight_bits,
            "activation_bits": self.activation_bits,
            "kernel_attr": self.kernel_attr,
            "per_axis": self.per_axis,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __eq__(self, other):
        return isinstance(other, LayerBitsQuantizeConfig) and self.get_config() == other.get_config()

    def __repr__(self):
        return f"LayerBitsQuantizeConfig(w={self.weight_bits}, a={self.activation_bits}, per_axis={self.per_axis})"
