"""Which layers of a deployed .tflite became int4, int8 or float, and why (the stored types read back from the file)."""
import dataclasses

from tfmc.gmpq.costs import OPS
from tfmc.gmpq.search import FLOAT_BITS
from tfmc.gmpq.spaces import layer_candidates

# Why a precision is the only one a space offers a layer of this kind (tfmc.gmpq.spaces, "litert").
_ONLY_INT8 = {
    "conv": "the only fast choice: an int4 CONV_2D runs LiteRT's reference kernel, slower than int8",
    "depthwise": "DEPTHWISE_CONV_2D has no int4 kernel in LiteRT",
    "dense": "the space offers FULLY_CONNECTED only int8 here",
}


@dataclasses.dataclass
class LayerPrecision:
    """One weight layer of an export: its op, the stored weight type read from the file, and the reason."""

    name: str
    op: str
    weights: str  # e.g. "int8", "int4", "float32"
    why: str


def layer_precisions(model, policy, exported, space="litert"):
    """What each Conv / Depthwise / Dense layer of an export holds, and why, in graph order.

    Args:
      model: the float model the policy was searched on.
      policy: the BitPolicy that was exported; a GMPQ search's metadata
        ("rounded", "float_layers", "measure") gives the reasons.
      exported: ``ExportResult.layers`` of its .tflite (the stored types
        are read from the file, not assumed).
      space: the search space the policy was searched in.

    Returns:
      [LayerPrecision].

    Example:
      >>> rows = layer_precisions(model, result.policy, export_result.layers)  # doctest: +SKIP
      >>> print(to_markdown(rows))  # doctest: +SKIP
    """
    from tfmc import graph as graph_lib

    metadata = policy.metadata
    rounded = {}
    for note in metadata.get("rounded", []):
        name, _, text = note.partition(": ")
        rounded.setdefault(name, []).append(text)
    floats = set(metadata.get("float_layers", []))
    measure = {"bops": "BOPs", "bytes": "size", "ms": "latency"}.get(metadata.get("measure"), "")
    searched = metadata.get("method") == "gmpq"
    source = "searched" if searched else "asked by the policy"
    rows = []
    for layer_export in exported:
        name = layer_export.name
        weights = " + ".join(layer_export.weights)
        layer = model.get_layer(name)
        kind = graph_lib.layer_kind(layer)
        candidates = layer_candidates(space, layer)
        if name not in policy:
            if "int" in weights:
                why = f"float requested, but the export stored {weights} weights"
            elif name in floats:
                why = "kept float by the search" + (f", within the {measure} budget" if measure else "")
            else:
                why = "not in the policy: stays float"
        elif "int4" in weights:
            why = f"{source}: {policy[name].weight_bits}-bit weights stored int4; " + (
                "FULLY_CONNECTED has a fast int4 kernel (XNNPACK)" if kind == "dense"
                else f"an int4 {OPS[kind]} runs LiteRT's reference kernel, slower than int8")
        elif not searched:
            why = f"{source}: {policy[name].weight_bits}-bit weights"
        elif candidates and len(set(candidates[0]) - {FLOAT_BITS}) > 1:
            others = sorted(set(candidates[0]) - {FLOAT_BITS, policy[name].weight_bits})
            why = f"searched: {policy[name].weight_bits}-bit weights chosen over {others}"
        else:
            why = _ONLY_INT8.get(kind, "not searched")
        if name in policy and name in rounded:  # what the search's candidates were rounded from, and why
            why += "; " + "; ".join(rounded[name])
        if layer_export.notes:
            why += " (export: " + "; ".join(layer_export.notes) + ")"
        rows.append(LayerPrecision(name, " + ".join(layer_export.ops), weights, why))
    return rows


def to_markdown(rows):
    """The rows as a Markdown table: layer, op, stored weights, why."""
    lines = ["| layer | op | weights in the .tflite | why |", "|---|---|---|---|"]
    lines += [f"| {r.name} | {r.op} | {r.weights} | {r.why} |" for r in rows]
    return "\n".join(lines)


__all__ = ["LayerPrecision", "layer_precisions", "to_markdown"]
