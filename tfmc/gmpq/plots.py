"""Figures of a mixed-precision policy: per-layer bits, and attribution maps side by side."""
import numpy as np

from tfmc import io as tfmc_io


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path):
    plt = _pyplot()
    with tfmc_io.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    plt.close(fig)
    return path


def plot_bits(policy, path, title="Bit widths per layer"):
    """Bar chart of each layer's weight and activation bits (PNG), written atomically."""
    plt = _pyplot()
    names = list(policy)
    w = [policy[n].weight_bits for n in names]
    a = [policy[n].activation_bits for n in names]
    pos = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(4.0, 0.6 * len(names) + 2), 3.2))
    ax.bar(pos - 0.2, w, 0.4, label="weights")
    ax.bar(pos + 0.2, a, 0.4, label="activations")
    ax.set_xticks(pos, names, rotation=45, ha="right")
    ax.set_ylabel("bits")
    ax.set_yticks(sorted(set(w + a)))
    ax.set_title(title)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_attribution(images, float_maps, searched_maps, path, labels=("float", "searched")):
    """Rows of (image, float model's map, searched model's map) for a few images (PNG)."""
    plt = _pyplot()
    n = len(images)
    fig, axes = plt.subplots(n, 3, figsize=(6, 2 * n), squeeze=False)
    for i in range(n):
        image = images[i]
        image = image[..., 0] if image.shape[-1] == 1 else image
        panels = [(image, "image"), (float_maps[i], labels[0]), (searched_maps[i], labels[1])]
        for ax, (panel, title) in zip(axes[i], panels):
            ax.imshow(panel, cmap=None if panel.ndim == 3 else "inferno")
            ax.set_axis_off()
            if i == 0:
                ax.set_title(title, fontsize=9)
    return _save(fig, path)
