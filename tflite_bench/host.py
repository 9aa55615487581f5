"""Time a .tflite on this machine: the LiteRT interpreter in Python, or a local benchmark_model binary."""
import os
import subprocess
import time

import numpy as np

from tflite_bench.parse import parse
from tflite_bench.result import BenchError, Result, summarize


def check_model_path(path):
    """Raise BenchError unless ``path`` is an existing .tflite file; return it as str."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise BenchError(f"model file {path!r} does not exist (expected a .tflite file)")
    return path


def check_counts(threads, runs, warmup):
    """Raise BenchError for a non-positive thread or run count or a negative warm-up count."""
    for name, value, low in (("threads", threads, 1), ("runs", runs, 1), ("warmup", warmup, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise BenchError(f"{name} must be an integer >= {low}, got {value!r}")


def random_inputs(interpreter, seed=0):
    """One seeded random array per model input, in each input's own dtype and range."""
    rng = np.random.default_rng(seed)
    arrays = []
    for detail in interpreter.get_input_details():
        shape = [max(int(d), 1) for d in detail["shape"]]
        dtype = np.dtype(detail["dtype"])
        if np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            arrays.append(rng.integers(max(info.min, -128), min(info.max, 127) + 1, size=shape).astype(dtype))
        elif dtype == np.bool_:
            arrays.append(rng.random(shape) > 0.5)
        else:
            arrays.append(rng.random(shape).astype(dtype))
    return arrays


