"""The `tflite-bench` command: time a .tflite here or on a phone, print a table or JSON, or compare two models."""
import argparse
import json
import os
import sys

from tflite_bench.result import BenchError

_ROWS = (
    ("init", "init_us"), ("first inference", "first_us"), ("warm-up mean", "warmup_mean_us"),
    ("mean", "mean_us"), ("median", "median_us"), ("std", "std_us"), ("p5", "p5_us"), ("p95", "p95_us"),
)


def build_parser():
    p = argparse.ArgumentParser(
        prog="tflite-bench",
        description=(
            "Time a .tflite model: with the LiteRT interpreter on this machine (default), with a local "
            "benchmark_model binary (--binary), or on an Android phone over adb (--android --binary)."
        ),
    )
    p.add_argument("model", help="the .tflite file")
    p.add_argument("--threads", type=int, default=1, help="threads (default 1)")
    p.add_argument("--runs", type=int, default=50, help="timed inferences (default 50)")
    p.add_argument("--warmup", type=int, default=5, help="warm-up inferences (default 5)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--android", action="store_true", help="run on an Android phone over adb (needs --binary)")
    p.add_argument("--binary", help="benchmark_model executable (for the phone with --android, else for this machine)")
    p.add_argument("--serial", help="Android device serial, when several are attached")
    p.add_argument("--taskset", help="Android CPU mask in hex, e.g. f0 (big cores on many phones)")
    p.add_argument("--use-gpu", action="store_true", help="benchmark_model --use_gpu=true")
    p.add_argument("--use-nnapi", action="store_true", help="benchmark_model --use_nnapi=true")
    p.add_argument("--no-xnnpack", action="store_true", help="host interpreter: built-in kernels, no XNNPACK")
    p.add_argument("--compare", metavar="OTHER", help="a second .tflite: alternate the two and report the ratio of medians")
    p.add_argument("--rounds", type=int, default=5, help="with --compare: alternating rounds (default 5)")
    return p


def _run_kwargs(args):
    return dict(
        target="android" if args.android else "host", threads=args.threads, runs=args.runs, warmup=args.warmup,
        binary=args.binary, serial=args.serial, taskset=args.taskset, use_gpu=args.use_gpu,
        use_nnapi=args.use_nnapi, use_xnnpack=not args.no_xnnpack,
    )


def _format(value, unit="us"):
    if value is None:
        return "-"
    return f"{value:,.1f} {unit}" if value < 10_000 else f"{value / 1000:,.2f} ms"


def format_table(result, title):
    """A two-column text table of one Result."""
    lines = [title]
    for label, field in _ROWS:
        lines.append(f"  {label:<17}{_format(getattr(result, field)):>14}")
    if result.count is not None:
        lines.append(f"  {'timed runs':<17}{result.count:>14}")
    if result.peak_memory_mb is not None:
        lines.append(f"  {'peak memory':<17}{result.peak_memory_mb:>11.2f} MB")
    if result.delegate_coverage is not None:
        lines.append(f"  {'delegate':<17}{result.delegated_nodes}/{result.total_nodes} nodes on {result.delegate}")
    return "\n".join(lines)


def compare(path_a, path_b, *, rounds=5, **run_kwargs):
    """Alternate two models (A B, then B A, ...) and return (results A, results B, median ratio A / B).

    Each side's figure is the median of its round figures (see
    ``tflite_bench.alternate`` and ``median_of_rounds_us``).

    Raises:
      BenchError: rounds is not a positive integer, or a run failed.
    """
    import tflite_bench

    results_a, results_b = tflite_bench.alternate((path_a, path_b), rounds=rounds, **run_kwargs)
    ratio = tflite_bench.median_of_rounds_us(results_a) / tflite_bench.median_of_rounds_us(results_b)
    return results_a, results_b, ratio


def main(argv=None):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)
    import tflite_bench

    try:
        if args.android and not args.binary:
            raise BenchError("--android needs --binary PATH (a benchmark_model built for the phone)")
        if args.compare:
            a, b, ratio = compare(args.model, args.compare, rounds=args.rounds, **_run_kwargs(args))
            median_a, median_b = tflite_bench.median_of_rounds_us(a), tflite_bench.median_of_rounds_us(b)
            if args.json:
                print(json.dumps({
                    "a": {"model": args.model, "median_us": median_a, "rounds": [r.to_dict(False) for r in a]},
                    "b": {"model": args.compare, "median_us": median_b, "rounds": [r.to_dict(False) for r in b]},
                    "ratio": ratio,
                }, indent=2))
            else:
                print(f"{'model':<40}{'median':>14}")
                print(f"{args.model:<40}{_format(median_a):>14}")
                print(f"{args.compare:<40}{_format(median_b):>14}")
                print(f"ratio of medians (first / second): {ratio:.3f} over {args.rounds} alternating rounds")
            return 0
        result = tflite_bench.run(args.model, **_run_kwargs(args))
    except BenchError as exc:
        print(f"tflite-bench: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(result.to_json(include_raw=False))
    else:
        print(format_table(result, f"{args.model} ({result.source}, {args.threads} thread(s))"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
