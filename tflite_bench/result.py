"""Result: one benchmark run's timings (microseconds), memory and delegate coverage."""
import dataclasses
import json

import numpy as np

# Fields printed by `tflite-bench` and kept by to_dict, in reading order.
TIMING_FIELDS = ("init_us", "first_us", "warmup_mean_us", "mean_us", "median_us", "std_us", "p5_us", "p95_us")


class BenchError(RuntimeError):
    """A benchmark could not run or its output could not be read."""


@dataclasses.dataclass
class Result:
    """Timings of one benchmark, in microseconds; ``None`` where the source did not say.

    Attributes:
      init_us: interpreter creation and tensor allocation.
      first_us: the first inference.
      warmup_mean_us: mean of the warm-up inferences.
      mean_us, median_us, std_us, p5_us, p95_us, min_us, max_us: statistics
        of the timed inferences.
      count: how many timed inferences.
      peak_memory_mb: peak memory footprint, when the tool reported it.
      memory_init_mb, memory_overall_mb: memory after init / overall, as
        benchmark_model prints them.
      delegate: the delegate's name, e.g. ``TfLiteXNNPackDelegate``.
      delegated_nodes, total_nodes: how many of the graph's nodes the
        delegate took (``delegate_coverage`` is their ratio).
      source: ``host``, ``android``, ``binary`` or ``parsed``.
      raw: the text the numbers were read from (or, on the host, a summary).
      samples_us: the individual timed inferences, when known (host runs).
    """

    init_us: float = None
    first_us: float = None
    warmup_mean_us: float = None
    mean_us: float = None
    median_us: float = None
    std_us: float = None
    p5_us: float = None
    p95_us: float = None
    min_us: float = None
    max_us: float = None
    count: int = None
    peak_memory_mb: float = None
    memory_init_mb: float = None
    memory_overall_mb: float = None
    delegate: str = None
    delegated_nodes: int = None
    total_nodes: int = None
    source: str = "parsed"
    raw: str = ""
    samples_us: list = dataclasses.field(default=None, repr=False)

    @property
    def delegate_coverage(self):
        """Fraction of the graph's nodes the delegate ran, or None when unknown."""
        if self.delegated_nodes is None or not self.total_nodes:
            return None
        return self.delegated_nodes / self.total_nodes

    @property
    def typical_us(self):
        """The median when known, else the mean: the figure comparisons use."""
        return self.median_us if self.median_us is not None else self.mean_us

    def to_dict(self, include_raw=True):
        """All fields as a JSON-ready dict (plus ``delegate_coverage``)."""
        out = dataclasses.asdict(self)
        out["delegate_coverage"] = self.delegate_coverage
        if not include_raw:
            out.pop("raw")
            out.pop("samples_us")
        return out

    def to_json(self, include_raw=True):
        return json.dumps(self.to_dict(include_raw), indent=2)


def summarize(samples_us):
    """{mean, median, std, p5, p95, min, max, count} of a list of timings (microseconds)."""
    values = np.asarray(samples_us, dtype=np.float64)
    if values.size == 0:
        raise ValueError("no timings to summarize")
    return {
        "mean_us": float(values.mean()),
        "median_us": float(np.median(values)),
        "std_us": float(values.std()),
        "p5_us": float(np.percentile(values, 5)),
        "p95_us": float(np.percentile(values, 95)),
        "min_us": float(values.min()),
        "max_us": float(values.max()),
        "count": int(values.size),
    }
