"""Walk a functional / Sequential tf_keras model and find its channel groups.

A channel group is a set of output channels that must be removed together:
the outputs of every layer joined by an element-wise merge, carried through
BatchNormalization, activations, pooling, padding and depthwise convolutions.
Coupling is derived from the layer graph, the Keras counterpart of
Torch-Pruning's dependency graph. Every tensor gets a *channel map*: for each
of its channels, which channel variable (a producer's output channels) and
which index of it the channel is. Concatenate joins maps, a depthwise
multiplier repeats them, a merge unifies the variables of its inputs.
Whatever the analysis cannot prove safe is frozen with a readable reason.

What each layer does with channels is its handler's channel rule
(``tfmc.layers``): the handler calls back ``produce``, ``carry``, ``merge``
or ``freeze`` on the graph.
"""
import dataclasses
import math

import numpy as np

from tfmc._keras import require_graph_model, tf
from tfmc.layers import handler_for

@dataclasses.dataclass
class ChannelGroup:
    """Output channels that are pruned together.

    Attributes:
      name: the first layer (in topological order) that produces the channels.
      channels: how many channels the group has.
      producers: layers that create these channels (convs, dense layers).
      members: layers whose outputs carry these channels and lose them when the
        group is pruned (producers, BatchNormalization, depthwise convs, ...).
      consumers: layers that read these channels into other channels (their
        kernels lose input rows).
      prunable: whether the group may be pruned.
      reason: why it may not, when ``prunable`` is False.
      block: channels are kept and dropped in aligned blocks of this size
        (1, or the channels per group of a grouped convolution in the group).
    """

    name: str
    channels: int
    producers: list
    members: list
    consumers: list
    prunable: bool
    reason: str = ""
    block: int = 1

    def granularity(self, round_to):
        """The multiple kept counts of this group are rounded to: ``round_to`` and ``block`` together (their lcm)."""
        return round_to * self.block // math.gcd(round_to, self.block)


@dataclasses.dataclass
class LayerCall:
    """One call of a layer inside the model graph."""

    layer: object
    inputs: list  # tensor keys
    outputs: list  # tensor keys
    input_shapes: list
    output_shapes: list
    arguments: tuple = ((), {})  # the node's (call_args, call_kwargs): tensors and the constants beside them


def _tensor_key(tensor):
    layer, node_index, tensor_index = tensor._keras_history
    return (id(layer), node_index, tensor_index)


def _shape(tensor):
    return tuple(tensor.shape.as_list()) if tensor.shape.rank is not None else None


def layer_calls(model):
    """The layer calls of ``model`` in topological order (input layers excluded)."""
    require_graph_model(model)
    calls = []
    for depth in sorted(model._nodes_by_depth, reverse=True):
        for node in model._nodes_by_depth[depth]:
            if node.is_input:
                continue
            inputs = list(node.keras_inputs)
            outputs = tf.nest.flatten(node.outputs)
            calls.append(
                LayerCall(
                    layer=node.layer,
                    inputs=[_tensor_key(t) for t in inputs],
                    outputs=[_tensor_key(t) for t in outputs],
                    input_shapes=[_shape(t) for t in inputs],
                    output_shapes=[_shape(t) for t in outputs],
                    arguments=(tuple(node.call_args), dict(node.call_kwargs)),
                )
            )
    return calls


def layer_kind(layer):
    """How the channel analysis treats ``layer``: its handler's short name ("conv", "batchnorm", ...)."""
    return handler_for(layer).kind_of(layer)


class _Variables:
    """Channel variables (one per producer output) under union-find."""

    def __init__(self):
        self.parent, self.channels, self.owner, self.frozen = [], [], [], []

    def new(self, channels, owner, frozen=None):
        self.parent.append(len(self.parent))
        self.channels.append(channels)
        self.owner.append(owner)
        self.frozen.append(frozen)
        return len(self.parent) - 1

    def root(self, v):
        while self.parent[v] != v:
            self.parent[v] = self.parent[self.parent[v]]
            v = self.parent[v]
        return v

    def union(self, a, b):
        ra, rb = self.root(a), self.root(b)
        if ra != rb:
            # the earlier variable stays root so groups are named after their first producer
            ra, rb = min(ra, rb), max(ra, rb)
            self.parent[rb] = ra
            self.frozen[ra] = self.frozen[ra] or self.frozen[rb]

    def freeze(self, v, reason):
        r = self.root(v)
        if not self.frozen[r]:
            self.frozen[r] = reason


