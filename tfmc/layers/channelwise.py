"""Handlers of layers with one weight per channel on the last axis (BatchNormalization, PReLU, user layers)."""
import numpy as np

from tfmc.layers.handler import LayerHandler


class Channelwise(LayerHandler):
    """Per-channel weights on the last axis: channels pass, each weight keeps the kept channels' entries.

    A weight whose last axis has size 1 is shared by every channel and is
    left whole (PReLU with ``shared_axes`` over the channels). This is the
    ready handler "channelwise" of ``tfmc.register_layer``.
    """

    kind = "channelwise"

    def visit(self, graph, call, in_maps):
        graph.carry(call, in_maps, in_maps[0], member=True)

    def slice_weights(self, layer, weights, in_keep, out_keep):
        return [w if w.shape[-1] == 1 else np.take(w, in_keep, axis=-1) for w in weights]

    def params(self, layer, kin, kout):
        total = 0
        for w in layer.weights:
            shape = tuple(w.shape)
            total += int(np.prod(shape)) if shape[-1] == 1 else int(np.prod(shape[:-1])) * kout
        return total


class BatchNorm(Channelwise):
    """BatchNormalization over the last axis (another axis freezes the groups)."""

    kind = "batchnorm"

    def visit(self, graph, call, in_maps):
        layer = call.layer
        axis = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
        if list(axis) != [len(call.input_shapes[0]) - 1]:
            graph.freeze(call, in_maps, f"BatchNormalization {layer.name!r} normalises axis {axis}, not channels")
            return
        super().visit(graph, call, in_maps)


class PReLUSlopes(Channelwise):
    """PReLU: one learned slope per channel (or one shared slope)."""

    kind = "prelu"
    weighted = True
