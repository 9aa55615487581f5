"""What each precision LiteRT executes costs per layer, measured on the target: latency (ms) and stored bytes.

Every Conv2D / DepthwiseConv2D / Dense layer of a model is rebuilt alone at
its own configuration and input size (``tflite_bench.lut.single_layer_model``)
and written as a .tflite at each precision: float32, float16 (weights
stored as float16), int8 (full-integer, int8 activations) and, where LiteRT
has an int4 weight type for the op (CONV_2D, FULLY_CONNECTED), int4 weights
with int8 activations. The files of one layer are timed with
``tflite_bench`` in alternating rounds (on this host, or on an Android
phone with ``target="android", binary=...``), and the bytes of their
constant buffers are read from the flatbuffer. A GMPQ search then budgets a
policy in milliseconds or bytes instead of BOPs, as AMC's latency budget
reads a measured table (He et al., AMC, ECCV 2018, section 3.3) and as
HAQ budgets mixed precision by latency measured on the hardware (Wang et
al., "HAQ: Hardware-Aware Automated Quantization", CVPR 2019).

Measured here (2 cores, XNNPACK): int4 CONV_2D runs LiteRT's reference
kernel, about 4x slower than int8 at the same shape; int4
FULLY_CONNECTED runs XNNPACK's kernel and is level with or faster than int8.
"""
import os
import tempfile
import warnings

import numpy as np

from tfmc import graph as graph_lib
from tfmc.bops import FLOAT_BITS
from tfmc.errors import UsageError

PRECISIONS = ("float32", "float16", "int8", "int4")


def _ops_by_kind():
    """{bits kind: the TFLite op a layer of that kind becomes}, read from the layer registry (tfmc.layers).

    The handlers that take bit widths (``bits_kind``: Conv2D, DepthwiseConv2D,
    Dense) each name their op in ``litert_ops``. A precision table stores the
    kind as a string and is read without a model, so it looks the op up here.
    """
    from tfmc.layers import registered

    return {handler.bits_kind: handler.litert_ops[0] for handler in registered().values()
            if handler.bits_kind and handler.litert_ops}


# bits kind -> the TFLite op the layer becomes: {"conv": "CONV_2D", "dense": "FULLY_CONNECTED", ...}.
OPS = _ops_by_kind()
_FORMAT = "tfmc.precision_table"
_VERSION = 1
_COSTS = ("ms", "bytes")
# A precision measured more than this fraction slower than int8 counts as slower (``slower_than_int8``).
SLOWER_TOLERANCE = 0.1


def precision_of(kind, weight_bits):
    """The precision LiteRT stores ``weight_bits`` in for a layer of ``kind``, with 8-bit activations.

    FLOAT_BITS (a layer kept float) is "float32"; otherwise the rounding of
    ``tfmc.export.bits.plan_op``: int4 at 4 bits or fewer on CONV_2D and
    FULLY_CONNECTED, int8 up to 8 bits (and for depthwise at any width up to
    8), float32 above 8.

    Example:
      >>> precision_of("depthwise", 4)
      'int8'
    """
    from tfmc.export.bits import plan_op

    if weight_bits == FLOAT_BITS:
        return "float32"
    return plan_op(OPS[kind], weight_bits, 8, static=True).weights


