"""Per-layer latency lookup tables over a grid of channel counts, measured on the target runtime (for AMC's latency budget).

Each Conv2D / Dense / DepthwiseConv2D / SeparableConv2D layer of a model is
rebuilt alone, with its own configuration and input size but the channel
counts of each grid point, converted to a float .tflite and timed with
``tflite_bench.run``. AMC then reads a pruned layer's latency from the table
instead of its MACs (He et al., AMC, ECCV 2018, section 3.3: the latency
constraint is measured on the target hardware).
"""
import math
import os
import tempfile

import numpy as np

DEFAULT_GRID = (0.25, 0.5, 0.75, 1.0)
_FORMAT = "tflite_bench.latency_table"
_VERSION = 1


def _axis_weights(grid, value):
    """Indices (lo, hi) and the weight of hi for linear interpolation on a sorted grid, clamped at its ends."""
    if len(grid) == 1 or value <= grid[0]:
        return 0, 0, 0.0
    if value >= grid[-1]:
        return len(grid) - 1, len(grid) - 1, 0.0
    hi = int(np.searchsorted(grid, value, side="right"))
    lo = hi - 1
    return lo, hi, (value - grid[lo]) / (grid[hi] - grid[lo])


class LatencyTable:
    """Measured latency (ms) per layer on a grid of (in_channels, out_channels).

    Args:
      layers: {layer name: {"kind": str, "in_channels": [ints, ascending],
        "out_channels": [ints, ascending], "ms": [[latency for each
        out_channels] for each in_channels]}}. Depthwise layers have one
        out_channels entry (their output follows their input).
      metadata: how it was measured (target, threads, runs, grid).

    Example:
      >>> table = LatencyTable.from_json("latency.json")  # doctest: +SKIP
      >>> table.latency_ms("conv2", 12, 24)  # doctest: +SKIP
      0.041
    """

    def __init__(self, layers, metadata=None):
        if not isinstance(layers, dict):
            raise TypeError(f"layers must be a dict of layer name -> grid, got {type(layers).__name__}")
        self.layers = {}
        for name, entry in layers.items():
            cin, cout = list(map(int, entry["in_channels"])), list(map(int, entry["out_channels"]))
            ms = np.asarray(entry["ms"], dtype=np.float64)
            if ms.shape != (len(cin), len(cout)):
                raise ValueError(f"layer {name!r}: ms has shape {ms.shape}, expected ({len(cin)}, {len(cout)})")
            if cin != sorted(set(cin)) or cout != sorted(set(cout)):
                raise ValueError(f"layer {name!r}: channel grids must be strictly ascending, got {cin} and {cout}")
            if not np.all(np.isfinite(ms)) or np.any(ms < 0):
                raise ValueError(f"layer {name!r}: latencies must be finite and non-negative")
            self.layers[str(name)] = {"kind": entry.get("kind", "conv"), "in_channels": cin,
                                      "out_channels": cout, "ms": ms}
        self.metadata = dict(metadata or {})

    def latency_ms(self, layer_name, in_channels, out_channels=None):
        """Latency of ``layer_name`` at the given channel counts, bilinear on the grid (clamped at its edges).

        Raises:
          KeyError: the table has no such layer.
        """
        if layer_name not in self.layers:
            raise KeyError(f"no latency measured for layer {layer_name!r}; the table has {sorted(self.layers)}")
        entry = self.layers[layer_name]
        i0, i1, wi = _axis_weights(entry["in_channels"], in_channels)
        if out_channels is None:
            out_channels = entry["out_channels"][-1]
        j0, j1, wj = _axis_weights(entry["out_channels"], out_channels)
        ms = entry["ms"]
        top = ms[i0, j0] * (1 - wj) + ms[i0, j1] * wj
        bottom = ms[i1, j0] * (1 - wj) + ms[i1, j1] * wj
        return float(top * (1 - wi) + bottom * wi)

    def total_ms(self, channels):
        """Sum of ``latency_ms`` over ``{layer name: (in_channels, out_channels)}``."""
        return float(sum(self.latency_ms(name, cin, cout) for name, (cin, cout) in channels.items()))

    def full_ms(self):
        """Latency of every layer at its largest measured channel counts (the unpruned model)."""
        return float(sum(entry["ms"][-1, -1] for entry in self.layers.values()))

    def get_config(self):
        return {
            "format": _FORMAT, "version": _VERSION, "metadata": self.metadata,
            "layers": {name: {"kind": e["kind"], "in_channels": e["in_channels"], "out_channels": e["out_channels"],
                              "ms": e["ms"].tolist()} for name, e in self.layers.items()},
        }

    @classmethod
    def from_config(cls, config):
        from tfmc import io as tfmc_io

        tfmc_io.check_format(config, _FORMAT, _VERSION, "latency table")
        return cls(config["layers"], metadata=config.get("metadata"))

    def to_json(self, path):
        """Write the table to ``path`` atomically and return the path."""
        from tfmc import io as tfmc_io

        return tfmc_io.write_json(path, self.get_config())

    @classmethod
    def from_json(cls, path):
        import json

        with open(path, encoding="utf-8") as f:
            try:
                return cls.from_config(json.load(f))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}: not valid JSON ({exc})") from None

    def __eq__(self, other):
        return isinstance(other, LatencyTable) and self.get_config() == other.get_config()


