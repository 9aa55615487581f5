"""Keep-ratio schedules for pruning during training: how many channels a group keeps at each step.

They mirror tfmot's sparsity schedules (ConstantSparsity, PolynomialDecay)
with keep ratio in place of sparsity: a keep ratio of 1 - s keeps what a
sparsity of s leaves. A schedule knows no group: it maps (step, the group's
target keep ratio) to the keep ratio in force, so one schedule serves every
group of a model. Schedules round-trip through get_config / from_config
and are registered, so a masked model saves and loads with its schedule.
"""
import abc
import numbers

from tfmc._keras import keras, register
from tfmc.errors import UsageError


def _check_step(owner, what, value, allow_never=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or (value < 0 and not (
            allow_never and value == -1)):
        expected = "an integer >= 0, or -1 for never" if allow_never else "an integer >= 0"
        raise UsageError(f"{owner}: {what} must be {expected}, got {value!r}")
    return int(value)


class KeepRatioSchedule(abc.ABC):
    """Base of the schedules: the keep ratio in force at a step, and the steps at which masks are re-selected.

    Masks are re-selected inside [begin_step, end_step] (end_step -1: no end)
    every ``every`` steps counted from begin_step, and always at end_step so
    the target is reached exactly there.
    """

    def __init__(self, begin_step=0, end_step=-1):
        name = type(self).__name__
        self.begin_step = _check_step(name, "begin_step", begin_step)
        self.end_step = _check_step(name, "end_step", end_step, allow_never=True)
        if self.end_step != -1 and self.end_step < self.begin_step:
            raise UsageError(f"{name}: the schedule ends (end_step={self.end_step}) before it begins "
                             f"(begin_step={self.begin_step})")

    @abc.abstractmethod
    def keep_ratio(self, step, target):
        """The keep ratio in force at ``step`` for a group whose final keep ratio is ``target``."""

    def updates_at(self, step, every=1):
        """Whether masks are re-selected at ``step`` when the callback updates every ``every`` steps."""
        if step < self.begin_step or (self.end_step != -1 and step > self.end_step):
            return False
        return (step - self.begin_step) % every == 0 or step == self.end_step

    def get_config(self):
        return {"begin_step": self.begin_step, "end_step": self.end_step}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __eq__(self, other):
        return type(other) is type(self) and other.get_config() == self.get_config()

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


@register
class ConstantKeepRatio(KeepRatioSchedule):
    """Keep the target ratio from ``begin_step`` on (all channels before).

    Args:
      begin_step: the first step at which channels are dropped.
      end_step: the last step at which masks are re-selected (-1: re-select
        until training ends).

    Raises:
      UsageError: a step that is not an integer >= 0 (end_step may be -1),
        or end_step before begin_step.

    Example:
      >>> schedule = ConstantKeepRatio(begin_step=100)
      >>> schedule.keep_ratio(99, 0.5), schedule.keep_ratio(100, 0.5)
      (1.0, 0.5)
    """

    def keep_ratio(self, step, target):
        return 1.0 if step < self.begin_step else float(target)


@register
class PolynomialDecay(KeepRatioSchedule):
    """Lower the keep ratio from 1.0 to the target between begin_step and end_step.

    ``keep = target + (1 - target) * (1 - progress) ** power`` with
    ``progress = (step - begin_step) / (end_step - begin_step)``, tfmot's
    PolynomialDecay with keep ratio for sparsity: channels go fast at first,
    while the network has the most slack, and slowly near the target.

    Args:
      begin_step: the step at which channels start to go.
      end_step: the step at which the target is reached (after begin_step).
      power: the exponent of the decay (3, tfmot's default).

    Raises:
      UsageError: a step that is not an integer >= 0, end_step not after
        begin_step, or a power that is not a number > 0.

    Example:
      >>> schedule = PolynomialDecay(begin_step=0, end_step=100)
      >>> schedule.keep_ratio(50, 0.5)
      0.5625
    """

    def __init__(self, begin_step, end_step, power=3):
        super().__init__(begin_step, end_step)
        if self.end_step in (-1, self.begin_step):
            raise UsageError(f"PolynomialDecay: end_step must be after begin_step ({self.begin_step}), "
                             f"got {self.end_step}")
        if isinstance(power, bool) or not isinstance(power, numbers.Real) or not power > 0:
            raise UsageError(f"PolynomialDecay: power must be a number > 0, got {power!r}")
        self.power = float(power)

    def keep_ratio(self, step, target):
        if step <= self.begin_step:
            return 1.0
        progress = min(1.0, (step - self.begin_step) / (self.end_step - self.begin_step))
        return float(target) + (1.0 - float(target)) * (1.0 - progress) ** self.power

    def get_config(self):
        return {**super().get_config(), "power": self.power}


def serialize(schedule):
    """A schedule as a JSON-ready dict (class name and config)."""
    return keras.utils.serialize_keras_object(schedule)


def deserialize(config):
    """The schedule a ``serialize`` dict describes.

    Raises:
      UsageError: the dict names no keep-ratio schedule.
    """
    schedule = keras.utils.deserialize_keras_object(config, module_objects=globals())
    if not isinstance(schedule, KeepRatioSchedule):
        raise UsageError(f"not a keep-ratio schedule: {config!r}")
    return schedule
