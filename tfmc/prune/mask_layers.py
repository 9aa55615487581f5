"""ChannelMask: the Keras layer that carries one channel group's keep ratio and mask during training.

One ChannelMask serves one channel group and is called on every tensor
the group's consumers read (tfmc.prunable places it). Zeroing a channel
there is the same as removing it: a consumer is linear in its input, so
``consumer(x * mask)`` is the consumer with the rows of the dropped inputs
zeroed, which tfmc.prune.masking shows equal to the pruned model. Zeroing
earlier would not be: a BatchNormalization between a producer and its
consumers adds beta back to a zeroed channel.
"""
import numpy as np

from tfmc._keras import keras, register, tf
from tfmc.errors import UsageError
from tfmc.layers import ChannelScale, register_layer
from tfmc.policy import _check_ratio, kept_channels
from tfmc.prune import schedules


@register
class ChannelMask(keras.layers.Layer):
    """Multiply the channels of one group by its 0/1 mask, wherever the group's consumers read them.

    The mask and the schedule step are non-trainable weights, so they save
    and load with the model; the keep ratio, ``round_to`` and schedule are
    in the config.

    Args:
      group: the channel group's name (its first producer).
      channels: how many channels the group has.
      keep_ratio: the target keep ratio in (0, 1], reached when the schedule ends.
      round_to: kept channel counts are multiples of this (as tfmc.prune rounds them).
      schedule: a KeepRatioSchedule (or its serialised dict); default
        ConstantKeepRatio().

    Raises:
      PolicyError: a keep ratio outside (0, 1].
      UsageError: a schedule that is not a KeepRatioSchedule.

    Example:
      >>> mask = masked.get_layer("conv1_channel_mask")
      >>> mask.group, mask.channels, mask.keep_ratio, int(mask.mask.sum())
      ('conv1', 16, 0.5, 8)
    """

    def __init__(self, group, channels, keep_ratio=1.0, round_to=1, schedule=None, **kwargs):
        super().__init__(**kwargs)
        self.group = str(group)
        self.channels = int(channels)
        self.keep_ratio = keep_ratio
        self.round_to = int(round_to)
        if isinstance(schedule, dict):
            schedule = schedules.deserialize(schedule)
        schedule = schedules.ConstantKeepRatio() if schedule is None else schedule
        if not isinstance(schedule, schedules.KeepRatioSchedule):
            raise UsageError(f"schedule must be a tfmc keep-ratio schedule (ConstantKeepRatio, PolynomialDecay), "
                             f"got {type(schedule).__name__}")
        self.schedule = schedule

    @property
    def keep_ratio(self):
        """The target keep ratio of the group (settable; takes effect at the next mask update)."""
        return self._keep_ratio

    @keep_ratio.setter
    def keep_ratio(self, value):
        self._keep_ratio = _check_ratio(self.group, value)

    def build(self, input_shape):
        # ONLY_FIRST_REPLICA: the callback writes these in cross-replica context; replicas never write them
        self.mask_variable = self.add_weight(
            name="mask", shape=(self.channels,), initializer="ones", trainable=False,
            aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        self.step_variable = self.add_weight(
            name="step", shape=(), dtype="int64", initializer="zeros", trainable=False,
            aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        super().build(input_shape)

    def call(self, inputs, channel_index=None):
        """``inputs`` times the mask; ``channel_index`` says which group channel each input channel is.

        Without ``channel_index`` the input holds the group's channels in
        order. Otherwise it has one entry per input channel: the group's
        channel index, or -1 for a channel of another group (left as is).
        Concatenations and depthwise multipliers make such inputs.
        """
        mask = tf.cast(self.mask_variable, inputs.dtype)
        if channel_index is not None:
            index = [i if i >= 0 else self.channels for i in channel_index]
            mask = tf.gather(tf.concat([mask, tf.ones([1], mask.dtype)], 0), index)
        return inputs * mask

    def compute_output_shape(self, input_shape):
        return input_shape

    @property
    def mask(self):
        """The current mask: 1.0 for a kept channel, 0.0 for a dropped one (a numpy copy)."""
        return np.asarray(self.mask_variable.numpy(), dtype=np.float32)

    @property
    def step(self):
        """Training steps taken under UpdateMasks (saved with the model)."""
        return int(self.step_variable.numpy())

    def scheduled_count(self, step):
        """How many channels the group keeps at ``step`` under its schedule."""
        return kept_channels(self.channels, self.schedule.keep_ratio(step, self.keep_ratio), self.round_to)

    def set_mask(self, keep):
        """Keep the channels where ``keep`` (bool or 0/1, one per channel) is true."""
        keep = np.asarray(keep).astype(bool)
        if keep.shape != (self.channels,):
            raise UsageError(f"mask of group {self.group!r} needs {self.channels} entries, got shape {keep.shape}")
        self.mask_variable.assign(keep.astype(np.float32))

    def get_config(self):
        return {
            **super().get_config(),
            "group": self.group,
            "channels": self.channels,
            "keep_ratio": self.keep_ratio,
            "round_to": self.round_to,
            "schedule": schedules.serialize(self.schedule),
        }


register_layer(ChannelMask, ChannelScale())  # tfmc.graph sees channels through the mask
