"""The layer registry: one handler per layer class holds everything tfmc knows about it.

See ``tfmc.layers.handler.LayerHandler`` for what a handler answers and
``tfmc.register_layer`` to teach tfmc a layer of your own (docs/layers.md).
"""
from tfmc.layers.channelwise import BatchNorm, Channelwise, PReLUSlopes
from tfmc.layers.conv import Conv1DLayer, Conv3DLayer, Convolution, DenseLayer, Producer, TransposedConvolution
from tfmc.layers.depthwise import Depthwise, Separable
from tfmc.layers.handler import LayerHandler
from tfmc.layers.registry import READY, handler_for, register_layer, registered, unregister_layer
from tfmc.layers.structural import (
    ActivationLayer, ChannelMixing, ChannelScale, Concatenation, ElementwiseMerge, FlattenLayer, NestedModel,
    PassThrough, ReshapeLayer,
)
from tfmc.layers import builtin  # noqa: F401  (registers the built-in handlers)

__all__ = [
    "READY", "ActivationLayer", "BatchNorm", "ChannelMixing", "ChannelScale", "Channelwise", "Concatenation",
    "Conv1DLayer", "Conv3DLayer", "Convolution", "DenseLayer", "Depthwise", "ElementwiseMerge", "FlattenLayer",
    "LayerHandler", "NestedModel", "PReLUSlopes", "PassThrough", "Producer", "ReshapeLayer", "Separable",
    "TransposedConvolution", "handler_for", "register_layer", "registered", "unregister_layer",
]
