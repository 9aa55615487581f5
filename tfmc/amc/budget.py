"""Resource budgets for AMC: a policy's MACs, parameters or latency from channel counts alone, and the action wall.

A policy is costed without building anything: each layer's cost is a
function of how many input and output channels it keeps, and those counts
follow from the kept count of every channel group through the channel maps
of ``tfmc.graph``. Counts do not depend on which channels a group keeps, so
the first k channels of each group stand for any k.
"""
import dataclasses
import math
import numbers

import numpy as np

from tfmc import cost as cost_lib
from tfmc import graph as graph_lib
from tfmc.errors import BudgetError
from tfmc.layers import NestedModel, handler_for
from tfmc.policy import kept_channels

METRICS = ("macs", "params", "latency")
_UNITS = {"macs": "MACs", "params": "parameters", "latency": "ms"}


class _KeptCount:
    """How many positions of one channel map survive, given {group: kept count}."""

    def __init__(self, analysis, channel_map, prunable):
        self.fixed = 0
        indices = {}
        for group, index in analysis.map_groups(channel_map):
            if group in prunable:
                indices.setdefault(group, []).append(index)
            else:
                self.fixed += 1
        self.parts = []
        for g, i in indices.items():
            i = np.sort(np.asarray(i))
            # the usual map holds a group's first len(i) channels: then k kept channels leave min(k, len(i))
            self.parts.append((g, len(i), None if np.array_equal(i, np.arange(len(i))) else i))
        self.groups = frozenset(indices)

    def __call__(self, counts):
        kept = self.fixed
        for group, size, indices in self.parts:
            k = counts.get(group)
            if k is None:
                kept += size
            elif indices is None:
                kept += min(k, size)
            else:
                kept += int(np.searchsorted(indices, k))
        return kept


class CostModel:
    """The MACs, parameters or latency of a model as a function of per-group kept channel counts.

    Args:
      analysis: the model's ChannelGraph.
      metric: "macs", "params" or "latency".
      latency: for "latency", a function (layer name, in_channels,
        out_channels) -> milliseconds, or an object with such a
        ``latency_ms`` method (a ``tflite_bench.lut.LatencyTable``). Conv,
        dense, depthwise and separable layers are costed through it; every
        other layer costs nothing.

    Example:
      >>> macs = CostModel(ChannelGraph(model), "macs")
      >>> macs.total({}) == tfmc.count_macs(model)
      True
      >>> macs.total({"conv1": 8})  # conv1 keeps 8 channels, every other group all of its own
    """

    def __init__(self, analysis, metric="macs", latency=None):
        if metric not in METRICS:
            raise BudgetError(f"unknown cost metric {metric!r}; expected one of {', '.join(METRICS)}")
        if metric == "latency":
            if latency is None:
                raise BudgetError("a latency budget needs per-layer latencies: a tflite_bench LatencyTable or a "
                                 "function (layer name, in_channels, out_channels) -> ms")
            latency = getattr(latency, "latency_ms", latency)
        self.metric = metric
        self.analysis = analysis
        prunable = {g.name for g in analysis.groups if g.prunable}
        calls_per_layer = {}
        for call in analysis.calls:
            calls_per_layer[call.layer.name] = calls_per_layer.get(call.layer.name, 0) + 1
        self.constant = 0
        self.terms = []  # (cost of (kin, kout), kept-count of input, kept-count of output, groups it depends on)
        seen = set()
        for call in analysis.calls:
            layer = call.layer
            if metric == "params" and layer.name in seen:
                continue  # a layer's weights count once, however often it is called
            seen.add(layer.name)
            fn = self._cost_function(call, handler_for(layer), latency)
            if fn is None:
                continue
            role = analysis.layer_io(layer.name) if calls_per_layer[layer.name] == 1 else None
            if role is None or role["kind"] == "opaque" or not role["in"]:
                self.constant += fn(call.input_shapes[0][-1], call.output_shapes[0][-1])
                continue
            kin = _KeptCount(analysis, role["in"][0], prunable)
            kout = _KeptCount(analysis, role["out"][0], prunable)
            if not (kin.groups or kout.groups):
                self.constant += fn(call.input_shapes[0][-1], call.output_shapes[0][-1])
                continue
            self.terms.append((_memoized(fn), kin, kout, kin.groups | kout.groups))
        self.full = self.total({})

    def _cost_function(self, call, handler, latency):
        layer = call.layer
        if self.metric == "macs":
            if isinstance(handler, NestedModel):
                macs = cost_lib.count_macs(layer)
                return lambda kin, kout: macs
            return lambda kin, kout: cost_lib.layer_macs(layer, call.input_shapes[0], call.output_shapes[0], kin, kout)
        if self.metric == "params":
            if not layer.weights:
                return None
            return lambda kin, kout: handler.params(layer, kin, kout)
        if not handler.latency:
            return None

        def layer_ms(kin, kout):
            try:
                return float(latency(layer.name, kin, kout))
            except KeyError:
                raise BudgetError(f"the latency table has no entry for layer {layer.name!r}") from None

        return layer_ms

    def total(self, counts):
        """Cost of the model when group ``g`` keeps ``counts[g]`` channels (groups not named keep all)."""
        return self.constant + sum(fn(kin(counts), kout(counts)) for fn, kin, kout, _ in self.terms)

    def depending_on(self, counts, groups):
        """Cost, under ``counts``, of the layers whose channels depend on any of ``groups``."""
        groups = set(groups)
        return sum(fn(kin(counts), kout(counts)) for fn, kin, kout, deps in self.terms if deps & groups)

    def independent_of(self, counts, group):
        """Cost, under ``counts``, of everything that does not change with ``group``'s count."""
        return self.constant + sum(fn(kin(counts), kout(counts)) for fn, kin, kout, deps in self.terms
                                   if group not in deps)


