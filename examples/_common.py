"""Helpers shared by the example scripts: argument types, the output folder and the one-line error exit.

The scripts import this module as ``_common``: Python puts the folder of the
script being run on ``sys.path``, so ``python examples/amc_mobilenet.py``
finds it from any working directory.
"""
import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tfmc  # noqa: E402,F401  must come before tensorflow: it selects Keras 2 (tf_keras)


class UsageError(Exception):
    """Bad input from the user; the script prints it as one line and exits with code 2."""


def fraction(text):
    """argparse type: a float strictly between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1), got {text}")
    return value


def positive_float(text):
    """argparse type: a float above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
    return value


def count(text):
    """argparse type: an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def timed_logger():
    """A ``log(text)`` that prints to stderr with the seconds since this call."""
    start = time.monotonic()

    def log(text):
        print(f"[{time.monotonic() - start:6.1f} s] {text}", file=sys.stderr, flush=True)

    return log


def load_dataset(args, log, **kwargs):
    """``tfmc.data.load`` from the scripts' --data / --image-size / --seed / --data-dir, logged in one line."""
    from tfmc import data

    dataset = data.load(args.data, image_size=args.image_size, seed=args.seed, data_dir=args.data_dir, **kwargs)
    log(f"data {dataset.name}: {len(dataset.x_train)} train / {len(dataset.x_val)} val / "
        f"{len(dataset.x_test)} test images of {dataset.input_shape}, {dataset.num_classes} classes")
    return dataset


def make_out_dir(path):
    """Create the output folder (and its parents); refuse a path that is a file."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise UsageError(f"--out {path!r} exists and is not a folder")
    os.makedirs(path, exist_ok=True)
    return path


def write_results(out_dir, results, table):
    """Write results.json and summary.md (the printed table) into ``out_dir``."""
    from tfmc import io

    io.write_json(os.path.join(out_dir, "results.json"), results)
    io.write_text(os.path.join(out_dir, "summary.md"), table + "\n")


def markdown_table(header, rows):
    """A Markdown table from a header tuple and rows of already formatted cells."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def run_main(prog, main, argv=None):
    """Call ``main(argv)``; expected failures print ``prog: error: message`` on stderr and give exit code 2."""
    import tflite_bench
    from tfmc.data import DataError
    from tfmc.export import ExportError
    from tfmc.io import ModelLoadError

    try:
        return main(argv) or 0
    except (UsageError, DataError, ModelLoadError, ExportError, tflite_bench.BenchError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2