class PrecisionTable:
    """Measured cost of each layer at each precision.

    Args:
      layers: {layer name: {"kind": "conv" | "dense" | "depthwise",
        "ms": {precision: latency}, "bytes": {precision: stored bytes}}},
        in graph order; int4 appears only for kinds LiteRT stores int4 for.
      rest_bytes: bytes of the float32 .tflite besides the layers' own
        buffers (graph, biases folded from BatchNorm, other ops' constants).
      metadata: how it was measured (target, threads, runs, rounds).

    Example:
      >>> table = PrecisionTable.from_json("costs.json")  # doctest: +SKIP
      >>> table.cost("ms", {"conv1": 8, "logits": 4})  # doctest: +SKIP
    """

    def __init__(self, layers, rest_bytes=0, metadata=None):
        if not isinstance(layers, dict) or not layers:
            raise UsageError("a precision table needs at least one layer")
        self.layers = {}
        for name, entry in layers.items():
            kind = entry.get("kind")
            if kind not in OPS:
                raise UsageError(f"precision table layer {name!r}: kind must be one of {sorted(OPS)}, got {kind!r}")
            costs = {}
            for cost in _COSTS:
                values = {str(p): float(v) for p, v in entry[cost].items()}
                if set(values) - set(PRECISIONS) or not {"float32", "int8"} <= set(values):
                    raise UsageError(f"precision table layer {name!r}: {cost} must give float32 and int8 (and may "
                                     f"give float16, int4), got {sorted(values)}")
                if any(not np.isfinite(v) or v < 0 for v in values.values()):
                    raise UsageError(f"precision table layer {name!r}: {cost} must be finite and non-negative")
                costs[cost] = values
            self.layers[str(name)] = {"kind": kind, **costs}
        self.rest_bytes = int(rest_bytes)
        self.metadata = dict(metadata or {})

    def precisions(self, name):
        """The precisions measured for layer ``name``."""
        return [p for p in PRECISIONS if p in self._entry(name)["ms"]]

    def _entry(self, name):
        if name not in self.layers:
            raise UsageError(f"the precision table has no layer {name!r}; it covers {list(self.layers)} "
                             "(was it measured on another model?)")
        return self.layers[name]

    def layer_cost(self, cost, name, weight_bits):
        """``cost`` ("ms" or "bytes") of layer ``name`` stored at ``weight_bits`` (FLOAT_BITS: float32)."""
        entry = self._entry(name)
        precision = precision_of(entry["kind"], weight_bits)
        if precision not in entry[cost]:
            raise UsageError(f"layer {name!r} has no {precision} measurement in the precision table")
        return entry[cost][precision]

    def cost(self, cost, weight_bits):
        """Total ``cost`` of the model with ``weight_bits`` {layer: bits}; table layers not named are float32.

        Bytes include ``rest_bytes`` (an estimate of the .tflite size);
        milliseconds are the sum of the layers' own latencies.
        """
        total = self.rest_bytes if cost == "bytes" else 0.0
        for name in self.layers:
            total += self.layer_cost(cost, name, weight_bits.get(name, FLOAT_BITS))
        return float(total)

    def slower_than_int8(self, name, precision, tolerance=SLOWER_TOLERANCE):
        """Whether ``precision`` of layer ``name`` is measured slower than its int8 by more than ``tolerance``.

        A precision not measured counts as slower. The tolerance (a fraction
        of the int8 latency) keeps timing noise on microsecond layers from
        deciding; a latency budget still counts the measured figures.
        """
        ms = self._entry(name)["ms"]
        return precision not in ms or ms[precision] > ms["int8"] * (1 + tolerance)

    def faster_than_int8(self, name, precision, tolerance=SLOWER_TOLERANCE):
        """Whether ``precision`` of layer ``name`` is measured faster than its int8 by more than ``tolerance``."""
        ms = self._entry(name)["ms"]
        return precision in ms and ms[precision] < ms["int8"] * (1 - tolerance)

    def to_markdown(self):
        """The table as Markdown: latency (ms) and bytes per precision for each layer."""
        head = ["layer", "op"] + [f"{p} ms" for p in PRECISIONS] + [f"{p} bytes" for p in PRECISIONS]
        lines = ["| " + " | ".join(head) + " |", "|---|---|" + "---:|" * (2 * len(PRECISIONS))]
        for name, entry in self.layers.items():
            ms = [f"{entry['ms'][p]:.4f}" if p in entry["ms"] else "-" for p in PRECISIONS]
            size = [f"{int(entry['bytes'][p]):,}" if p in entry["bytes"] else "-" for p in PRECISIONS]
            lines.append(f"| {name} | {OPS[entry['kind']]} | " + " | ".join(ms + size) + " |")
        return "\n".join(lines)

    def get_config(self):
        return {"format": _FORMAT, "version": _VERSION, "metadata": self.metadata, "rest_bytes": self.rest_bytes,
                "layers": {n: {"kind": e["kind"], "ms": dict(e["ms"]), "bytes": dict(e["bytes"])}
                           for n, e in self.layers.items()}}

    @classmethod
    def from_config(cls, config):
        from tfmc import io as tfmc_io

        tfmc_io.check_format(config, _FORMAT, _VERSION, "precision table")
        return cls(config["layers"], config.get("rest_bytes", 0), config.get("metadata"))

    def to_json(self, path):
        """Write the table to ``path`` atomically and return the path."""
        from tfmc import io as tfmc_io

        return tfmc_io.write_json(path, self.get_config())

    @classmethod
    def from_json(cls, path):
        """Read a table written by ``to_json``; errors name the file and the problem."""
        import json

        try:
            with open(path, encoding="utf-8") as f:
                return cls.from_config(json.load(f))
        except (OSError, json.JSONDecodeError) as exc:
            raise UsageError(f"{path}: cannot read a precision table ({exc})") from None

    def __eq__(self, other):
        return isinstance(other, PrecisionTable) and self.get_config() == other.get_config()


def buffer_bytes(tflite_bytes):
    """Bytes of the constant tensors (weights, biases) stored in a .tflite flatbuffer.

    Counts each buffer a tensor of a subgraph holds once; the file's own
    metadata buffers (runtime version, conversion metadata) are left out.
    """
    from tfmc.export.flatbuffer import _schema

    schema = _schema()
    model = schema.Model.GetRootAsModel(bytes(tflite_bytes), 0)
    held = {model.Subgraphs(g).Tensors(t).Buffer() for g in range(model.SubgraphsLength())
            for t in range(model.Subgraphs(g).TensorsLength())}
    return int(sum(model.Buffers(i).DataLength() for i in held if 0 < i < model.BuffersLength()))


