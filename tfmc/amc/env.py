"""The AMC environment: one episode walks the prunable channel groups and proposes a keep ratio for each."""
import numpy as np
from tf_agents.environments import py_environment
from tf_agents.specs import array_spec
from tf_agents.trajectories import time_step as ts

from tfmc import graph as graph_lib
from tfmc.amc.budget import ActionWall, CostModel
from tfmc.cost import layer_macs
from tfmc.errors import PolicyError
from tfmc.policy import kept_channels

FEATURES = ("t", "n", "c", "h", "w", "stride", "k", "macs", "reduced", "rest", "a_prev")


def _pair(value):
    return value[0] if isinstance(value, (tuple, list)) else value


def layer_features(analysis, groups):
    """The static state of each group's step: (t, n, c, h, w, stride, k, MACs[t]), raw.

    n is the group's channel count; c, h, w, stride and k describe its first
    producer (the layer the group is named after; a dense layer has h = w =
    stride = k = 1). MACs[t] is the MACs of every layer whose outputs are the
    group's channels (producers and depthwise members).
    """
    calls = {}
    for call in analysis.calls:
        calls.setdefault(call.layer.name, call)
    rows = []
    for t, group in enumerate(groups):
        call = calls[group.name]
        layer, shape = call.layer, call.input_shapes[0]
        spatial = len(shape) == 4
        macs = sum(_call_macs(calls[name]) for name in group.members)
        rows.append([
            t, group.channels, shape[-1],
            shape[1] if spatial else 1, shape[2] if spatial else 1,
            _pair(getattr(layer, "strides", 1)) if spatial else 1,
            _pair(getattr(layer, "kernel_size", 1)) if spatial else 1,
            macs,
        ])
    return np.asarray(rows, dtype=np.float64)


def _call_macs(call):
    if graph_lib.layer_kind(call.layer) == "model":
        return 0
    return layer_macs(call.layer, call.input_shapes[0], call.output_shapes[0])


def min_max(columns):
    """Scale each column to [0, 1] over the rows (a constant column becomes 0)."""
    low, high = columns.min(axis=0), columns.max(axis=0)
    span = np.where(high > low, high - low, 1.0)
    return (columns - low) / span


class PruningEnv(py_environment.PyEnvironment):
    """A tf_agents PyEnvironment for AMC (He et al., AMC, ECCV 2018, section 3).

    Step t decides group t (prunable groups in topological order). The
    observation is the paper's 11 features (t, n, c, h, w, stride, k,
    MACs[t], reduced, rest, a_{t-1}), each in [0, 1]: the first eight
    min-max normalised over the groups, ``reduced`` and ``rest`` as fractions
    of the model's MACs (removed so far; of the groups still to decide),
    a_{t-1} the previous keep ratio (1 before the first step). The action is
    the keep ratio, clipped to [lbound, 1] and then clamped by the action
    wall, so every finished episode's policy meets the budget. After the last
    group the environment calls ``evaluate(counts)`` and returns its value as
    the reward; earlier steps return reward 0.

    Args:
      analysis: the model's ChannelGraph.
      cost_model: CostModel of the budget's metric.
      budget: a feasible Budget (see ``make_budget``).
      evaluate: function {group: kept count} -> reward (float).
      lbound: the smallest keep ratio.
      round_to: kept channel counts are multiples of this.
      fill_budget: also clamp from below (``ActionWall.min_count``), so that
        every policy spends the budget up to the rounding of the last
        group; useful when the reward only measures accuracy, where an
        unspent budget is wasted.

    Attributes:
      groups: the prunable ChannelGroups, in step order.
      last_action: the keep ratio the latest step recorded (after clipping and the wall).
      last_episode: after an episode, {"counts", "ratios", "cost", "reward"}.

    Example:
      >>> env = PruningEnv(analysis, CostModel(analysis), budget, evaluate=lambda counts: 0.9)
      >>> step = env.reset()
      >>> while not step.is_last():
      ...     step = env.step(np.array([0.5], np.float32))
    """

    def __init__(self, analysis, cost_model, budget, evaluate, lbound=0.2, round_to=8, fill_budget=False):
        super().__init__()
        self.analysis = analysis
        self.groups = [g for g in analysis.groups if g.prunable]
        if not self.groups:
            raise PolicyError(no_prunable_message(analysis))
        self.cost_model = cost_model
        self.macs = cost_model if cost_model.metric == "macs" else CostModel(analysis, "macs")
        self.budget = budget
        self.evaluate = evaluate
        self.lbound = float(lbound)
        self.round_to = int(round_to)
        self.fill_budget = bool(fill_budget)
        self.wall = ActionWall(cost_model, budget, self.groups, self.lbound, self.round_to)
        self.static = min_max(layer_features(analysis, self.groups)).astype(np.float32)
        self._observation_spec = array_spec.BoundedArraySpec((len(FEATURES),), np.float32, 0.0, 1.0, "observation")
        self._action_spec = array_spec.BoundedArraySpec((1,), np.float32, self.lbound, 1.0, "keep_ratio")
        self.last_episode = None
        self._start()

    def observation_spec(self):
        return self._observation_spec

    def action_spec(self):
        return self._action_spec

    def _start(self):
        self._t = 0
        self._counts = {}
        self._ratios = {}
        self._previous = 1.0
        self.last_action = None

    def _observation(self, t):
        later = [g.name for g in self.groups[t + 1:]]
        full = self.macs.full
        reduced = (full - self.macs.total(self._counts)) / full
        rest = self.macs.depending_on(self._counts, later) / full if later else 0.0
        dynamic = np.clip([reduced, rest, self._previous], 0.0, 1.0)
        return np.concatenate([self.static[t], dynamic.astype(np.float32)])

    def _reset(self):
        self._start()
        return ts.restart(self._observation(0))

    def _step(self, action):
        group = self.groups[self._t]
        ratio = float(np.clip(np.asarray(action, dtype=np.float64).reshape(-1)[0], self.lbound, 1.0))
        count = kept_channels(group.channels, ratio, group.granularity(self.round_to))
        allowed = self.wall.max_count(self._counts, group.name)
        needed = min(self.wall.min_count(self._counts, group.name), allowed) if self.fill_budget else 0
        if not needed <= count <= allowed:
            count = min(max(count, needed), allowed)
            ratio = max(count / group.channels, self.lbound)
        self._counts[group.name] = count
        self._ratios[group.name] = ratio
        self._previous = self.last_action = ratio
        self._t += 1
        if self._t < len(self.groups):
            return ts.transition(self._observation(self._t), reward=np.float32(0.0), discount=np.float32(1.0))
        observation = self._observation(len(self.groups) - 1)
        counts = dict(self._counts)
        reward = float(self.evaluate(counts))
        self.last_episode = {
            "counts": counts,
            "ratios": dict(self._ratios),
            "cost": self.cost_model.total(counts),
            "reward": reward,
        }
        return ts.termination(observation, reward=np.float32(reward))


def no_prunable_message(analysis):
    """Why a model has nothing to prune: every group with its reason."""
    reasons = "; ".join(f"{g.name}: {g.reason}" for g in analysis.groups)
    return f"model {analysis.model.name!r} has no prunable channel group ({reasons})"
