"""The outcome harness every benchmark uses: accuracy with its standard error, model facts, host latency, paired seeds, tables."""
import dataclasses
import json
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

import tfmc  # noqa: E402,F401  selects Keras 2 before anything imports tensorflow
from tfmc import train  # noqa: E402
from tfmc.pipeline import tflite_accuracy, time_alternating  # noqa: E402

_ALIGN = {"l": "---", "r": "---:", "c": ":---:"}


def accuracy_standard_error(accuracy, n):
    """The binomial standard error sqrt(p (1 - p) / n) of an accuracy ``p`` read on ``n`` images.

    Args:
      accuracy: the fraction correct, in [0, 1].
      n: how many images it was read on (> 0).

    Returns:
      The standard error, as a fraction (0.03 for 90 of 100 correct).

    Raises:
      ValueError: ``n`` is not positive or ``accuracy`` is outside [0, 1].
    """
    if n <= 0:
        raise ValueError(f"n must be a positive image count, got {n!r}")
    if not 0.0 <= accuracy <= 1.0:
        raise ValueError(f"accuracy must be in [0, 1], got {accuracy!r}")
    return math.sqrt(accuracy * (1.0 - accuracy) / n)


@dataclasses.dataclass(frozen=True)
class Score:
    """Top-1 accuracy on ``n`` images; ``standard_error`` is its binomial standard error."""

    accuracy: float
    n: int

    @property
    def standard_error(self):
        return accuracy_standard_error(self.accuracy, self.n)

    def __str__(self):
        return f"{self.accuracy:.4f} +- {self.standard_error:.4f}"


def _is_tflite(model):
    return isinstance(model, (str, os.PathLike, bytes, bytearray, memoryview))


def score(model, x, y, *, threads=1):
    """Top-1 accuracy of a Keras model or a .tflite classifier on the split (x, y).

    A .tflite runs in the LiteRT interpreter one image at a time
    (``tfmc.pipeline.tflite_accuracy``); an int8-input file gets its images
    quantized with the file's own scale and zero point.

    Args:
      model: a tf_keras model, or a .tflite file's path or bytes.
      x: images, N x the model's input shape, float.
      y: integer labels, N.
      threads: LiteRT interpreter threads (.tflite only).

    Returns:
      Score: accuracy, n and the accuracy's standard error.

    Raises:
      ValueError: the split is empty or x and y differ in length.

    Example:
      >>> str(score("model.tflite", dataset.x_test, dataset.y_test))  # doctest: +SKIP
      '0.9012 +- 0.0030'
    """
    if len(x) != len(y) or not len(y):
        raise ValueError(f"a split needs as many labels as images, at least one: got {len(x)} images, {len(y)} labels")
    if _is_tflite(model):
        accuracy = tflite_accuracy(model, x, y, threads=threads)
    else:
        accuracy = train.accuracy(model, x, y)
    return Score(accuracy=accuracy, n=len(y))


@dataclasses.dataclass(frozen=True)
class ModelFacts:
    """Multiply-accumulates, parameters and (when a file is given) the .tflite size in bytes."""

    macs: int
    params: int
    tflite_bytes: int = None


def model_facts(model, tflite=None):
    """MACs and parameters of a Keras model (``tfmc.count_macs`` / ``count_params``), and its .tflite's size.

    Args:
      model: a tf_keras model.
      tflite: optional path of the model's .tflite file.

    Returns:
      ModelFacts; ``tflite_bytes`` is None without a file.
    """
    size = os.path.getsize(tflite) if tflite is not None else None
    return ModelFacts(macs=tfmc.count_macs(model), params=tfmc.count_params(model), tflite_bytes=size)


@dataclasses.dataclass(frozen=True)
class HostLatency:
    """One file's median-of-round-medians latency and the reference's, in milliseconds."""

    ms: float
    reference_ms: float

    @property
    def ratio(self):
        """Latency as a fraction of the reference's (0.5: half the time)."""
        return self.ms / self.reference_ms

    @property
    def speedup(self):
        """The reference's latency over this one's (2.0: twice as fast)."""
        return self.reference_ms / self.ms


def host_latency(paths, *, reference=0, rounds=5, threads=1, runs=50, warmup=5):
    """Time .tflite files on this machine in alternating rounds and set each against a reference.

    Every round runs every file (``tflite_bench.alternate`` through
    ``tfmc.pipeline.time_alternating``: in order, then reversed), so drift on
    a shared machine hits all alike; a file's figure is the median over
    rounds of each round's median inference.

    Args:
      paths: distinct .tflite files.
      reference: index in ``paths`` of the file the others are compared with.
      rounds: alternating rounds.
      threads: LiteRT interpreter threads.
      runs: timed inferences per file per round.
      warmup: untimed inferences before them.

    Returns:
      A HostLatency per path, in order.

    Raises:
      ValueError: a path is listed twice or ``reference`` is not an index of ``paths``.
      tflite_bench.BenchError: a file is missing or LiteRT cannot run it.
    """
    paths = [os.fspath(p) for p in paths]
    if len(set(paths)) != len(paths):
        raise ValueError(f"host_latency needs distinct files, got {paths}")
    if not 0 <= reference < len(paths):
        raise ValueError(f"reference must index one of the {len(paths)} files, got {reference!r}")
    ms = time_alternating(paths, threads=threads, rounds=rounds, runs=runs, warmup=warmup)
    return [HostLatency(ms=ms[p], reference_ms=ms[paths[reference]]) for p in paths]


