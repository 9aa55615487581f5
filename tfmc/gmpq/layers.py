"""Mixed-precision Keras layers: one shared float kernel, learnable logits over candidate bit widths.

Each layer computes the relaxed layer of EdMIPS / GMPQ (Wang et al.,
"Generalizable Mixed-Precision Quantization via Attribution Rank
Preservation", ICCV 2021):

    x~ = sum_i softmax(alpha_a)_i * Q_act(x; b_i)
    W~ = sum_j softmax(alpha_w)_j * Q_w(W; b_j)
    y  = op(x~, W~)

so the cost is one convolution (or matmul) per layer whatever the number of
candidates. Rounding passes gradients straight through.
"""
from tfmc._keras import keras, register, tf
from tfmc.bops import FLOAT_BITS
from tfmc.errors import UsageError

L = keras.layers


def ste_round(x):
    """Round to the nearest integer; the gradient passes through as if it were the identity."""
    return x + tf.stop_gradient(tf.round(x) - x)


def quantize_weights(kernel, bits, per_axis):
    """Symmetric, narrow-range linear quantization of ``kernel`` to ``bits``.

    The clip threshold is the largest magnitude (per output channel, the last
    axis, when ``per_axis``), so ``bits`` give 2^(bits-1)-1 levels each side of 0.
    FLOAT_BITS (32) is the float candidate: the kernel as it is.
    """
    if bits == FLOAT_BITS:
        return kernel
    axes = list(range(kernel.shape.rank - 1)) if per_axis else None
    threshold = tf.stop_gradient(tf.reduce_max(tf.abs(kernel), axis=axes, keepdims=per_axis))
    scale = tf.maximum(threshold, 1e-8) / float(2 ** (bits - 1) - 1)
    return ste_round(kernel / scale) * scale


def quantize_activations(x, bits, clip, signed):
    """Linear quantization of activations to ``bits`` inside a learnable clip (PACT).

    Unsigned: clip to [0, clip], 2^bits levels. Signed (inputs that can be
    negative): clip to [-clip, clip], 2^(bits-1)-1 levels each side. The clip
    gets a gradient from the values it cuts (PACT) and from the step size.
    FLOAT_BITS (32) is the float candidate: ``x`` as it is.
    """
    if bits == FLOAT_BITS:
        return x
    if signed:
        clipped = tf.minimum(tf.maximum(x, -clip), clip)
        levels = float(2 ** (bits - 1) - 1)
    else:
        clipped = tf.minimum(tf.nn.relu(x), clip)
        levels = float(2 ** bits - 1)
    scale = clip / levels
    return ste_round(clipped / scale) * scale


def _check_candidates(what, bits):
    bits = tuple(int(b) for b in bits)
    if not bits or any(not (2 <= b <= 16 or b == FLOAT_BITS) for b in bits) or list(bits) != sorted(set(bits)):
        raise UsageError(f"{what} must be distinct increasing bit widths in 2..16 (or {FLOAT_BITS}: float), got {bits}")
    return bits


