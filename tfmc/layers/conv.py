"""Handlers of the layers that make new channels from all their inputs: convolutions and Dense."""
import numpy as np

from tfmc._keras import keras
from tfmc.layers.handler import LayerHandler, norm_over, other_axes


def _prod(values):
    return int(np.prod([int(v) for v in values], dtype=np.int64)) if values else 1


class Producer(LayerHandler):
    """A layer whose kernel maps every input channel (axis ``in_axis``) to every output channel (``out_axis``).

    Its outputs are new channels (a channel group of their own); it consumes
    its input channels, which lose kernel rows when pruned; its weights after
    the kernel (the bias) are per output channel.
    """

    weighted = True
    in_axis, out_axis = -2, -1

    def visit(self, graph, call, in_maps):
        graph.produce(call, in_maps)

    def slice_weights(self, layer, weights, in_keep, out_keep):
        kernel = np.take(np.take(weights[0], in_keep, axis=self.in_axis), out_keep, axis=self.out_axis)
        return [kernel] + [w[out_keep] for w in weights[1:]]

    def zero_inputs(self, layer, weights, positions):
        weights = [w.copy() for w in weights]
        index = [slice(None)] * weights[0].ndim
        index[self.in_axis] = positions
        weights[0][tuple(index)] = 0.0
        return weights

    def input_norm(self, layer, weights, p=1):
        kernel = weights[0]
        return norm_over(kernel, other_axes(kernel, self.in_axis), p)

    def params(self, layer, kin, kout):
        shapes = [tuple(w.shape) for w in layer.weights]
        return _prod(shapes[0][:-2]) * kin * kout + sum(kout for _ in shapes[1:])


class DenseLayer(Producer):
    """Dense (on the last axis of any rank): refittable; int4 / int8 FULLY_CONNECTED in LiteRT."""

    kind = "dense"
    bits_kind = "dense"
    litert_ops = ("FULLY_CONNECTED",)
    latency = True

    def pruned_config(self, layer, config, in_keep, out_keep):
        config["units"] = int(len(out_keep))
        return config

    def refittable(self, layer):
        return True

    def macs(self, layer, input_shape, output_shape, cin, cout):
        return _prod(input_shape[1:-1]) * cin * cout

    def takes_bits(self, layer):
        return type(layer) is keras.layers.Dense


class Convolution(Producer):
    """Conv1D / Conv2D / Conv3D.

    A grouped convolution (``groups`` > 1, as in ResNeXt and RegNet) that
    keeps the width is pruned by whole groups: its output channel j belongs
    to the same group as its input channel j, and the channel group it reads
    is pruned in blocks of ``channels / groups`` (one block per convolution
    group; the pruned layer has fewer groups). A grouped convolution that
    changes the width freezes its channels.
    """

    kind = "conv"
    bits_kind = "conv"
    litert_ops = ("CONV_2D",)
    latency = True
    feature_map = True

    def visit(self, graph, call, in_maps):
        layer = call.layer
        groups = getattr(layer, "groups", 1)
        if groups == 1:
            graph.produce(call, in_maps)
            return
        cin, cout = call.input_shapes[0][-1], call.output_shapes[0][-1]
        in_map = in_maps[0]
        if cin != cout:
            graph.freeze(call, in_maps, f"grouped convolution {layer.name!r} (groups={groups}) changes the width "
                                        f"({cin} -> {cout}); only width-keeping ones are pruned by whole groups")
            return
        if len(set(in_map[0].tolist())) != 1 or not np.array_equal(in_map[1], np.arange(cin)):
            graph.freeze(call, in_maps, f"grouped convolution {layer.name!r} (groups={groups}) reads a concatenation "
                                        "of channel groups")
            return
        graph.carry(call, in_maps, in_map, member=True)
        graph.set_block(in_map, cin // groups)

    def pruned_config(self, layer, config, in_keep, out_keep):
        config["filters"] = int(len(out_keep))
        if config.get("groups", 1) != 1:
            config["groups"] = int(len(out_keep)) // int(layer.kernel.shape[-1] // layer.groups)
        return config

    def slice_weights(self, layer, weights, in_keep, out_keep):
        if getattr(layer, "groups", 1) != 1:  # whole convolution groups: the kernel's input axis is per group
            return [np.take(weights[0], out_keep, axis=-1)] + [w[out_keep] for w in weights[1:]]
        return super().slice_weights(layer, weights, in_keep, out_keep)

    def refittable(self, layer):
        return len(layer.kernel_size) == 2 and layer.groups == 1

    def macs(self, layer, input_shape, output_shape, cin, cout):
        groups = getattr(layer, "groups", 1)
        per_group = cin if groups == 1 else int(layer.kernel.shape[-2])  # a group's inputs: unchanged by pruning
        return _prod(output_shape[1:-1]) * _prod(layer.kernel_size) * per_group * cout

    def params(self, layer, kin, kout):
        if getattr(layer, "groups", 1) == 1:
            return super().params(layer, kin, kout)
        shapes = [tuple(w.shape) for w in layer.weights]
        return _prod(shapes[0][:-1]) * kout + sum(kout for _ in shapes[1:])

    def takes_bits(self, layer):
        return type(layer) is keras.layers.Conv2D


class Conv1DLayer(Convolution):
    """Conv1D: a Convolution; LiteRT runs it as CONV_2D over a height of 1. Not refitted (no 1-D im2col yet)."""

    def refittable(self, layer):
        return False


class Conv3DLayer(Convolution):
    """Conv3D: a Convolution on CONV_3D; not refitted, not latency-tabled, takes no bit widths."""

    bits_kind = None
    litert_ops = ("CONV_3D",)
    latency = False
    feature_map = False

    def refittable(self, layer):
        return False


class TransposedConvolution(Producer):
    """Conv1DTranspose / Conv2DTranspose / Conv3DTranspose: the kernel is (window..., out, in).

    The same rule as Convolution with the two kernel axes swapped; MACs are
    counted per input position (each input pixel scatters a window).
    """

    kind = "conv_transpose"
    in_axis, out_axis = -1, -2
    litert_ops = ("TRANSPOSE_CONV",)

    def pruned_config(self, layer, config, in_keep, out_keep):
        config["filters"] = int(len(out_keep))
        return config

    def macs(self, layer, input_shape, output_shape, cin, cout):
        return _prod(input_shape[1:-1]) * _prod(layer.kernel_size) * cin * cout