class ChannelGraph:
    """The channel analysis of a model: groups, channel maps and per-layer roles.

    Build it once with ``ChannelGraph(model)``; ``tfmc.channel_groups`` returns
    its ``groups``. Pruning and cost code read the channel maps through
    ``tensor_keep`` and ``layer_io``.
    """

    def __init__(self, model):
        self.model = require_graph_model(model)
        self.calls = layer_calls(model)
        self._vars = _Variables()
        self._maps = {}  # tensor key -> (var ids, channel indices) arrays
        self._roles = {}  # layer name -> {"kind", "handler", "in", "out"}: channel maps of its first call
        self._blocks = {}  # var -> block size (grouped convolutions)
        self._members = {}  # var -> ordered layer names
        self._consumers = {}
        self._producers = {}
        call_counts = {}
        for call in self.calls:
            call_counts[call.layer.name] = call_counts.get(call.layer.name, 0) + 1
        self._call_counts = call_counts
        for inp in model.inputs:
            shape = _shape(inp)
            var = self._vars.new(shape[-1], inp._keras_history[0].name, frozen="model input")
            self._producers.setdefault(var, []).append(inp._keras_history[0].name)
            self._maps[_tensor_key(inp)] = _full_map(var, shape[-1])
        for call in self.calls:
            self._visit(call)
        for out in model.outputs:
            name = out._keras_history[0].name
            for v in set(self._maps[_tensor_key(out)][0].tolist()):
                self._vars.freeze(v, f"reaches model output of layer {name!r}")
        self.groups = self._collect_groups()
        self._group_of_root = {self._vars.root(self._root_var[g.name]): g for g in self.groups}

    # ---- analysis -------------------------------------------------------------
    def _visit(self, call):
        layer = call.layer
        handler = handler_for(layer)
        in_maps = [self._maps[k] for k in call.inputs]
        self._handler = handler
        if self._call_counts[layer.name] > 1 and layer.weights and not handler.shared_ok:
            self.freeze(call, in_maps, f"layer {layer.name!r} is shared ({self._call_counts[layer.name]} calls)")
            return
        if _channels_first(layer) and not handler.shared_ok:
            self.freeze(call, in_maps, f"{layer.name!r} uses channels_first")
            return
        handler.visit(self, call, in_maps)

    # ---- the primitives a handler's channel rule is made of ---------------------------
    def produce(self, call, in_maps):
        """``call``'s output channels are new (a group of their own); it consumes its first input's channels."""
        channels = call.output_shapes[0][-1]
        var = self._producer_var(call.layer, channels)
        self._record(call, in_maps, [_full_map(var, channels)])
        self._add_consumer(call.layer, in_maps[0])

    def carry(self, call, in_maps, out_map, member):
        """``call``'s output carries the channels of ``out_map`` (built from its inputs' maps).

        ``member``: the layer has per-channel weights or a config that
        shrinks with the channels, so it is listed among the group's members.
        """
        self._record(call, in_maps, [out_map])
        if member:
            self._add_member(call.layer, out_map)

    def merge(self, call, in_maps):
        """An element-wise merge: the channel variables of its inputs are unified."""
        self._merge(call, in_maps)

    def freeze(self, call, in_maps, reason):
        """Nothing ``call`` reads or writes may be pruned, because of ``reason``."""
        self._opaque(call, in_maps, reason)

    def set_block(self, channel_map, block):
        """The channels of ``channel_map``'s variables are kept in aligned blocks of ``block``."""
        for v in set(channel_map[0].tolist()):
            self._blocks[v] = math.lcm(self._blocks.get(v, 1), int(block))

    def _merge(self, call, in_maps):
        channels = call.output_shapes[0][-1]
        full = [m for m, s in zip(in_maps, call.input_shapes) if s[-1] == channels]
        # inputs with one channel broadcast over all channels and couple nothing
        if all(len(set(m[0].tolist())) == 1 and _is_identity(m) for m in full):
            for m in full[1:]:
                self._vars.union(full[0][0][0], m[0][0])
            out = full[0]
        else:
            roots = [np.array([self._vars.root(v) for v in m[0]]) for m in full]
            if all(np.array_equal(roots[0], r) and np.array_equal(full[0][1], m[1]) for r, m in zip(roots, full)):
                out = full[0]
            else:
                self._opaque(call, in_maps, f"{call.layer.name!r} merges channels of different groups at different offsets")
                return
        self._record(call, in_maps, [out])

    def _opaque(self, call, in_maps, reason):
        for m in in_maps:
            for v in set(m[0].tolist()):
                self._vars.freeze(v, reason)
        out_maps = []
        for shape in call.output_shapes:
            channels = shape[-1] if shape else 1
            var = self._producer_var(call.layer, channels, frozen=reason)
            out_maps.append(_full_map(var, channels))
        self._record(call, in_maps, out_maps, opaque=True)

    def _producer_var(self, layer, channels, frozen=None):
        var = self._vars.new(channels, layer.name, frozen=frozen)
        self._producers.setdefault(var, []).append(layer.name)
        if not frozen:
            self._members.setdefault(var, []).append(layer.name)
        return var

    def _record(self, call, in_maps, out_maps, opaque=False):
        for key, m in zip(call.outputs, out_maps):
            self._maps[key] = m
        kind = "opaque" if opaque else self._handler.kind_of(call.layer)
        handler = None if opaque else self._handler
        self._roles.setdefault(call.layer.name, {"kind": kind, "handler": handler, "in": in_maps, "out": out_maps})

    def _add_member(self, layer, channel_map):
        for v in set(channel_map[0].tolist()):
            self._members.setdefault(v, []).append(layer.name)

    def _add_consumer(self, layer, channel_map):
        for v in set(channel_map[0].tolist()):
            self._consumers.setdefault(v, [])
            if layer.name not in self._consumers[v]:
                self._consumers[v].append(layer.name)

    def _collect_groups(self):
        by_root = {}
        for v in range(len(self._vars.parent)):
            by_root.setdefault(self._vars.root(v), []).append(v)
        groups, self._root_var = [], {}
        for root in sorted(by_root):
            variables = by_root[root]
            producers = [p for v in variables for p in self._producers.get(v, [])]
            members = _unique(m for v in variables for m in self._members.get(v, []))
            consumers = _unique(c for v in variables for c in (self._consumers.get(v) or []))
            reason = self._vars.frozen[root] or ""
            if not reason and not consumers:
                reason = "no layer consumes these channels"
            block = math.lcm(*(self._blocks.get(v, 1) for v in variables))
            channels = int(self._vars.channels[root])
            if not reason and channels % block:
                reason = (f"grouped convolutions {', '.join(members)} need blocks of {block} channels, "
                          f"which do not divide the {channels} channels")
            name = producers[0] if producers else self._vars.owner[root]
            if name in self._root_var:  # a layer with several opaque outputs
                name = f"{name}:{len(self._root_var)}"
            self._root_var[name] = root
            groups.append(
                ChannelGroup(
                    name=name,
                    channels=channels,
                    producers=_unique(producers),
                    members=members,
                    consumers=consumers,
                    prunable=not reason,
                    reason=reason,
                    block=block,
                )
            )
        return groups

    # ---- queries --------------------------------------------------------------
    def group(self, name):
        for g in self.groups:
            if g.name == name:
                return g
        raise KeyError(name)

    def group_of_var(self, var):
        return self._group_of_root[self._vars.root(var)]

    def tensor_keep(self, channel_map, keep):
        """Positions of ``channel_map`` kept under ``keep`` ({group name: bool mask})."""
        mask = np.ones(len(channel_map[0]), dtype=bool)
        for pos, (v, i) in enumerate(zip(*channel_map)):
            g = self.group_of_var(int(v))
            if g.name in keep:
                mask[pos] = keep[g.name][i]
        return np.flatnonzero(mask)

    def prunable_consumers(self):
        """Layers that read channels of a prunable group, each once, in group order.

        Only these can lose input channels, so they are all that masking and
        reconstruction need to visit.
        """
        return _unique(name for g in self.groups if g.prunable for name in g.consumers)

    def layer_io(self, name):
        """The role of layer ``name``: {"kind", "handler" (None when frozen), "in", "out" (channel maps)}."""
        return self._roles[name]

    def map_groups(self, channel_map):
        """For each position of ``channel_map``: (group name, channel index)."""
        return [(self.group_of_var(int(v)).name, int(i)) for v, i in zip(*channel_map)]


def _full_map(var, channels):
    return (np.full(channels, var, dtype=np.int64), np.arange(channels, dtype=np.int64))


def _is_identity(channel_map):
    return np.array_equal(channel_map[1], np.arange(len(channel_map[1])))


def _channels_first(layer):
    return getattr(layer, "data_format", "channels_last") == "channels_first"


def _unique(items):
    seen, out = set(), []
    for x in items:
        if x not in seen:
            seen.add(x)
            out.append(x)
    return out


def channel_groups(model):
    """The channel groups of a functional or Sequential tf_keras model.

    Args:
      model: a functional or built Sequential ``tf_keras`` model.

    Returns:
      A list of ChannelGroup in topological order, frozen ones included (with
      ``prunable=False`` and a ``reason``).

    Raises:
      TypeError: for a subclassed model (its graph cannot be read).

    Example:
      >>> for g in tfmc.channel_groups(model):
      ...     print(g.name, g.channels, g.prunable or g.reason)
    """
    return ChannelGraph(model).groups
