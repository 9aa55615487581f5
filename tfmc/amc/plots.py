"""Figures of an AMC search: keep ratio per group of the best policy (the run folder plots the journal)."""
from tfmc import report


def plot_keep_ratios(policy, path):
    """Bars of the best policy's keep ratio per channel group, in layer order, like the paper's per-layer figures.

    Args:
      policy: a PrunePolicy from ``tfmc.amc.search`` (its metadata holds the counts).
      path: the PNG to write (atomically).

    Returns:
      path.
    """
    names = list(policy.keep_ratios)
    kept = policy.metadata.get("kept_channels", {})
    channels = policy.metadata.get("channels", {})
    labels = [f"{n}\n{kept[n]}/{channels[n]}" if n in kept and n in channels else n for n in names]
    return report.plot_bars(path, labels, [policy.keep_ratios[n] for n in names],
                            "AMC: keep ratio per channel group (kept/all channels)", "keep ratio")

