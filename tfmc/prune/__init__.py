"""Structural channel pruning: the dropped channels are removed, not zeroed."""
import numpy as np

from tfmc.data import as_arrays, check_finite
from tfmc.graph import ChannelGraph
from tfmc.policy import PrunePolicy
from tfmc.prune.importance import resolve
from tfmc.prune.reconstruct import reconstruct
from tfmc.prune.select import keep_counts, resolve_keep_ratios, select_channels
from tfmc.prune.surgery import build_pruned


def prune(model, ratios, *, calib_data=None, round_to=8, importance=None, return_details=False):
    """Return a new, smaller model with low-importance channels removed.

    Channels of each prunable group are ranked by ``importance`` (default:
    the L1 norm of the weights that consume them); the kept count is ``max(round(channels * ratio), 1)``
    rounded to a multiple of ``round_to``. Kernels, biases, BN statistics and
    depthwise kernels are sliced and copied; with ``calib_data`` the layers
    that lost inputs are refitted by least squares.

    Args:
      model: a functional or built Sequential tf_keras model; not modified.
      ratios: keep ratio in (0, 1] for every prunable group (float), a
        {group name: keep ratio} dict, or a PrunePolicy.
      calib_data: optional images for least-squares reconstruction (an array,
        or a tf.data.Dataset of images or (image, label) pairs, read to the end).
      round_to: kept channel counts are multiples of this (ignored for a
        PrunePolicy, which carries its own).
      importance: the channel criterion (``tfmc.prune.importance``): a name
        ("l1", "l2", "bn_scale", "taylor", "random"), a config dict or an
        Importance object. None: the criterion a PrunePolicy records in
        ``metadata["importance"]`` (what its search scored), else L1. An
        explicit criterion overrides the policy's. "taylor" reads
        ``calib_data``.
      return_details: also return {"keep": masks, "kept_channels": counts,
        "reconstruction_error": {layer: relative error}, "importance": the
        criterion's config}.

    Returns:
      The pruned model (and the details when asked).

    Raises:
      ValueError: ratios outside (0, 1], an unknown group name (the message
        lists the valid ones), a frozen group asked to prune.
      TypeError: a subclassed model.

    Example:
      >>> small = tfmc.prune(model, 0.5, calib_data=x_train[:512])
      >>> tfmc.count_macs(small) < tfmc.count_macs(model)
      True
    """
    calib_data = as_arrays(calib_data, "calib_data")
    if calib_data is not None:
        check_finite(None, "calib_data", np.asarray(calib_data))
    analysis = ChannelGraph(model)
    keep_ratios, round_to = resolve_keep_ratios(analysis, ratios, round_to)
    counts = keep_counts(analysis, keep_ratios, round_to)
    criterion = resolve(importance, ratios if isinstance(ratios, PrunePolicy) else None)
    keep = select_channels(analysis, counts, importance=criterion.scores(analysis, calib_data))
    pruned = build_pruned(analysis, keep)
    errors = {}
    if calib_data is not None:
        errors = reconstruct(model, pruned, analysis, keep, calib_data)
    if return_details:
        return pruned, {"keep": keep, "kept_channels": counts, "reconstruction_error": errors,
                        "importance": criterion.to_config()}
    return pruned


__all__ = ["prune", "build_pruned", "reconstruct", "select_channels"]