class _MixedPrecision:
    """Architecture logits over candidate bits, and the relaxed input and kernel they weight.

    Mixed into a Keras layer class (before it in the bases); ``per_axis_default``
    says whether that layer's weights get one range per output channel.
    """

    per_axis_default = False

    def __init__(self, *args, weight_bits=(2, 3, 4, 6), activation_bits=(2, 3, 4, 6), signed_input=False,
                 activation_clip=6.0, per_axis=None, **kwargs):
        super().__init__(*args, **kwargs)
        self._init_mixed(weight_bits, activation_bits, signed_input, activation_clip,
                         self.per_axis_default if per_axis is None else per_axis)

    def build(self, input_shape):
        super().build(input_shape)
        self._build_mixed()

    def get_config(self):
        return {**super().get_config(), **self._mixed_config()}

    def _init_mixed(self, weight_bits, activation_bits, signed_input, activation_clip, per_axis):
        self.weight_bits = _check_candidates("weight_bits", weight_bits)
        self.activation_bits = _check_candidates("activation_bits", activation_bits)
        self.signed_input = bool(signed_input)
        self.activation_clip_init = float(activation_clip)
        if not self.activation_clip_init > 0:
            raise UsageError(f"activation_clip must be positive, got {activation_clip}")
        self.per_axis = bool(per_axis)

    def _build_mixed(self):
        # The logits start equal: every candidate is as likely as the others.
        self.alpha_weight = self.add_weight(
            name="alpha_weight", shape=(len(self.weight_bits),), initializer="zeros", trainable=True
        )
        self.alpha_activation = self.add_weight(
            name="alpha_activation", shape=(len(self.activation_bits),), initializer="zeros", trainable=True
        )
        self.activation_clip = self.add_weight(
            name="activation_clip", shape=(),
            initializer=keras.initializers.Constant(self.activation_clip_init), trainable=True,
        )

    @property
    def architecture_variables(self):
        """The bit logits (alpha_w, alpha_a): stepped by their own optimizer."""
        return [self.alpha_weight, self.alpha_activation]

    def bit_probabilities(self):
        """(softmax(alpha_w), softmax(alpha_a)) as tensors."""
        return tf.nn.softmax(self.alpha_weight), tf.nn.softmax(self.alpha_activation)

    def expected_bits(self):
        """(E[b_w], E[b_a]) under the softmax of the logits, differentiable in the logits."""
        pw, pa = self.bit_probabilities()
        return (
            tf.reduce_sum(pw * tf.constant(self.weight_bits, tf.float32)),
            tf.reduce_sum(pa * tf.constant(self.activation_bits, tf.float32)),
        )

    def mixed_input(self, x):
        _, pa = self.bit_probabilities()
        clip = tf.maximum(self.activation_clip, 1e-3)
        return tf.add_n([
            pa[i] * quantize_activations(x, b, clip, self.signed_input) for i, b in enumerate(self.activation_bits)
        ])

    def mixed_kernel(self, kernel):
        pw, _ = self.bit_probabilities()
        return tf.add_n([pw[j] * quantize_weights(kernel, b, self.per_axis) for j, b in enumerate(self.weight_bits)])

    def _mixed_config(self):
        return {
            "weight_bits": list(self.weight_bits),
            "activation_bits": list(self.activation_bits),
            "signed_input": self.signed_input,
            "activation_clip": self.activation_clip_init,
            "per_axis": self.per_axis,
        }


@register
class MixedConv2D(_MixedPrecision, L.Conv2D):
    """Conv2D over a softmax-weighted mix of quantized inputs and kernels (EdMIPS / GMPQ).

    Args (besides Conv2D's):
      weight_bits: candidate kernel bit widths (increasing), default (2, 3, 4, 6).
      activation_bits: candidate input bit widths (increasing), default (2, 3, 4, 6).
      signed_input: whether the input can be negative (symmetric activation quantizer).
      activation_clip: the initial learnable clip of the input.
      per_axis: one weight range per output channel (default True).

    Example:
      >>> layer = MixedConv2D(16, 3, weight_bits=(4, 8), activation_bits=(8,))
    """

    per_axis_default = True

    def convolution_op(self, inputs, kernel):
        return super().convolution_op(self.mixed_input(inputs), self.mixed_kernel(kernel))


@register
class MixedDepthwiseConv2D(_MixedPrecision, L.DepthwiseConv2D):
    """DepthwiseConv2D over a softmax-weighted mix of quantized inputs and kernels (see MixedConv2D)."""

    def call(self, inputs):
        outputs = keras.backend.depthwise_conv2d(
            self.mixed_input(inputs),
            self.mixed_kernel(self.depthwise_kernel),
            strides=self.strides,
            padding=self.padding,
            dilation_rate=self.dilation_rate,
            data_format=self.data_format,
        )
        if self.use_bias:
            outputs = keras.backend.bias_add(outputs, self.bias, data_format=self.data_format)
        return self.activation(outputs) if self.activation is not None else outputs


@register
class MixedDense(_MixedPrecision, L.Dense):
    """Dense over a softmax-weighted mix of quantized inputs and kernels (see MixedConv2D)."""

    def call(self, inputs):
        x, kernel = self.mixed_input(inputs), self.mixed_kernel(self.kernel)
        if x.shape.rank == 2:
            outputs = tf.matmul(x, kernel)
        else:
            outputs = tf.tensordot(x, kernel, [[x.shape.rank - 1], [0]])
        if self.use_bias:
            outputs = tf.nn.bias_add(outputs, self.bias)
        return self.activation(outputs) if self.activation is not None else outputs


# Float layer class -> its mixed-precision counterpart (exact classes only:
# subclasses such as SeparableConv2D have other kernels and stay float).
MIXED_CLASSES = {L.Conv2D: MixedConv2D, L.DepthwiseConv2D: MixedDepthwiseConv2D, L.Dense: MixedDense}
