"""Cost model: multiply-accumulates, parameters and per-layer profiles at batch 1."""
import dataclasses

import numpy as np

from tfmc import graph as graph_lib
from tfmc.errors import ModelLoadError
from tfmc.layers import LayerHandler, handler_for


def _check_known(shape, layer):
    if shape is None or any(d is None for d in shape[1:]):
        raise ModelLoadError(
            f"layer {layer.name!r} has an unknown shape {shape}; counting MACs needs a model "
            "built with a fixed input size (e.g. keras.Input((224, 224, 3)))"
        )


def layer_macs(layer, input_shape, output_shape, in_channels=None, out_channels=None):
    """Multiply-accumulates of one call of ``layer`` at batch 1.

    ``in_channels`` / ``out_channels`` override the channel counts of the
    shapes, so callers can cost a pruned configuration without building it.
    Layers without a multiply (activations, BN folded at export, pooling) count 0.
    The count is the layer handler's (``tfmc.layers``).
    """
    handler = handler_for(layer)
    if type(handler).macs is LayerHandler.macs:  # no multiplies: skip the shape checks too
        return 0
    _check_known(input_shape, layer)
    _check_known(output_shape, layer)
    cin = input_shape[-1] if in_channels is None else in_channels
    cout = output_shape[-1] if out_channels is None else out_channels
    return int(handler.macs(layer, input_shape, output_shape, cin, cout))


def macs_by_layer(model):
    """{layer name: MACs} for every layer call of ``model`` (nested models as "outer/inner")."""
    result = {}
    for call in graph_lib.layer_calls(model):
        layer = call.layer
        if graph_lib.layer_kind(layer) == "model":
            for inner, macs in macs_by_layer(layer).items():
                key = f"{layer.name}/{inner}"
                result[key] = result.get(key, 0) + macs
            continue
        macs = layer_macs(layer, call.input_shapes[0], call.output_shapes[0])
        result[layer.name] = result.get(layer.name, 0) + macs
    return result


def count_macs(model):
    """Total multiply-accumulates of one inference at batch 1.

    Counts Conv1D/2D/3D (grouped too), Conv*Transpose, DepthwiseConv2D,
    SeparableConv1D/2D and Dense; other layers count zero, as in the papers'
    tables (MobileNet 224: 569 M).

    Example:
      >>> tfmc.count_macs(keras.applications.MobileNet(weights=None))
      568740352
    """
    return int(sum(macs_by_layer(model).values()))


def count_params(model):
    """All weights of ``model`` (trainable and not), as Keras' summary counts them."""
    return int(model.count_params())


@dataclasses.dataclass
class LayerProfile:
    name: str
    type: str
    output_shape: tuple
    macs: int
    params: int
    channels: int
    group: str


@dataclasses.dataclass
class Profile:
    """Per-layer costs of a model; ``rows`` in topological order."""

    rows: list
    total_macs: int
    total_params: int

    def to_markdown(self):
        """The profile as a Markdown table with a totals line."""
        lines = [
            "| layer | type | output | MACs | params | channels | group |",
            "|---|---|---|---:|---:|---:|---|",
        ]
        for r in self.rows:
            shape = "x".join("?" if d is None else str(d) for d in r.output_shape[1:])
            lines.append(f"| {r.name} | {r.type} | {shape} | {r.macs:,} | {r.params:,} | {r.channels} | {r.group} |")
        lines.append(f"| **total** | | | {self.total_macs:,} | {self.total_params:,} | | |")
        return "\n".join(lines)


def profile(model):
    """Per-layer type, output shape, MACs, parameters, channels and channel group.

    The group column names the channel group of the layer's output, marked
    ``(frozen)`` when it cannot be pruned.
    """
    analysis = graph_lib.ChannelGraph(model)
    macs_by_name = macs_by_layer(model)
    order = {g.name: i for i, g in enumerate(analysis.groups)}
    rows, seen = [], set()
    for call in analysis.calls:
        layer = call.layer
        if layer.name in seen:
            continue
        seen.add(layer.name)
        out_map = analysis.layer_io(layer.name)["out"][0]
        names = sorted({g for g, _ in analysis.map_groups(out_map)}, key=order.__getitem__)
        group = ", ".join(n + ("" if analysis.group(n).prunable else " (frozen)") for n in names)
        if graph_lib.layer_kind(layer) == "model":  # its inner layers are listed as "outer/inner"
            macs = sum(v for k, v in macs_by_name.items() if k.startswith(layer.name + "/"))
        else:
            macs = macs_by_name[layer.name]
        rows.append(
            LayerProfile(
                name=layer.name,
                type=type(layer).__name__,
                output_shape=call.output_shapes[0],
                macs=int(macs),
                params=int(layer.count_params()),
                channels=int(call.output_shapes[0][-1]) if call.output_shapes[0] else 0,
                group=group,
            )
        )
    return Profile(rows=rows, total_macs=int(sum(macs_by_name.values())), total_params=count_params(model))