def _memoized(fn):
    cache = {}

    def cached(kin, kout):
        key = (kin, kout)
        if key not in cache:
            cache[key] = fn(kin, kout)
        return cache[key]

    return cached


def keep_candidates(channels, lbound, round_to=8):
    """Every kept count ``kept_channels(channels, a, round_to)`` reachable with a in [lbound, 1], ascending.

    The count only changes where ``channels * a`` crosses a half-integer, so
    those points and the two ends give every value.
    """
    ratios = [lbound, 1.0] + [(j + 0.5) / channels for j in range(channels)]
    return sorted({kept_channels(channels, a, round_to) for a in ratios if lbound <= a <= 1.0})


def group_candidates(group, lbound, round_to=8):
    """``keep_candidates`` of ``group``, whose counts are rounded to its granularity (blocks of grouped convs)."""
    return keep_candidates(group.channels, lbound, group.granularity(round_to))


@dataclasses.dataclass
class Budget:
    """A resource budget: the limit in the metric's units, and what the model spans.

    Attributes:
      metric: "macs", "params" or "latency".
      target: what the user asked for (a fraction of the original for MACs and
        parameters, milliseconds for latency).
      limit: the budget in the metric's units.
      full: the unpruned model's cost.
      minimum: the cost with every prunable group at ``lbound``.
    """

    metric: str
    target: float
    limit: float
    full: float
    minimum: float

    def describe(self, value):
        """``value`` in words, with its share of the original."""
        amount = f"{value:,.3f} ms" if self.metric == "latency" else f"{int(value):,} {_UNITS[self.metric]}"
        return f"{amount} ({value / self.full:.3f} of the original)"


