"""The ``tfmc`` command: one entry point, one module per subcommand in tfmc/commands/."""
import argparse
import importlib
import math
import os
import signal
import sys

from tfmc.errors import TfmcError, UsageError

# Each module in tfmc/commands/ defines register(subparsers), which adds its
# parser and sets ``run`` (args -> exit code) as the default.
_COMMANDS = ("profile", "prune", "latency_table", "precision_table", "quantize", "export", "demo")

__all__ = ["UsageError", "add_model_argument", "add_overwrite_argument", "add_strategy_argument", "build_parser", "check_numbers", "main"]


def add_strategy_argument(parser):
    """``--strategy``: the tf.distribute strategy that training steps run under."""
    from tfmc.train import STRATEGIES

    parser.add_argument("--strategy", default="default", choices=STRATEGIES,
                        help="tf.distribute strategy for training steps (default: one device)")


def add_model_argument(parser, help_text=".keras / .h5 file or SavedModel folder"):
    """The positional MODEL and ``--trust-model-code``: every command that loads a model takes both."""
    parser.add_argument("model", help=help_text)
    parser.add_argument("--trust-model-code", action="store_true",
                        help="load a model whose Lambda layers or unregistered classes run Python code of the "
                             "file's own (only for files from a source you trust)")


def add_overwrite_argument(parser):
    """``--overwrite``: write into a --out that holds other files, replacing only tfmc's own."""
    parser.add_argument("--overwrite", action="store_true",
                        help="write into an --out that already exists or holds other files; only files tfmc wrote "
                             "are replaced, never the others")


# What each rule of check_numbers accepts, and how its message says so.
_NUMBER_RULES = {
    "count": (lambda v: v >= 1, ">= 1"),
    "count0": (lambda v: v >= 0, ">= 0"),
    "positive": (lambda v: math.isfinite(v) and v > 0, "a finite number > 0"),
    "non_negative": (lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0"),
}


def check_numbers(args, **rules):
    """Raise UsageError for the first numeric option outside its rule, before any work is done.

    Args:
      args: the parsed arguments.
      **rules: option destination -> "count" (>= 1), "count0" (>= 0),
        "positive" (finite, > 0) or "non_negative" (finite, >= 0). Options
        left at None are skipped.

    Example:
      >>> args = argparse.Namespace(calib_images=200, qat_lr=0.0)
      >>> check_numbers(args, calib_images="count", qat_lr="positive")
      Traceback (most recent call last):
      tfmc.errors.UsageError: --qat-lr must be a finite number > 0, got 0.0
    """
    for dest, rule in rules.items():
        value = getattr(args, dest)
        accepts, wanted = _NUMBER_RULES[rule]
        if value is not None and not accepts(value):
            raise UsageError(f"--{dest.replace('_', '-')} must be {wanted}, got {value}")


def build_parser():
    parser = argparse.ArgumentParser(prog="tfmc", description="Compress tf_keras models for mobile: prune, quantize, export.")
    parser.add_argument("--verbose", action="store_true",
                        help="show TensorFlow's own log lines (hidden by default)")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in _COMMANDS:
        try:
            module = importlib.import_module(f"tfmc.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"tfmc.commands.{name}":
                continue  # that subcommand is not built yet
            raise
        module.register(sub)
    return parser


def main(argv=None):
    """Run one ``tfmc`` subcommand and return its exit code.

    The user's mistakes (a ``tfmc.TfmcError``) print one line,
    ``tfmc CMD: error: ...``, and return 2, as argparse does for a bad
    option. Any other exception is a bug in tfmc and propagates with its
    traceback (exit code 1 from the console script).
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tfmc  # noqa: F401  sets TF_USE_LEGACY_KERAS before TensorFlow loads

    args = build_parser().parse_args(argv)
    previous = _exit_on_sigterm()
    try:
        return args.run(args) or 0
    except TfmcError as exc:
        print(f"tfmc {args.command}: error: {exc}", file=sys.stderr)
        return 2
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _terminate(signum, frame):
    raise SystemExit(128 + signum)


def _exit_on_sigterm():
    """Turn SIGTERM into SystemExit, so that staging folders and temporaries are removed as the run ends.

    Returns the previous handler, or None where handlers cannot be set (not
    the main thread).
    """
    try:
        return signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # signal.signal works only in the main thread
        return None


if __name__ == "__main__":
    sys.exit(main())
