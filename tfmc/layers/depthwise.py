"""Handlers of depthwise and separable convolutions."""
import numpy as np

from tfmc._keras import keras
from tfmc.layers.conv import _prod
from tfmc.layers.handler import LayerHandler, norm_over


class Depthwise(LayerHandler):
    """DepthwiseConv1D / 2D: output channel c * multiplier + k reads input channel c only.

    Its outputs carry its input's channels (each repeated ``depth_multiplier``
    times), so it is a member of the groups it reads, never a consumer.
    """

    kind = "depthwise"
    weighted = True
    bits_kind = "depthwise"
    litert_ops = ("DEPTHWISE_CONV_2D",)
    latency = True
    feature_map = True

    def visit(self, graph, call, in_maps):
        m = call.layer.depth_multiplier
        out = (np.repeat(in_maps[0][0], m), np.repeat(in_maps[0][1], m))
        graph.carry(call, in_maps, out, member=True)

    def slice_weights(self, layer, weights, in_keep, out_keep):
        kernel = np.take(weights[0], in_keep, axis=-2)
        multiplier = weights[0].shape[-1]
        return [kernel] + [w.reshape(-1, multiplier)[in_keep].reshape(-1) for w in weights[1:]]

    def macs(self, layer, input_shape, output_shape, cin, cout):
        return _prod(output_shape[1:-1]) * _prod(layer.kernel_size) * cin * layer.depth_multiplier

    def params(self, layer, kin, kout):
        shapes = [tuple(w.shape) for w in layer.weights]
        return _prod(shapes[0][:-2]) * kin * shapes[0][-1] + sum(kout for _ in shapes[1:])

    def takes_bits(self, layer):
        return type(layer) is keras.layers.DepthwiseConv2D


class Separable(LayerHandler):
    """SeparableConv1D / 2D: a depthwise kernel, then a pointwise kernel making new channels."""

    kind = "separable"
    weighted = True
    litert_ops = ("DEPTHWISE_CONV_2D", "CONV_2D")
    latency = True
    feature_map = True

    def visit(self, graph, call, in_maps):
        graph.produce(call, in_maps)

    def pruned_config(self, layer, config, in_keep, out_keep):
        config["filters"] = int(len(out_keep))
        return config

    def slice_weights(self, layer, weights, in_keep, out_keep):
        depthwise, pointwise = weights[0], weights[1]
        cin, multiplier = depthwise.shape[-2], depthwise.shape[-1]
        depthwise = np.take(depthwise, in_keep, axis=-2)
        window = pointwise.shape[:-2]
        pointwise = pointwise.reshape(window + (cin, multiplier, pointwise.shape[-1]))
        pointwise = np.take(np.take(pointwise, in_keep, axis=-3), out_keep, axis=-1)
        pointwise = pointwise.reshape(window + (len(in_keep) * multiplier, len(out_keep)))
        return [depthwise, pointwise] + [w[out_keep] for w in weights[2:]]

    def zero_inputs(self, layer, weights, positions):
        weights = [w.copy() for w in weights]
        pointwise = weights[1]
        cin, multiplier = weights[0].shape[-2], weights[0].shape[-1]
        view = pointwise.reshape(pointwise.shape[:-2] + (cin, multiplier, pointwise.shape[-1]))
        view[..., positions, :, :] = 0.0
        return weights

    def input_norm(self, layer, weights, p=1):
        depthwise, pointwise = weights[0], weights[1]
        cin, multiplier = depthwise.shape[-2], depthwise.shape[-1]
        if p == 1:
            depthwise, pointwise = np.abs(depthwise), np.abs(pointwise)
            per_input = pointwise.reshape(cin, multiplier, -1).sum(axis=(1, 2))
            return per_input + depthwise.reshape(-1, cin, multiplier).sum(axis=(0, 2))
        squares = (norm_over(pointwise.reshape(cin, multiplier, -1), (1, 2), 2) ** 2
                   + norm_over(depthwise.reshape(-1, cin, multiplier), (0, 2), 2) ** 2)
        return np.sqrt(squares)

    def macs(self, layer, input_shape, output_shape, cin, cout):
        out_positions = _prod(output_shape[1:-1])
        window, multiplier = _prod(layer.kernel_size), layer.depth_multiplier
        return out_positions * window * cin * multiplier + out_positions * cin * multiplier * cout

    def params(self, layer, kin, kout):
        shapes = [tuple(w.shape) for w in layer.weights]
        multiplier = shapes[0][-1]
        return _prod(shapes[0][:-2]) * kin * multiplier + kin * multiplier * kout + sum(kout for _ in shapes[2:])
