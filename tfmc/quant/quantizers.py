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
from tensorflow_model_optimization.python.core.keras import compat as tf_compat
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


@register
class StoredGridWeightsQuantizer(quantizers.LastValueQuantizer):
    """tfmot's symmetric last-value weight quantizer below 8 bits, in a form the TFLite converter stores exactly.

    The converter stores a fake-quantized weight of 4 bits or fewer as INT4
    and one of 5-7 bits as INT8, with the scale ``max / 7`` (``max / 127``)
    of the fake-quant's range whatever its bit width: a 3-bit grid
    {-3..3} x s lands on INT4 levels {-7, -5, -2, 0, 2, 5, 7} x 3s/7 and
    the file no longer holds the trained weights. So the weights are clipped
    to the ``num_bits`` grid's ends (+-L s, L = 2^(num_bits-1) - 1, s = max|w| / L
    per output channel or tensor, as tfmot computes it) and fake-quantized at
    the stored width over +-(2^(stored-1) - 1) s: the same ``num_bits`` levels,
    on a grid the converter writes with scale s and integers in -L..L.

    Args:
      num_bits: bit width, 2..7.
      per_axis: one range per output channel (last kernel axis) instead of per tensor.

    Raises:
      ValueError: ``num_bits`` outside 2..7.
    """

    def __init__(self, num_bits, per_axis=False, symmetric=True, narrow_range=True):
        if isinstance(num_bits, bool) or not isinstance(num_bits, int) or not 2 <= num_bits <= 7:
            raise ValueError(f"num_bits must be an integer in 2..7, got {num_bits!r}")
        super().__init__(num_bits=num_bits, per_axis=per_axis, symmetric=True, narrow_range=True)

    @property
    def stored_bits(self):
        return 4 if self.num_bits <= 4 else 8

    def build(self, tensor_shape, name, layer):
        shape = (tensor_shape[-1],) if self.per_axis else ()
        return {
            bound: layer.add_weight(f"{name}_{bound[:3]}", shape=shape, trainable=False,
                                    initializer=keras.initializers.Constant(sign * 6.0))
            for bound, sign in (("min_var", -1), ("max_var", 1))
        }

    def __call__(self, inputs, training, weights, **kwargs):
        max_var, min_var = weights["max_var"], weights["min_var"]
        if training:
            axes = list(range(inputs.shape.rank - 1)) if self.per_axis else None
            high = tf.stop_gradient(tf.reduce_max(tf.abs(inputs), axis=axes))
            # tf_compat.assign, as tfmot's LastValueQuantize, also works in a replica context.
            max_var = tf_compat.assign(max_var, high)
            min_var = tf_compat.assign(min_var, -high)
        scale = max_var / (2 ** (self.num_bits - 1) - 1)
        levels = scale * (2 ** (self.num_bits - 1) - 1)
        stored = scale * (2 ** (self.stored_bits - 1) - 1)
        clipped = tf.clip_by_value(inputs, -levels, levels)
        fake_quant = (tf.quantization.fake_quant_with_min_max_vars_per_channel if self.per_axis
                      else tf.quantization.fake_quant_with_min_max_vars)
        return fake_quant(clipped, -stored, stored, num_bits=self.stored_bits, narrow_range=True)


def weight_quantizer(num_bits, per_axis):
    """The weight quantizer of tfmot's 8-bit scheme at ``num_bits``: symmetric, narrow range, last value.

    Below 8 bits it is StoredGridWeightsQuantizer, whose grid the TFLite
    converter writes exactly (INT4 at 4 bits or fewer, INT8 at 5-7).

    Args:
      num_bits: bit width, 2..16.
      per_axis: one range per output channel (tfmot's Conv2D / DepthwiseConv2D
        quantizer) instead of one per tensor (its Dense quantizer).
    """
    _check_bits(num_bits)
    if num_bits < 8:
        return StoredGridWeightsQuantizer(num_bits, per_axis)
    if per_axis:
        return ConvWeightsQuantizer(num_bits)
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
