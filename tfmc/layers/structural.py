"""Handlers of layers without channel weights: they pass, merge, concatenate, reshape or freeze channels."""
import numpy as np

from tfmc._keras import tf
from tfmc.layers.handler import LayerHandler

_CHANNEL_MIXING_ACTIVATIONS = {"softmax", "log_softmax"}


class PassThrough(LayerHandler):
    """Channels pass unchanged and nothing is sliced (activations, dropout, pooling, padding, ...).

    A layer whose output does not keep the channel count on the last axis
    freezes its groups instead.
    """

    kind = "pass"
    member = False  # nothing of the layer shrinks with the channels

    def moved_reason(self, layer):
        """Why the groups freeze when ``layer`` does not keep the channel count on the last axis."""
        return f"{layer.name!r} does not keep channels on the last axis"

    def visit(self, graph, call, in_maps):
        if call.output_shapes[0][-1] != call.input_shapes[0][-1]:
            graph.freeze(call, in_maps, self.moved_reason(call.layer))
            return
        graph.carry(call, in_maps, in_maps[0], member=self.member)


class ChannelMixing(LayerHandler):
    """A layer that mixes channels without weights (softmax): its groups freeze."""

    def visit(self, graph, call, in_maps):
        graph.freeze(call, in_maps, f"{call.layer.name!r} mixes channels ({type(call.layer).__name__})")


class ActivationLayer(PassThrough):
    """``keras.layers.Activation``: element-wise, except softmax / log_softmax, which mix channels."""

    def _mixes(self, layer):
        return layer.get_config()["activation"] in _CHANNEL_MIXING_ACTIVATIONS

    def kind_of(self, layer):
        return "other" if self._mixes(layer) else "pass"

    def visit(self, graph, call, in_maps):
        if self._mixes(call.layer):
            ChannelMixing().visit(graph, call, in_maps)
            return
        super().visit(graph, call, in_maps)


class ElementwiseMerge(LayerHandler):
    """Add, Subtract, Multiply, Maximum, Minimum, Average: the inputs' channels are unified into one group."""

    kind = "merge"

    def visit(self, graph, call, in_maps):
        graph.merge(call, in_maps)


class TensorFlowOp(PassThrough):
    """TFOpLambda: a TensorFlow op written on Keras tensors (``x + 3.``, ``x * (1. / 6.)``, ``x + y``).

    tf_keras' MobileNetV3 (hard sigmoid), RegNet and ConvNeXt (residual
    sums) are built this way. The element-wise ops of ``ELEMENTWISE`` are
    understood: with one tensor argument and only scalars beside it the
    channels pass unchanged; with several tensor arguments they are merged
    as Add's inputs are. Any other op, or a constant that is not a scalar
    (it would have to be sliced with the channels), freezes the groups the
    op touches, with a reason that names it.
    """

    ELEMENTWISE = frozenset({
        "__operators__.add", "math.add", "math.add_n", "math.subtract", "math.multiply", "math.truediv",
        "math.divide", "math.maximum", "math.minimum", "math.negative", "math.abs", "math.square", "math.sqrt",
        "math.exp", "math.sigmoid", "math.tanh", "nn.relu", "nn.relu6", "nn.silu", "nn.swish", "nn.elu",
        "nn.leaky_relu", "nn.gelu", "math.pow",
    })

    @staticmethod
    def _constants(arguments):
        args, kwargs = arguments
        values = [v for k, v in kwargs.items() if k != "name"] + list(args)
        return [v for v in tf.nest.flatten(values) if not hasattr(v, "_keras_history") and v is not None]

    def rule(self, layer, arguments, tensors):
        """("pass" | "merge", None) for an understood call, else ("other", why it freezes)."""
        symbol = getattr(layer, "symbol", type(layer).__name__)
        if symbol not in self.ELEMENTWISE:
            return "other", f"TensorFlow op {symbol!r} ({layer.name!r}) is not an element-wise op tfmc knows"
        shaped = [v for v in self._constants(arguments) if np.ndim(v) != 0]
        if shaped:
            return "other", (f"TensorFlow op {symbol!r} ({layer.name!r}) takes a constant of shape "
                             f"{np.shape(shaped[0])}, which would have to shrink with the channels")
        return ("pass" if tensors == 1 else "merge"), None

    def kind_of(self, layer):
        node = layer.inbound_nodes[0]
        return self.rule(layer, (node.call_args, node.call_kwargs), len(node.keras_inputs))[0]

    def visit(self, graph, call, in_maps):
        kind, reason = self.rule(call.layer, call.arguments, len(call.inputs))
        if kind == "other":
            graph.freeze(call, in_maps, reason)
        elif kind == "pass":
            super().visit(graph, call, in_maps)
        else:
            graph.merge(call, in_maps)


class Concatenation(LayerHandler):
    """Concatenate on the channel axis: the output's channels are the inputs' channels, in order."""

    kind = "concat"

    def visit(self, graph, call, in_maps):
        import numpy as np

        layer = call.layer
        rank = len(call.output_shapes[0])
        if layer.axis not in (-1, rank - 1):
            graph.freeze(call, in_maps, f"Concatenate {layer.name!r} joins on axis {layer.axis}, not channels")
            return
        out = (np.concatenate([m[0] for m in in_maps]), np.concatenate([m[1] for m in in_maps]))
        graph.carry(call, in_maps, out, member=False)


class ReshapeLayer(PassThrough):
    """Reshape keeping the channels last: channels pass, and the target shape's last entry shrinks with them."""

    kind = "reshape"
    member = True

    def moved_reason(self, layer):
        return f"Reshape {layer.name!r} moves channels off the last axis"

    def pruned_config(self, layer, config, in_keep, out_keep):
        config["target_shape"] = tuple(config["target_shape"][:-1]) + (int(len(out_keep)),)
        return config


class FlattenLayer(LayerHandler):
    """Flatten mixes channels with positions: its groups freeze."""

    kind = "flatten"

    def visit(self, graph, call, in_maps):
        graph.freeze(call, in_maps, f"flattened by {call.layer.name!r}")


class NestedModel(LayerHandler):
    """A model used as a layer: its groups freeze (its inner layers are costed as "outer/inner")."""

    kind = "model"

    def visit(self, graph, call, in_maps):
        graph.freeze(call, in_maps, f"passes through nested model {call.layer.name!r}")


class ChannelScale(LayerHandler):
    """tfmc's ChannelMask: it only scales channels and is called wherever its group is read, so shared by design."""

    kind = "mask"
    shared_ok = True

    def visit(self, graph, call, in_maps):
        graph.carry(call, in_maps, in_maps[0], member=False)
