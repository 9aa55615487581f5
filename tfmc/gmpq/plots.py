"""Figures of a mixed-precision policy: per-layer bits, and attribution maps side by side."""
from tfmc import report


def plot_bits(policy, path, title="Bit widths per layer"):
    """Grouped bars of each layer's weight and activation bits (PNG), written atomically."""
    names = list(policy)
    values = {
        "weights": [policy[n].weight_bits for n in names],
        "activations": [policy[n].activation_bits for n in names],
    }
    return report.plot_bars(path, names, values, title, "bits")


def plot_attribution(images, float_maps, searched_maps, path, labels=("float", "searched")):
    """Rows of (image, float model's map, searched model's map) for a few images (PNG)."""
    from matplotlib.figure import Figure

    n = len(images)
    figure = Figure(figsize=(6, 2 * n))
    axes = figure.subplots(n, 3, squeeze=False)
    for i in range(n):
        image = images[i]
        image = image[..., 0] if image.shape[-1] == 1 else image
        panels = [(image, "image"), (float_maps[i], labels[0]), (searched_maps[i], labels[1])]
        for ax, (panel, title) in zip(axes[i], panels):
            ax.imshow(panel, cmap=None if panel.ndim == 3 else "inferno")
            ax.set_axis_off()
            if i == 0:
                ax.set_title(title, fontsize=9)
    return report.save_figure(figure, path)


def attribution_figure(model, quantized, images, path, labels=("float", "quantized (QAT)")):
    """Grad-CAM maps of the float model and its quantized version on ``images``, side by side (PNG).

    Raises:
      ValueError: the model has no conv layer to take the maps at.
    """
    from tfmc.gmpq import attribution

    name = attribution.feature_layer(model)
    layer_names = [layer.name for layer in quantized.layers]
    quantized_name = "quant_" + name if "quant_" + name in layer_names else name
    float_maps = attribution.attribution_map(attribution.feature_model(model, name), images)[0].numpy()
    quantized_maps = attribution.attribution_map(attribution.feature_model(quantized, quantized_name), images)[0].numpy()
    return plot_attribution(images, float_maps, quantized_maps, path, labels=labels)