def channel_grid(channels, fractions):
    """Ascending distinct channel counts ``max(1, round(channels * f))`` for each fraction."""
    for f in fractions:
        if not 0 < f <= 1:
            raise ValueError(f"grid fractions must be in (0, 1], got {f!r}")
    return sorted({max(1, int(math.floor(channels * f + 0.5))) for f in fractions})


def single_layer_model(layer, input_shape, in_channels, out_channels):
    """A tf_keras model of ``layer``'s configuration alone, at the given channel counts (batch 1).

    Args:
      layer: a Conv2D / Dense / DepthwiseConv2D / SeparableConv2D layer.
      input_shape: the layer's input shape in its model, batch first.
      in_channels, out_channels: channel counts of the grid point
        (``out_channels`` is ignored for depthwise layers).
    """
    from tfmc._keras import keras
    from tfmc.errors import UsageError
    from tfmc.layers import handler_for

    handler = handler_for(layer)
    if not handler.latency:
        raise UsageError(f"layer {layer.name!r} is a {type(layer).__name__}; latency tables cover conv, dense, "
                         "depthwise and separable layers")
    config = handler.pruned_config(layer, layer.get_config(), range(in_channels), range(out_channels))
    inp = keras.Input(tuple(input_shape[1:-1]) + (in_channels,), batch_size=1)
    return keras.Model(inp, type(layer).from_config(config)(inp))


def _measure_ms(keras_model, directory, run_kwargs):
    import tflite_bench
    from tfmc.export import tflite_converter

    tflite = tflite_converter(keras_model).convert()
    path = os.path.join(directory, "layer.tflite")
    with open(path, "wb") as f:  # a scratch file in our own temporary folder
        f.write(tflite)
    return tflite_bench.run(path, **run_kwargs).typical_us / 1e3


def build_latency_table(model, *, grid=DEFAULT_GRID, target="host", threads=1, runs=20, warmup=3, binary=None,
                        serial=None, layers=None, progress=None):
    """Measure each Conv / Dense / Depthwise / Separable layer of ``model`` on a grid of channel counts.

    For a layer with C_in input and C_out output channels, the grid is
    ``channel_grid(C_in, grid) x channel_grid(C_out, grid)`` (depthwise:
    input counts only). Each point is a single-layer float .tflite timed by
    ``tflite_bench.run`` (median of ``runs``), so a table for an Android
    phone is built with ``target="android", binary=...``.

    Args:
      model: a functional or Sequential tf_keras model with fixed input size.
      grid: keep fractions in (0, 1].
      target, threads, runs, warmup, binary, serial: passed to tflite_bench.run.
      layers: names to measure (default: every conv / dense / depthwise / separable layer).
      progress: optional callable(layer name, done points, total points).

    Returns:
      LatencyTable.

    Raises:
      tfmc.UsageError: a named layer is not in the model or not a supported kind.
      tfmc.ModelLoadError: the model has no fixed input size.
      BenchError: a measurement failed.

    Example:
      >>> table = build_latency_table(model, grid=(0.5, 1.0), threads=2)  # doctest: +SKIP
      >>> table.to_json("latency.json")  # doctest: +SKIP
    """
    from tfmc import graph as graph_lib
    from tfmc.errors import ModelLoadError, UsageError
    from tfmc.layers import handler_for

    calls = [c for c in graph_lib.layer_calls(model) if handler_for(c.layer).latency]
    if layers is not None:
        known = {c.layer.name for c in calls}
        missing = sorted(set(layers) - known)
        if missing:
            raise UsageError(f"layers {missing} are not conv / dense / depthwise / separable layers of {model.name!r}")
        calls = [c for c in calls if c.layer.name in set(layers)]
    run_kwargs = dict(target=target, threads=threads, runs=runs, warmup=warmup, binary=binary, serial=serial)
    table = {}
    with tempfile.TemporaryDirectory(prefix="tflite_bench_lut_") as directory:
        for call in calls:
            layer, shape = call.layer, call.input_shapes[0]
            if shape is None or any(d is None for d in shape[1:]):
                raise ModelLoadError(f"layer {layer.name!r} has input shape {shape}; build the model with a fixed input size")
            kind = graph_lib.layer_kind(layer)
            groups = getattr(layer, "groups", 1)
            cins = [c for c in channel_grid(shape[-1], grid) if c % groups == 0] or [shape[-1]]
            couts = [call.output_shapes[0][-1]] if kind == "depthwise" else channel_grid(call.output_shapes[0][-1], grid)
            ms = np.zeros((len(cins), len(couts)))
            for i, cin in enumerate(cins):
                for j, cout in enumerate(couts):
                    ms[i, j] = _measure_ms(single_layer_model(layer, shape, cin, cout), directory, run_kwargs)
                    if progress:
                        progress(layer.name, i * len(couts) + j + 1, len(cins) * len(couts))
            table[layer.name] = {"kind": kind, "in_channels": cins, "out_channels": couts, "ms": ms}
    metadata = {"model": model.name, "target": target, "threads": threads, "runs": runs, "grid": list(grid),
                "statistic": "median"}
    return LatencyTable(table, metadata=metadata)


__all__ = ["DEFAULT_GRID", "LatencyTable", "build_latency_table", "channel_grid", "single_layer_model"]
