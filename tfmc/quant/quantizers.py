"""tfmc's QAT quantizers: tfmot's 8-bit ones at any width, and an activation range set by the first batch, then learned.

tfmot's MovingAverageQuantizer starts every activation range at [-6, 6] and
moves it by an exponential moving average with decay 0.999. A QAT run of a
few hundred steps leaves the range close to [-6, 6]: at 8 bits that costs
little, at 2-4 bits it leaves most of the levels outside the values (an
image in [0, 1] quantized to 3 bits over [-6, 6] keeps two levels). The
quantizer here sets the range from percentiles of the first batch it sees in
training and from then on learns it through the fake-quant's gradients with
respect to its min and max (values clipped below min or above max push the
bound out, as PACT does for its clip), as the GMPQ search's activation
quantizer does (Wang et al., ICCV 2021, after EdMIPS / PACT).
"""
from tensorflow_model_optimization.python.core.quantization.keras.default_8bit.default_8bit_quantizers import (
    Default8BitConvWeightsQuantizer,
)
from tensorflow_model_optimization.quantization.keras import quantizers

from tfmc._keras import keras, register, tf

# The first batch's range covers all but this share of its values at each end:
# a few outliers would otherwise spread the levels of a low-bit range thin.
INIT_TAIL = 0.001
_MIN_WIDTH = 1e-3


def _tail_values(x, tail):
    """(low, high): the k-th smallest and k-th largest value of ``x``, k = ceil(tail * size)."""
    flat = tf.reshape(tf.cast(x, tf.float32), [-1])
    count = tf.size(flat)
    k = tf.maximum(1, tf.cast(tf.math.ceil(tail * tf.cast(count, tf.float32)), tf.int32))
    high = tf.reduce_min(tf.math.top_k(flat, k, sorted=False).values)
    low = -tf.reduce_min(tf.math.top_k(-flat, k, sorted=False).values)
    return low, high


@register
class LearnedRangeQuantizer(quantizers.Quantizer):
    """Asymmetric per-tensor fake-quant whose range starts at the first training batch and is then trained.

    The range always holds 0 (TFLite requires it): min is used as min(min, 0)
    and max as at least min + 1e-3. Before any training step the range is
    tfmot's [-6, 6], so an untrained QAT model behaves as tfmot's does.

    Args:
      num_bits: bit width, 2..16.
      init_tail: share of the first batch's values left outside the range at
        each end (0 gives the batch's min and max).

    Raises:
      ValueError: ``num_bits`` outside 2..16 or ``init_tail`` outside [0, 0.5).

    Example:
      >>> config_quantizer = LearnedRangeQuantizer(4)
    """

    def __init__(self, num_bits, init_tail=INIT_TAIL):
        _check_bits(num_bits)
        if not 0 <= init_tail < 0.5:
            raise ValueError(f"init_tail must be in [0, 0.5), got {init_tail!r}")
        self.num_bits = num_bits
        self.init_tail = float(init_tail)

    def build(self, tensor_shape, name, layer):
        return {
            "min_var": layer.add_weight(name + "_min", initializer=keras.initializers.Constant(-6.0), trainable=True),
            "max_var": layer.add_weight(name + "_max", initializer=keras.initializers.Constant(6.0), trainable=True),
            "initialized": layer.add_weight(name + "_initialized", initializer="zeros", trainable=False),
        }

    def __call__(self, inputs, training, weights, **kwargs):
        min_var, max_var = weights["min_var"], weights["max_var"]
        if training:
            flag = weights["initialized"]
            low, high = tf.cond(
                flag > 0.5,
                lambda: (tf.identity(min_var), tf.identity(max_var)),
                lambda: _tail_values(inputs, self.init_tail),
            )
            # The first step takes the batch's range (decay 0), later steps keep the
            # trained one (decay 1). assign_moving_average rather than a plain
            # assign under tf.cond: it merges the replicas' values under a
            # tf.distribute strategy.
            decay = tf.where(flag > 0.5, 1.0, 0.0)
            assign_min = tf.__internal__.train.assign_moving_average(
                min_var, tf.stop_gradient(low), decay, zero_debias=False)
            assign_max = tf.__internal__.train.assign_moving_average(
                max_var, tf.stop_gradient(high), decay, zero_debias=False)
            assign_flag = tf.__internal__.train.assign_moving_average(flag, 1.0, 0.0, zero_debias=False)
            with tf.control_dependencies([assign_min, assign_max, assign_flag]):
                inputs = tf.identity(inputs)
        low = tf.minimum(min_var, 0.0)
        high = tf.maximum(max_var, low + _MIN_WIDTH)
        return tf.quantization.fake_quant_with_min_max_vars(inputs, low, high, num_bits=self.num_bits)

    def get_config(self):
        return {"num_bits": self.num_bits, "init_tail": self.init_tail}

    def __eq__(self, other):
        return isinstance(other, LearnedRangeQuantizer) and self.get_config() == other.get_config()

    def __ne__(self, other):
        return not self.__eq__(other)


@register
class ConvWeightsQuantizer(Default8BitConvWeightsQuantizer):
    """tfmot's per-output-channel Conv2D / DepthwiseConv2D weight quantizer at any bit width.

    tfmot's ``Default8BitConvWeightsQuantizer`` fixes 8 bits; this one takes
    ``num_bits`` and is otherwise the same (symmetric, narrow range, the last
    value's min / max per output channel, variables built as tfmot does).

    Args:
      num_bits: bit width, 2..16.

    Raises:
      ValueError: ``num_bits`` outside 2..16.
    """

    def __init__(self, num_bits=8, per_axis=True, symmetric=True, narrow_range=True):
        _check_bits(num_bits)
        super().__init__()
        self.num_bits = num_bits


def _check_bits(num_bits):
    if isinstance(num_bits, bool) or not isinstance(num_bits, int) or not 2 <= num_bits <= 16:
        raise ValueError(f"num_bits must be an integer in 2..16, got {num_bits!r}")


def weight_quantizer(num_bits, per_axis):
    """The weight quantizer of tfmot's 8-bit scheme, at ``num_bits``.

    Args:
      num_bits: bit width, 2..16.
      per_axis: one range per output channel (tfmot's Conv2D / DepthwiseConv2D
        quantizer) instead of one per tensor (its Dense quantizer).
    """
    if per_axis:
        return ConvWeightsQuantizer(num_bits)
    _check_bits(num_bits)
    return quantizers.LastValueQuantizer(num_bits=num_bits, per_axis=False, symmetric=True, narrow_range=True)


def activation_quantizer(num_bits, input_layer=False):
    """The activation quantizer for ``num_bits``: tfmot's at 8 bits and above, LearnedRangeQuantizer below.

    At 8 bits the quantizer is exactly tfmot's (a moving average for layer
    outputs, all values seen for the model input), so an 8-bit model converts
    as tfmot's does. Below 8 bits tfmot's moving average from [-6, 6] is too
    slow to reach the data's range (see LearnedRangeQuantizer).

    Args:
      num_bits: bit width, 2..16.
      input_layer: the quantizer of the model input (tfmot's QuantizeLayer).
    """
    _check_bits(num_bits)
    if num_bits < 8:
        return LearnedRangeQuantizer(num_bits)
    kind = quantizers.AllValuesQuantizer if input_layer else quantizers.MovingAverageQuantizer
    return kind(num_bits=num_bits, per_axis=False, symmetric=False, narrow_range=False)
