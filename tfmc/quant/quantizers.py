"""The activation quantizer of tfmc's QAT: range set by the first training batch, then learned.

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
        if isinstance(num_bits, bool) or not isinstance(num_bits, int) or not 2 <= num_bits <= 16:
            raise ValueError(f"num_bits must be an integer in 2..16, got {num_bits!r}")
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
