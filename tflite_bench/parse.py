"""Read the text TFLite's benchmark_model prints (every format it has used) into a Result.

The formats are described in shared/specs/tflite-bench.md: the
``Inference timings in us`` summary line (TF 2.3 onwards), the older
``Average inference timings in us`` line, the ``count=`` statistics lines
(newer builds add ``p5= median= p95=``), three kinds of memory line and the
delegate's ``Replacing N out of M node(s)`` line. Lines may carry an
``INFO:`` (or any ``LEVEL:``) prefix and numbers may be in scientific notation.
"""
import re

from tflite_bench.result import BenchError, Result

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_PREFIX = re.compile(r"^\s*(?:(?:INFO|WARNING|ERROR|VERBOSE|DEBUG)\s*:\s*)+")

# key=value pairs of the count= line -> Result fields.
_STATS_KEYS = {
    "count": "count", "min": "min_us", "max": "max_us", "avg": "mean_us", "std": "std_us",
    "p5": "p5_us", "median": "median_us", "p95": "p95_us",
}
# "Name: value" items of the summary lines -> Result fields.
_SUMMARY_KEYS = {
    "init": "init_us",
    "first inference": "first_us",
    "warmup (avg)": "warmup_mean_us",
    "warmup": "warmup_mean_us",
    "inference (avg)": "mean_us",
    "inference": "mean_us",
}
_SUMMARY = re.compile(r"(?:Average\s+)?Inference timings in us:\s*(?P<items>.*)$", re.IGNORECASE)
_SUMMARY_ITEM = re.compile(rf"^\s*(?P<key>[A-Za-z][A-Za-z ()]*?)\s*:\s*(?P<value>{_NUMBER})\s*$")
_COUNT = re.compile(r"^count=")
_KEY_VALUE = re.compile(rf"(\w+)=({_NUMBER})")
_PEAK = re.compile(rf"^Peak memory footprint \(MB\):\s*init=(?P<init>{_NUMBER})\s+overall=(?P<overall>{_NUMBER})")
_DELTA = re.compile(
    rf"^Memory footprint delta from the start of the tool \(MB\):\s*init=(?P<init>{_NUMBER})\s+overall=(?P<overall>{_NUMBER})"
)
_MONITORED = re.compile(rf"^Overall peak memory footprint \(MB\) via periodic monitoring:\s*(?P<peak>{_NUMBER})")
_DELEGATE = re.compile(r"Replacing (?P<done>\d+) out of (?P<total>\d+) node\(s\) with delegate \((?P<name>[^)]*)\)")


def _strip(line):
    return _PREFIX.sub("", line).strip()


def _parse_summary(items, line):
    values = {}
    for item in items.split(","):
        if not item.strip():
            continue
        match = _SUMMARY_ITEM.match(item)
        key = match and match.group("key").strip().lower()
        if not match or key not in _SUMMARY_KEYS:
            raise BenchError(f"could not read {item.strip()!r} in the timing line {line!r}")
        values[_SUMMARY_KEYS[key]] = float(match.group("value"))
    if "mean_us" not in values:
        raise BenchError(f"the timing line {line!r} has no inference time")
    return values


def _parse_stats(line):
    pairs = dict(_KEY_VALUE.findall(line))
    stats = {field: float(pairs[key]) for key, field in _STATS_KEYS.items() if key in pairs}
    if "count" not in stats or "avg" not in pairs:
        raise BenchError(f"could not read the statistics line {line!r} (expected count=... avg=...)")
    stats["count"] = int(stats["count"])
    return stats


def parse(text):
    """Read benchmark_model's output into a Result.

    When several ``count=`` lines are printed (warm-up, then timed runs) the
    last one describes the timed runs. The summary line's ``Inference (avg)``
    is the mean; ``median``, ``p5`` and ``p95`` are known only from builds
    that print them. ``Peak memory footprint (MB): init= overall=`` and
    ``Overall peak memory footprint (MB) via periodic monitoring:`` give the
    peak; the ``delta`` line gives init / overall only.

    Args:
      text: the tool's standard output (and error), as one string.

    Returns:
      Result with ``source="parsed"`` and ``raw=text``.

    Raises:
      BenchError: no timing line was found (the message quotes the start of
        the text), or a timing line could not be read (it quotes the line).

    Example:
      >>> parse("Inference timings in us: Init: 855, First inference: 49060, "
      ...       "Warmup (avg): 34825.1, Inference (avg): 33209.4").mean_us
      33209.4
    """
    if not isinstance(text, str):
        raise TypeError(f"parse expects the tool's output as str, got {type(text).__name__}")
    fields = {}
    stats = None
    found_summary = False
    for raw_line in text.splitlines():
        line = _strip(raw_line)
        summary = _SUMMARY.search(line)
        if summary:
            fields.update(_parse_summary(summary.group("items"), line))
            found_summary = True
        elif _COUNT.match(line):
            stats = _parse_stats(line)
        elif _PEAK.match(line):
            m = _PEAK.match(line)
            fields.update(memory_init_mb=float(m["init"]), memory_overall_mb=float(m["overall"]),
                          peak_memory_mb=float(m["overall"]))
        elif _DELTA.match(line):
            m = _DELTA.match(line)
            fields.update(memory_init_mb=float(m["init"]), memory_overall_mb=float(m["overall"]))
        elif _MONITORED.match(line):
            fields["peak_memory_mb"] = float(_MONITORED.match(line)["peak"])
        elif _DELEGATE.search(line):
            m = _DELEGATE.search(line)
            fields.update(delegate=m["name"], delegated_nodes=int(m["done"]), total_nodes=int(m["total"]))
    if not found_summary and stats is None:
        shown = text.strip()
        shown = shown if len(shown) <= 300 else shown[:300] + "..."
        raise BenchError(f"no benchmark_model timings found in the text: {shown!r}")
    if stats is not None:
        # The statistics line is more precise than the rounded summary mean.
        fields.update(stats)
    return Result(source="parsed", raw=text, **fields)