def load_interpreter(model, threads=1, use_xnnpack=True):
    """A LiteRT Interpreter for a .tflite path or bytes, tensors allocated.

    ``use_xnnpack=False`` selects the built-in kernels without default
    delegates (LiteRT applies XNNPACK by default).
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = OpResolverType.AUTO if use_xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    source = {"model_content": bytes(model)} if isinstance(model, (bytes, bytearray, memoryview)) else {"model_path": os.fspath(model)}
    try:
        interpreter = Interpreter(num_threads=threads, experimental_op_resolver_type=resolver, **source)
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise BenchError(f"LiteRT could not load the model: {exc}") from exc
    return interpreter


def run_host(path, *, threads=1, runs=50, warmup=5, use_xnnpack=True, seed=0):
    """Time ``path`` with the LiteRT interpreter on this machine.

    Init is interpreter creation plus tensor allocation; then one first
    inference, ``warmup`` warm-up inferences and ``runs`` timed inferences,
    each timed alone around ``invoke()`` with ``time.perf_counter_ns`` (the
    Python call adds a few microseconds). Inputs are seeded random data.

    Args:
      path: the .tflite file.
      threads: interpreter threads.
      runs: timed inferences.
      warmup: untimed-in-statistics inferences after the first one.
      use_xnnpack: False runs the built-in kernels without XNNPACK.
      seed: seed of the random inputs.

    Returns:
      Result with ``source="host"`` and the per-run ``samples_us``.

    Raises:
      BenchError: the file is missing or LiteRT cannot load or run it.

    Example:
      >>> run_host("model.tflite", threads=2, runs=20).median_us  # doctest: +SKIP
      812.5
    """
    path = check_model_path(path)
    check_counts(threads, runs, warmup)
    start = time.perf_counter_ns()
    interpreter = load_interpreter(path, threads=threads, use_xnnpack=use_xnnpack)
    init_us = (time.perf_counter_ns() - start) / 1e3
    for detail, array in zip(interpreter.get_input_details(), random_inputs(interpreter, seed)):
        interpreter.set_tensor(detail["index"], array)

    def timed_invoke():
        begin = time.perf_counter_ns()
        interpreter.invoke()
        return (time.perf_counter_ns() - begin) / 1e3

    try:
        first_us = timed_invoke()
        warm = [timed_invoke() for _ in range(warmup)]
        samples = [timed_invoke() for _ in range(runs)]
    except RuntimeError as exc:
        raise BenchError(f"LiteRT failed to run {path!r}: {exc}") from exc
    stats = summarize(samples)
    warmup_mean = float(np.mean(warm)) if warm else None
    raw = (
        f"host LiteRT interpreter ({'XNNPACK' if use_xnnpack else 'built-in kernels'}), threads={threads}\n"
        f"count={stats['count']} min={stats['min_us']:.1f} max={stats['max_us']:.1f} avg={stats['mean_us']:.1f} "
        f"std={stats['std_us']:.1f} p5={stats['p5_us']:.1f} median={stats['median_us']:.1f} p95={stats['p95_us']:.1f}\n"
        f"Inference timings in us: Init: {init_us:.1f}, First inference: {first_us:.1f}, "
        + (f"Warmup (avg): {warmup_mean:.1f}, " if warm else "")
        + f"Inference (avg): {stats['mean_us']:.1f}\n"
    )
    return Result(init_us=init_us, first_us=first_us, warmup_mean_us=warmup_mean, source="host", raw=raw,
                  samples_us=samples, **stats)


def benchmark_flags(*, graph, threads, runs, warmup, use_gpu=False, use_nnapi=False, extra_args=()):
    """The benchmark_model command-line flags for one run (see the spec's flag list)."""
    check_counts(threads, runs, warmup)
    flags = [f"--graph={graph}", f"--num_threads={threads}", f"--num_runs={runs}", f"--warmup_runs={warmup}"]
    if use_gpu:
        flags.append("--use_gpu=true")
    if use_nnapi:
        flags.append("--use_nnapi=true")
    return flags + list(extra_args)


def parse_tool_output(completed, what):
    """Parse a finished benchmark_model process; a failure quotes the tool's own last lines."""
    text = (completed.stdout or "") + (completed.stderr or "")
    if completed.returncode != 0:
        raise BenchError(f"{what} failed (exit status {completed.returncode}): {tail(text)}")
    try:
        return parse(text)
    except BenchError as exc:
        raise BenchError(f"{what} printed no timings we could read: {exc}") from None


def tail(text, lines=8):
    """The last ``lines`` non-empty lines of ``text`` joined by ' | ' (or '(no output)')."""
    kept = [line.strip() for line in text.splitlines() if line.strip()][-lines:]
    return " | ".join(kept) if kept else "(no output)"


def run_binary(path, binary, *, threads=1, runs=50, warmup=1, use_gpu=False, use_nnapi=False, extra_args=(),
               timeout=600):
    """Run a benchmark_model binary on this machine and parse what it prints.

    Args:
      path: the .tflite file.
      binary: path of a benchmark_model executable for this machine
        (e.g. the linux_x86-64 nightly build).
      threads, runs, warmup: --num_threads, --num_runs, --warmup_runs.
      use_gpu, use_nnapi: pass --use_gpu=true / --use_nnapi=true.
      extra_args: further flags, passed as they are.
      timeout: seconds before the run is abandoned.

    Returns:
      Result with ``source="binary"``.

    Raises:
      BenchError: the binary or model is missing or not executable, the run
        fails (the message shows the tool's own last lines) or prints no
        timings.

    Example:
      >>> run_binary("m.tflite", "./benchmark_model", threads=4).mean_us  # doctest: +SKIP
    """
    path = check_model_path(path)
    binary = os.fspath(binary)
    if not os.path.isfile(binary):
        raise BenchError(f"benchmark_model binary {binary!r} does not exist")
    if not os.access(binary, os.X_OK):
        raise BenchError(f"benchmark_model binary {binary!r} is not executable (chmod +x it)")
    command = [os.path.abspath(binary)] + benchmark_flags(
        graph=os.path.abspath(path), threads=threads, runs=runs, warmup=warmup,
        use_gpu=use_gpu, use_nnapi=use_nnapi, extra_args=extra_args)
    try:
        completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except OSError as exc:
        raise BenchError(f"could not start {binary!r}: {exc}") from exc
    except subprocess.TimeoutExpired:
        raise BenchError(f"{binary!r} did not finish within {timeout} s") from None
    result = parse_tool_output(completed, f"benchmark_model {binary!r}")
    result.source = "binary"
    return result
