"""tflite_bench: time .tflite models on this machine or on an Android phone, and read benchmark_model output.

Example:
  >>> import tflite_bench
  >>> result = tflite_bench.run("model.tflite", threads=2, runs=50)  # doctest: +SKIP
  >>> result.median_us  # doctest: +SKIP
"""
import functools

from tflite_bench.parse import parse
from tflite_bench.result import BenchError, Result

TARGETS = ("host", "android")


def run(path, *, target="host", threads=1, runs=50, warmup=5, binary=None, serial=None, taskset=None,
        use_gpu=False, use_nnapi=False, use_xnnpack=True, extra_args=()):
    """Time a .tflite model and return a Result (microseconds).

    ``target="host"`` without ``binary`` uses the LiteRT interpreter in this
    process; with ``binary`` it runs that benchmark_model executable here.
    ``target="android"`` pushes the model and ``binary`` to the phone over adb.

    Args:
      path: the .tflite file.
      target: "host" or "android".
      threads, runs, warmup: threads, timed inferences, warm-up inferences.
      binary: a benchmark_model executable (required for android).
      serial: the Android device, when several are attached.
      taskset: Android CPU mask in hex, e.g. "f0".
      use_gpu, use_nnapi: benchmark_model delegates (binary runs only).
      use_xnnpack: host interpreter only; False runs the built-in kernels.
      extra_args: further benchmark_model flags (binary runs only).

    Returns:
      Result.

    Raises:
      BenchError: bad arguments, or the run failed (the message says why).

    Example:
      >>> run("model.tflite", target="android", binary="benchmark_model", taskset="f0")  # doctest: +SKIP
    """
    if target not in TARGETS:
        raise BenchError(f"target must be one of {TARGETS}, got {target!r}")
    if target == "android":
        if binary is None:
            raise BenchError("target 'android' needs binary=PATH of a benchmark_model built for the phone")
        from tflite_bench.android import run_android

        return run_android(path, binary, serial=serial, threads=threads, runs=runs, warmup=warmup, taskset=taskset,
                           use_gpu=use_gpu, use_nnapi=use_nnapi, extra_args=extra_args)
    if serial is not None or taskset is not None:
        raise BenchError("serial and taskset apply to target 'android' only")
    if binary is not None:
        from tflite_bench.host import run_binary

        return run_binary(path, binary, threads=threads, runs=runs, warmup=warmup, use_gpu=use_gpu,
                          use_nnapi=use_nnapi, extra_args=extra_args)
    if use_gpu or use_nnapi or extra_args:
        raise BenchError("use_gpu, use_nnapi and extra_args need a benchmark_model binary (binary=PATH)")
    from tflite_bench.host import run_host

    return run_host(path, threads=threads, runs=runs, warmup=warmup, use_xnnpack=use_xnnpack)


def alternate_calls(calls, *, rounds=5):
    """Call several timers in alternating rounds; return each one's list of results.

    Round 0 calls them in order, round 1 in reverse, and so on, so slow
    phases of a shared machine (or a warming phone) hit every timer alike.

    Args:
      calls: functions of no arguments, each timing one thing.
      rounds: how many rounds (each calls every function once).

    Returns:
      A list with, for each function, its ``rounds`` results.

    Raises:
      BenchError: rounds is not a positive integer.

    Example:
      >>> host, tool = alternate_calls([lambda: run("a.tflite").median_us, time_with_tool], rounds=7)  # doctest: +SKIP
    """
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise BenchError(f"rounds must be an integer >= 1, got {rounds!r}")
    results = [[] for _ in calls]
    order = list(range(len(calls)))
    for round_index in range(rounds):
        for index in (order if round_index % 2 == 0 else order[::-1]):
            results[index].append(calls[index]())
    return results


def alternate(paths, *, rounds=5, **run_kwargs):
    """Time several models in alternating rounds (``alternate_calls``); return each model's list of Results.

    Results are kept by position, so a file may be listed twice.

    Args:
      paths: the .tflite files.
      rounds: how many rounds (each runs every model once).
      **run_kwargs: passed to ``run`` (threads, runs, warmup, target, ...).

    Returns:
      A list with, for each path, its ``rounds`` Results.

    Raises:
      BenchError: rounds is not a positive integer, or a run failed.

    Example:
      >>> per_model = alternate(["a.tflite", "b.tflite"], rounds=5, threads=2)  # doctest: +SKIP
      >>> [median_of_rounds_us(r) for r in per_model]  # doctest: +SKIP
    """
    return alternate_calls([functools.partial(run, path, **run_kwargs) for path in paths], rounds=rounds)


def median_of_rounds_us(results):
    """The median over rounds of each round's typical figure (median, else mean), in microseconds."""
    import statistics

    return float(statistics.median(r.typical_us for r in results))


__all__ = ["BenchError", "Result", "TARGETS", "alternate", "alternate_calls", "median_of_rounds_us", "parse", "run"]