def layer_files(layer, input_shape, output_shape, precisions=PRECISIONS, seed=0):
    """{precision: .tflite bytes} of ``layer`` alone, with its weights and shapes, at each precision LiteRT stores.

    int8 and int4 files take and give int8 tensors (no QUANTIZE / DEQUANTIZE
    around the layer, as inside an int8 model); int4 is written only for
    CONV_2D and FULLY_CONNECTED (ai-edge-quantizer, int8 activations).
    """
    from tflite_bench.lut import single_layer_model
    from tfmc import export

    kind = graph_lib.layer_kind(layer)
    alone = single_layer_model(layer, input_shape, input_shape[-1], output_shape[-1])
    alone.layers[-1].set_weights(layer.get_weights())  # the layer's own weights: its real ranges and biases
    samples = np.random.default_rng(seed).normal(size=(32,) + tuple(input_shape[1:])).astype(np.float32)
    float_bytes = export._convert(alone, "float32", None, None)
    files = {"float32": float_bytes}
    with warnings.catch_warnings():  # the converter's and ai-edge-quantizer's notes on int8 I/O and calibration
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs were expected")
        warnings.filterwarnings("ignore", message=".*experimental_preserve_all_tensors")
        files.update(_quantized_files(alone, float_bytes, samples, kind, precisions))
    return {p: files[p] for p in precisions if p in files}


def _quantized_files(alone, float_bytes, samples, kind, precisions):
    from tfmc import export
    from tfmc.policy import BitPolicy

    files = {}
    for precision in precisions:
        if precision == "float16":
            files[precision] = export._convert(alone, "float16", None, None)
        elif precision == "int8":
            files[precision] = export._convert(alone, "int8", samples, "int8")
        elif precision == "int4" and precision_of(kind, 4) == "int4":
            policy = BitPolicy({alone.layers[-1].name: (4, 8)})
            files[precision] = export._quantize_mixed(alone, float_bytes, policy, samples)[0]
    return files


def build_precision_table(model, *, precisions=PRECISIONS, target="host", threads=1, runs=20, warmup=3, rounds=3,
                          binary=None, serial=None, progress=None):
    """Measure every Conv2D / DepthwiseConv2D / Dense layer of ``model`` at each precision LiteRT runs.

    Each layer's files (``layer_files``) are timed together by
    ``tflite_bench.alternate`` (``rounds`` alternating rounds of ``runs``
    inferences; the median of the rounds' medians), so a slow phase of a
    shared machine hits every precision of the layer alike.

    Args:
      model: a functional or Sequential tf_keras model with a fixed input size.
      precisions: the precisions to measure; float32 and int8 are required.
      target, threads, runs, warmup, binary, serial: passed to ``tflite_bench.run``
        (``target="android"`` with ``binary`` measures on a phone).
      rounds: alternating rounds per layer.
      progress: optional callable(layer name, done layers, total layers).

    Returns:
      PrecisionTable.

    Raises:
      UsageError: precisions without float32 and int8, or unknown ones.
      ModelLoadError: the model has no fixed input size.
      BenchError: a measurement failed.

    Example:
      >>> table = build_precision_table(model, threads=2)  # doctest: +SKIP
      >>> table.to_json("costs.json")  # doctest: +SKIP
    """
    import tflite_bench
    from tfmc import export
    from tfmc.cost import _check_known
    from tfmc.gmpq.spaces import searchable

    precisions = tuple(p for p in PRECISIONS if p in set(precisions))
    if not {"float32", "int8"} <= set(precisions):
        raise UsageError(f"a precision table needs float32 and int8 (and may add float16, int4), got {precisions}")
    calls = [c for c in graph_lib.layer_calls(model) if searchable(c.layer)]
    if not calls:
        raise UsageError(f"model {model.name!r} has no Conv2D, DepthwiseConv2D or Dense layer to measure")
    layers = {}
    with tempfile.TemporaryDirectory(prefix="tfmc_precisions_") as directory:
        for done, call in enumerate(calls):
            layer = call.layer
            _check_known(call.input_shapes[0], layer)
            files = layer_files(layer, call.input_shapes[0], call.output_shapes[0], precisions)
            paths = []
            for precision, data in files.items():
                paths.append(os.path.join(directory, f"{done}_{precision}.tflite"))
                with open(paths[-1], "wb") as f:  # scratch files in our own temporary folder
                    f.write(data)
            timed = tflite_bench.alternate(paths, rounds=rounds, target=target, threads=threads, runs=runs,
                                           warmup=warmup, binary=binary, serial=serial)
            layers[layer.name] = {
                "kind": graph_lib.layer_kind(layer),
                "ms": {p: tflite_bench.median_of_rounds_us(r) / 1e3 for p, r in zip(files, timed)},
                "bytes": {p: buffer_bytes(data) for p, data in files.items()},
            }
            if progress:
                progress(layer.name, done + 1, len(calls))
    whole = len(export._convert(model, "float32", None, None))
    rest = whole - sum(entry["bytes"]["float32"] for entry in layers.values())
    metadata = {"model": model.name, "target": target, "threads": threads, "runs": runs, "warmup": warmup,
                "rounds": rounds, "statistic": "median of round medians", "float32_tflite_bytes": whole}
    return PrecisionTable(layers, rest_bytes=max(rest, 0), metadata=metadata)


__all__ = ["OPS", "PRECISIONS", "PrecisionTable", "buffer_bytes", "build_precision_table", "layer_files",
           "precision_of"]
