"""The AMC reward: a policy scored on the reward set by the masked model, optionally under a tf.distribute strategy."""
import collections
import math
import time
import warnings

import numpy as np

from tfmc._keras import keras, tf
from tfmc.amc.masked import MaskedModel
from tfmc.data import as_arrays, check_finite, check_labels
from tfmc.errors import DataError, UsageError
from tfmc.train import make_strategy

REWARDS = ("acc", "acc_flops", "acc_params")
# The smallest reward or re-scoring set, per replica: with fewer images one image moves the accuracy by more
# than 3 points, more than the gaps between the policies a search compares.
BATCH = 32

# forward_seconds: wall time of the reward set's forward pass when the policy was evaluated now (the part of an
# episode that costs what a plain evaluation costs: the masked clone has the unpruned model's shapes), else 0
Score = collections.namedtuple("Score", "value accuracy macs params was_nan evaluated forward_seconds")


def reward_name(reward):
    """The name a reward is recorded under; raises UsageError for an unknown built-in name."""
    if callable(reward):
        return f"callable:{getattr(reward, '__module__', '')}.{getattr(reward, '__qualname__', type(reward).__name__)}"
    if reward not in REWARDS:
        raise UsageError(f"unknown reward {reward!r}; expected one of {', '.join(REWARDS)} or a function "
                         "(y_true, logits) -> float")
    return reward


def labelled_set(data, what, replicas=1):
    """(x float32, y) from (x, y) arrays, a tfmc.data.Dataset (its validation split) or a tf.data.Dataset.

    Raises:
      DataError: not a labelled set; empty, mismatched, non-finite or bad
        labels; fewer than one batch (``BATCH`` images per replica); or one
        class only (every policy would score the same accuracy on it).
    """
    data = as_arrays(data, what, labels=True)
    if hasattr(data, "x_val") and hasattr(data, "y_val"):
        x, y = np.asarray(data.x_val, np.float32), np.asarray(data.y_val)
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = (np.asarray(v) for v in data)
        if len(x) != len(y) or not len(x):
            raise DataError(f"{what} must be non-empty (x, y) of equal length, got {len(x)} images and {len(y)} labels")
        x = x.astype(np.float32)
    else:
        raise DataError(f"{what} must be (x, y) arrays or a tfmc.data.Dataset (its validation split is the reward set)")
    check_finite(None, f"{what} images", x)
    check_labels(None, f"{what} labels", y)
    smallest = BATCH * replicas
    if len(y) < smallest:
        raise DataError(f"{what} holds {len(y)} images, fewer than one batch ({smallest}: {BATCH} per replica x "
                        f"{replicas}); give at least {smallest}")
    classes = np.unique(y)
    if len(classes) < 2:
        raise DataError(f"{what} holds one class only (label {classes[0]:g}); every policy would score alike on it: "
                        "give images of several classes")
    return x, y


class _ReplicatedForward:
    """The masked clone's forward pass under a tf.distribute strategy: a replica model takes its weights per policy."""

    def __init__(self, model, strategy):
        self.strategy = strategy
        with strategy.scope():
            self.replica = keras.models.clone_model(model)
        self._step = tf.function(lambda x: self.replica(x, training=False), autograph=False)

    def predict(self, weights, x, batch_size=256):
        self.replica.set_weights(weights)
        global_batch = batch_size * self.strategy.num_replicas_in_sync
        dataset = self.strategy.experimental_distribute_dataset(
            tf.data.Dataset.from_tensor_slices(x).batch(global_batch))
        out = []
        for batch in dataset:
            logits = self.strategy.run(self._step, args=(batch,))
            out.extend(part.numpy() for part in self.strategy.experimental_local_results(logits))
        return np.concatenate([part for part in out if len(part)])


