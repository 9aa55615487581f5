"""Which channels a group keeps: L1 norm of the weights that consume them.

He et al. (AMC, ECCV 2018, section 3.3) keep the channels whose consuming
weights have the largest L1 norm; for a coupled group the norms of every
consumer are summed, so one decision serves all of them.
"""
import numpy as np

from tfmc.errors import PolicyError
from tfmc.layers import handler_for
from tfmc.policy import PrunePolicy, _check_ratio, kept_channels


def consumer_input_norm(layer, p=1):
    """Lp norm of ``layer``'s weights per input position (summed over outputs and window), by its handler."""
    return handler_for(layer).input_norm(layer, layer.get_weights(), p)


def consumer_importance(analysis, score):
    """{prunable group: per-channel sum over its consumers of ``score(layer)`` (per input position)}."""
    model = analysis.model
    result = {}
    for group in analysis.groups:
        if not group.prunable:
            continue
        importance = np.zeros(group.channels)
        for name in group.consumers:
            role = analysis.layer_io(name)
            values = score(model.get_layer(name))
            for pos, (g, i) in enumerate(analysis.map_groups(role["in"][0])):
                if g == group.name:
                    importance[i] += values[pos]
        result[group.name] = importance
    return result


def channel_importance(analysis):
    """{prunable group name: L1 importance of each of its channels}."""
    return consumer_importance(analysis, consumer_input_norm)


def select_channels(analysis, kept_counts, importance=None):
    """Boolean keep masks: each group keeps its ``kept_counts[name]`` most important channels.

    Ties go to the lower channel index, so the choice is deterministic. A
    group with ``block`` > 1 (it feeds a grouped convolution) keeps whole
    aligned blocks, ranked by the sum of their channels' importance.
    """
    importance = channel_importance(analysis) if importance is None else importance
    masks = {}
    for name, count in kept_counts.items():
        scores = np.asarray(importance[name])
        block = analysis.group(name).block
        if int(count) % block:
            raise PolicyError(f"channel group {name!r} is pruned in blocks of {block} channels; "
                              f"{int(count)} channels is not a whole number of blocks")
        order = np.argsort(-scores.reshape(-1, block).sum(axis=1), kind="stable")
        mask = np.zeros(len(scores) // block, dtype=bool)
        mask[order[: int(count) // block]] = True
        masks[name] = np.repeat(mask, block)
    return masks


def resolve_keep_ratios(analysis, ratios, round_to=8):
    """Validate ``ratios`` against the model's groups; return ({group: ratio}, round_to).

    ``ratios`` is a float (every prunable group), a {group name: ratio} dict
    or a PrunePolicy (whose own round_to wins).

    Raises:
      ValueError: a ratio outside (0, 1], an unknown group (the message lists
        the prunable ones) or a frozen group asked to lose channels.
    """
    prunable = [g.name for g in analysis.groups if g.prunable]
    if isinstance(ratios, PrunePolicy):
        round_to = ratios.round_to
        ratios = ratios.keep_ratios
    if isinstance(ratios, dict):
        PrunePolicy(ratios, round_to=round_to)  # validates every value and round_to
        known = {g.name: g for g in analysis.groups}
        resolved = {}
        for name, ratio in ratios.items():
            if name not in known:
                raise PolicyError(f"unknown channel group {name!r}; prunable groups are: {', '.join(prunable)}")
            group = known[name]
            if not group.prunable:
                if ratio < 1.0:
                    raise PolicyError(f"channel group {name!r} cannot be pruned: {group.reason}")
                continue
            resolved[name] = float(ratio)
        return resolved, round_to
    ratio = _check_ratio("every group", ratios)
    if not prunable:
        raise PolicyError("the model has no prunable channel group: " + "; ".join(f"{g.name}: {g.reason}" for g in analysis.groups))
    return {name: ratio for name in prunable}, round_to


def keep_counts(analysis, keep_ratios, round_to=8):
    """{group: kept channel count} for validated ``keep_ratios``."""
    return {
        name: kept_channels(analysis.group(name).channels, ratio, analysis.group(name).granularity(round_to))
        for name, ratio in keep_ratios.items()
    }