def mean_and_std(values):
    """The mean of per-seed figures and their sample standard deviation (0 for a single value).

    Args:
      values: a non-empty sequence of numbers.

    Returns:
      (mean, standard deviation) as floats.
    """
    values = np.asarray(values, dtype=np.float64)
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def mean_and_error(values):
    """The mean of per-seed figures and its standard error, sample std / sqrt(n), which is nan for one value."""
    mean, std = mean_and_std(values)
    return mean, std / math.sqrt(len(values)) if len(values) > 1 else float("nan")


@dataclasses.dataclass(frozen=True)
class Paired:
    """Per-seed differences a - b: their mean, its standard error, and how often a won, tied and lost."""

    mean: float
    standard_error: float
    wins: int
    ties: int
    losses: int

    @property
    def n(self):
        return self.wins + self.ties + self.losses

    def clears(self, sigmas=2.0):
        """Whether the mean is more than ``sigmas`` standard errors from zero (never, with one seed)."""
        return abs(self.mean) > sigmas * self.standard_error

    @property
    def record(self):
        """'wins/ties/losses', e.g. '3/0/2'."""
        return f"{self.wins}/{self.ties}/{self.losses}"


def paired(a, b, scale=1.0):
    """Compare two score lists seed by seed: a[i] and b[i] come from the same seed.

    Args:
      a, b: equal-length per-seed scores.
      scale: multiplies the differences (100 turns accuracy fractions into points).

    Returns:
      Paired: mean of scale * (a - b), its standard error (sample std of the
      differences / sqrt(n); nan for one seed), and wins, ties and losses of a.

    Raises:
      ValueError: the lists are empty or differ in length.

    Example:
      >>> p = paired([0.91, 0.93, 0.90], [0.90, 0.93, 0.92], scale=100)
      >>> round(p.mean, 2), p.record
      (-0.33, '1/1/1')
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(a) != len(b) or not len(a):
        raise ValueError(f"paired scores need two equal, non-empty lists, got {len(a)} and {len(b)}")
    diffs = scale * (a - b)
    mean, error = mean_and_error(diffs)
    return Paired(mean=mean, standard_error=error, wins=int(np.sum(diffs > 0)), ties=int(np.sum(diffs == 0)),
                  losses=int(np.sum(diffs < 0)))


def markdown_table(headers, rows, align=None):
    """A Markdown table: the header row, the alignment row, one line per row.

    Args:
      headers: the column titles.
      rows: sequences of cells, one per column; each is written with str(),
        a '|' in it escaped.
      align: one letter per column, 'l' (left), 'r' (right) or 'c'
        (centre), e.g. "lrr"; None: the first column left, the rest right.

    Returns:
      The table as one string, lines joined by newlines.

    Raises:
      ValueError: ``align`` or a row does not have one entry per column, or
        ``align`` holds a letter other than l, r, c.

    Example:
      >>> print(markdown_table(["model", "MACs"], [["a", "1,000"]]))
      | model | MACs |
      |---|---:|
      | a | 1,000 |
    """
    headers = list(headers)
    align = "l" + "r" * (len(headers) - 1) if align is None else align
    if len(align) != len(headers) or set(align) - set(_ALIGN):
        raise ValueError(f"align needs one of l, r, c per column ({len(headers)}), got {align!r}")

    def line(cells):
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    lines = [line(headers), "|" + "|".join(_ALIGN[a] for a in align) + "|"]
    for index, row in enumerate(rows):
        row = list(row)
        if len(row) != len(headers):
            raise ValueError(f"row {index} has {len(row)} cells for {len(headers)} columns: {row}")
        lines.append(line(row))
    return "\n".join(lines)


class ResultsFile:
    """Finished pieces of a long benchmark, one JSON line each, so a rerun of the same command skips them.

    Every record holds ``settings`` (the arguments its figures depend on);
    records of other settings in the same file are ignored, and a torn last
    line (a crash while writing) is dropped.

    Example:
      >>> results = ResultsFile("bench/.cache/amc_methods.jsonl", {"model": "digits_cnn", "seeds": 5})
      >>> if ("random", 0) not in results.done:
      ...     results.add(("random", 0), {"before": 0.91})
    """

    def __init__(self, path, settings):
        self.path, self.settings = path, json.loads(json.dumps(settings))
        self.done = {}
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                for line in f:
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError:
                        continue
                    if record.get("settings") == self.settings:
                        self.done[tuple(record["key"])] = record["value"]

    def add(self, key, value):
        """Record ``value`` under ``key`` (a tuple of JSON scalars) and flush it to disk."""
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        torn = False
        if os.path.exists(self.path) and os.path.getsize(self.path):
            with open(self.path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                torn = f.read(1) != b"\n"  # a crash mid-line: the next record starts a line of its own
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(("\n" if torn else "") + json.dumps({"settings": self.settings, "key": list(key), "value": value}) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.done[tuple(key)] = json.loads(json.dumps(value))