class RewardEvaluator:
    """Scores a policy ({group: kept count}) on the reward set; a policy scored before is not scored again.

    The logits come from one reusable ``MaskedModel`` (least-squares refitted
    when calibration images are given), so the reward is that of the model
    ``tfmc.prune(model, policy, calib_data)`` builds. Under a strategy other
    than the default, the refit stays on one device and the reward set runs
    through a replica of the model on every device of the strategy.

    Args:
      model: the original model (never changed).
      analysis: its ChannelGraph.
      reward: a name of ``REWARDS`` or a function (y_true, logits) -> float.
      x, y: the reward set.
      macs_model, params_model: CostModels of MACs and parameters.
      calib: calibration images or None.
      strategy: a tf.distribute.Strategy, its name, or None (one device).
      importance: the channel criterion of the masked model (``tfmc.prune.importance``; default L1).
    """

    def __init__(self, model, analysis, reward, x, y, macs_model, params_model, calib=None, strategy=None,
                 importance=None):
        self.reward = reward
        self.x, self.y = x, y
        self.macs_model, self.params_model = macs_model, params_model
        # the sampling seed and channel criterion of tfmc.prune: the reward is its model's
        self.masked = MaskedModel(model, analysis, calib, importance=importance)
        strategy = make_strategy(strategy)
        self._replicated = None
        if strategy is not tf.distribute.get_strategy():
            self._replicated = _ReplicatedForward(model, strategy)
        self.memo = {}
        self._finite = []

    def logits(self, x):
        """Logits of the model pruned to the policy applied last."""
        if self._replicated is None:
            return self.masked.predict(x)
        return self._replicated.predict(self.masked.clone.get_weights(), x)

    def _value(self, y, logits, macs, params):
        accuracy = float(np.mean(np.argmax(logits, axis=-1) == y))
        if callable(self.reward):
            return float(self.reward(y, logits)), accuracy
        if self.reward == "acc":
            return accuracy, accuracy
        return -(1.0 - accuracy) * math.log(macs if self.reward == "acc_flops" else params), accuracy

    def _evaluate(self, counts, x, y):
        self.masked.apply(counts)
        macs, params = self.macs_model.total(counts), self.params_model.total(counts)
        started = time.perf_counter()
        logits = self.logits(x)
        seconds = time.perf_counter() - started
        value, accuracy = self._value(y, logits, macs, params)
        return (value, accuracy, macs, params), seconds

    def score(self, counts, episode):
        """The Score of a policy on the reward set; a NaN reward gets the worst so far, with a warning."""
        seconds = 0.0
        if callable(self.reward):  # a user's function may keep state: call it every time
            (value, accuracy, macs, params), seconds = self._evaluate(counts, self.x, self.y)
            fresh = True
        else:
            key = policy_key(counts)
            fresh = key not in self.memo
            if fresh:
                self.memo[key], seconds = self._evaluate(counts, self.x, self.y)
            value, accuracy, macs, params = self.memo[key]
        was_nan = not math.isfinite(value)
        if was_nan:
            worst = self._worst(macs, params)
            warnings.warn(f"AMC episode {episode}: the reward was {value}; it gets the worst reward "
                          f"{worst:.6g} and the search goes on", RuntimeWarning, stacklevel=3)
            value = worst
        self._finite.append(value)
        return Score(value, accuracy, macs, params, was_nan, fresh, seconds)

    def rescore(self, counts, x, y):
        """(reward, accuracy) of a policy on another labelled set (no memo)."""
        (value, accuracy, _, _), _ = self._evaluate(counts, x, y)
        return value, accuracy

    def resume(self, history):
        """Learn what a resumed search's earlier rows scored (the memo and the worst reward)."""
        for row in history:
            self._finite.append(row["reward"])
            if not callable(self.reward):
                self.memo[policy_key(row["channels"])] = row["reward"], row["accuracy"], row["macs"], row["params"]

    def _worst(self, macs, params):
        """The lowest reward seen so far, and no more than the built-in reward at accuracy 0."""
        if callable(self.reward):
            return min(self._finite) if self._finite else 0.0
        floor = {"acc": 0.0, "acc_flops": -math.log(macs), "acc_params": -math.log(params)}[self.reward]
        return min(self._finite + [floor])

    def restore(self):
        """Put the masked clone back to the unpruned model."""
        self.masked.restore()


def policy_key(counts):
    """The memo key of a policy given as {group: kept count} (also as read back from history.jsonl)."""
    return tuple(sorted(counts.items()))