def check_fraction(name, value):
    """``value`` as a float strictly between 0 and 1, or a ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 < float(value) < 1.0:
        raise BudgetError(f"{name} must be in (0, 1) (a fraction of the original), got {value!r}")
    return float(value)


def make_budget(cost_model, target, lbound, round_to=8):
    """The Budget of ``target`` for ``cost_model``, refused when no policy can meet it.

    Args:
      cost_model: a CostModel.
      target: a fraction in (0, 1) of the original MACs / parameters, or
        milliseconds for a latency CostModel.
      lbound: the smallest keep ratio any group may get.
      round_to: kept counts are multiples of this.

    Returns:
      A Budget.

    Raises:
      ValueError: a target out of range, or one below what every prunable
        group at ``lbound`` gives (the message names that smallest value).

    Example:
      >>> make_budget(CostModel(ChannelGraph(model), "macs"), 0.5, lbound=0.2).limit
    """
    metric = cost_model.metric
    option = {"macs": "target_macs", "params": "target_params", "latency": "target_latency_ms"}[metric]
    if metric == "latency":
        if isinstance(target, bool) or not isinstance(target, numbers.Real) or not 0.0 < float(target) < math.inf:
            raise BudgetError(f"{option} must be a positive number of milliseconds, got {target!r}")
        limit = float(target)
    else:
        limit = check_fraction(option, target) * cost_model.full
    floor = {g.name: group_candidates(g, lbound, round_to)[0] for g in cost_model.analysis.groups if g.prunable}
    minimum = cost_model.total(floor)
    budget = Budget(metric, float(target), limit, cost_model.full, minimum)
    if minimum > limit:
        smallest = f"{minimum:.3f}" if metric == "latency" else f"{math.ceil(minimum / cost_model.full * 1000) / 1000:.3f}"
        raise BudgetError(
            f"{option}={target} cannot be met: with every prunable group at lbound={lbound} the model still costs "
            f"{budget.describe(minimum)}; the smallest achievable {option} is {smallest}"
        )
    return budget


class ActionWall:
    """Clamp each action so that the finished policy fits the budget (He et al., AMC, ECCV 2018, section 3.4).

    Before group t's count is fixed, every later group is assumed pruned to
    ``lbound``; group t then gets the largest count it asked for that keeps
    the total within the limit. ``min_count`` is the opposite wall, for
    searches that must spend the whole budget: the count below which the
    later groups, even kept whole, could not bring the total up to it.
    Working on the discrete counts (after rounding to ``round_to``) rather
    than on the continuous ratio means the rounding can never push a policy
    over the budget.

    Args:
      cost_model: a CostModel.
      budget: a feasible Budget for it.
      groups: the prunable ChannelGroups in decision order.
      lbound: the smallest keep ratio.
      round_to: kept counts are multiples of this.
    """

    def __init__(self, cost_model, budget, groups, lbound, round_to=8):
        self.cost_model = cost_model
        self.budget = budget
        self.candidates = {g.name: group_candidates(g, lbound, round_to) for g in groups}
        self.floor = {name: c[0] for name, c in self.candidates.items()}

    def max_count(self, decided, group):
        """The largest count of ``group`` that fits, given ``decided`` counts and the rest at lbound."""
        counts = dict(self.floor)
        counts.update(decided)
        candidates = self.candidates[group]
        rest = self.cost_model.independent_of(counts, group)  # the same for every candidate: cost it once
        lo, hi = 0, len(candidates) - 1  # candidates[lo] always fits: the budget was checked feasible
        while lo < hi:
            mid = (lo + hi + 1) // 2
            counts[group] = candidates[mid]
            if rest + self.cost_model.depending_on(counts, (group,)) <= self.budget.limit:
                lo = mid
            else:
                hi = mid - 1
        counts[group] = candidates[lo]
        while lo > 0 and self.cost_model.total(counts) > self.budget.limit:  # float sums in another order
            lo -= 1
            counts[group] = candidates[lo]
        return candidates[lo]

    def min_count(self, decided, group):
        """The smallest count of ``group`` with which the policy can still spend the whole budget.

        Every later group is assumed kept whole; below the returned count
        even that would leave part of the limit unused. Returns the largest
        candidate when no count reaches the limit (the caller caps it with
        ``max_count``).
        """
        counts = dict(decided)  # groups not named keep all their channels
        candidates = self.candidates[group]
        rest = self.cost_model.independent_of(counts, group)
        lo, hi = 0, len(candidates) - 1
        while lo < hi:
            mid = (lo + hi) // 2
            counts[group] = candidates[mid]
            if rest + self.cost_model.depending_on(counts, (group,)) >= self.budget.limit:
                hi = mid
            else:
                lo = mid + 1
        return candidates[lo]
