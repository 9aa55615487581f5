"""Export sizes and host timing: tflite_bench's host runner against ai-edge-litert's own litert-benchmark.

Run: .venv/bin/python bench/bench_export.py [--size 128] [--rounds 7] [--runs 30] [--threads 1]

MobileNetV2 (random weights, 10 classes) is exported three ways with
tfmc.export.to_tflite: float32, int8 (full-integer, calibrated on the
built-in digits) and mixed (int4 weights for every Conv2D / Dense, int8 for
the depthwise layers, float activations quantized at run time). Each model is timed in alternating
rounds (tflite_bench.alternate_calls) by tflite_bench.run (LiteRT Interpreter, XNNPACK) and by
`litert-benchmark` (LiteRT CompiledModel API, a separate process); each
side's figure is the median of its round medians. The size table sets each
file's bytes against the packed size of its parameters (parameters x bits / 8,
tfmc.bops.packed_size_bytes).
"""
import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tfmc  # noqa: E402
import tflite_bench  # noqa: E402
from tfmc import data as tfmc_data  # noqa: E402
from tfmc import graph  # noqa: E402
from tfmc._keras import keras  # noqa: E402
from tfmc.bops import packed_size_bytes  # noqa: E402
from benchmarks_md import write_section  # noqa: E402
from harness import markdown_table, model_facts  # noqa: E402

LITERT_BENCHMARK = os.path.join(os.path.dirname(sys.executable), "litert-benchmark")


def host_median_us(path, threads, runs, warmup):
    """Median latency of ``tflite_bench.run`` (LiteRT Interpreter in this process), in microseconds."""
    return tflite_bench.run(path, threads=threads, runs=runs, warmup=warmup).median_us


def reference_median_us(path, threads, runs, warmup):
    """Median latency reported by ai-edge-litert's litert-benchmark (its --result_json), in microseconds."""
    with tempfile.TemporaryDirectory() as directory:
        out = os.path.join(directory, "result.json")
        subprocess.run([LITERT_BENCHMARK, "--model", path, "--num_runs", str(runs), "--warmup_runs", str(warmup),
                        "--num_threads", str(threads), "--result_json", out],
                       check=True, capture_output=True, text=True)
        with open(out, encoding="utf-8") as f:
            return json.load(f)["latency"]["median_ms"] * 1e3


def mixed_policy(model):
    """4-bit weights on every conv / dense layer, 8 on depthwise layers; 8-bit activations."""
    bits = {}
    for layer in model.layers:
        kind = graph.layer_kind(layer)
        if kind in ("conv", "dense"):
            bits[layer.name] = (4, 8)
        elif kind == "depthwise":
            bits[layer.name] = (8, 8)
    return tfmc.BitPolicy(bits)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = parser.parse_args(argv)

    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(input_shape=(args.size, args.size, 3), weights=None, classes=10)
    calib = tfmc_data.load("digits", image_size=args.size).x_train[:100]
    mixed = mixed_policy(model)
    int8_policy = tfmc.BitPolicy({name: (8, 8) for name in mixed})
    exports = {}
    with tempfile.TemporaryDirectory() as directory:
        for name, kwargs, packed_policy in (
            ("float32", {}, None),
            ("int8", {"representative_data": calib}, int8_policy),
            # Static int4 (with representative_data) fails LiteRT's "no_integer_overflow_from_quantization"
            # check on this random-weight network, so the mixed export here is dynamic range.
            ("mixed", {"policy": mixed}, mixed),
        ):
            result = tfmc.export.to_tflite(model, os.path.join(directory, f"{name}.tflite"), mode=name, **kwargs)
            exports[name] = (result, packed_size_bytes(model, packed_policy))
            print(f"{name}: {result.size_bytes:,} bytes, {result.agreement}", flush=True)
        calls = []
        for result, _ in exports.values():
            calls += [functools.partial(timer, result.path, args.threads, args.runs, args.warmup)
                      for timer in (host_median_us, reference_median_us)]
        medians = tflite_bench.alternate_calls(calls, rounds=args.rounds)

    timing = []
    for index, name in enumerate(exports):
        h, ref = statistics.median(medians[2 * index]), statistics.median(medians[2 * index + 1])
        timing.append([name, f"{h / 1e3:.3f}", f"{ref / 1e3:.3f}", f"{100 * (h - ref) / ref:+.1f} %"])
    params = model_facts(model).params
    sizes = [[name, f"{result.size_bytes:,}", f"{packed:,}", f"{result.size_bytes / packed:.3f}"]
             for name, (result, packed) in exports.items()]
    changed = exports["mixed"][0].changed
    markdown = "\n".join([
        f"## Export and host timing: MobileNetV2 {args.size}x{args.size}, float32 vs int8 vs mixed int4/int8",
        "",
        f"Command: `python bench/bench_export.py --size {args.size} --rounds {args.rounds} --runs {args.runs} "
        f"--warmup {args.warmup} --threads {args.threads}`. MobileNetV2 (random weights, 10 classes, "
        f"{params:,} parameters) exported by `tfmc.export.to_tflite`; int8 and mixed calibrated on 100 digits "
        "images; mixed = int4 weights on every Conv2D / Dense, int8 on the depthwise layers, float activations "
        "(dynamic range: the static int4 variant of this random-weight network fails LiteRT's "
        "no_integer_overflow_from_quantization check, which the export's own LiteRT check reports). Timing: "
        f"{args.threads} thread(s), {args.rounds} alternating rounds of {args.runs} runs after {args.warmup} "
        "warm-up runs, median of round medians; `tflite_bench.run` (LiteRT Interpreter with XNNPACK, timed "
        "around invoke() in Python) against ai-edge-litert's `litert-benchmark` (CompiledModel API, its "
        "--result_json median). Goal: within 15 %.",
        "",
        markdown_table(["model", "tflite_bench host median (ms)", "litert-benchmark median (ms)", "difference"],
                       timing),
        "",
        "Packed size = parameters x bits / 8 (`tfmc.bops.packed_size_bytes`: float32 counts every parameter at "
        "32 bits; int8 and mixed count kernels at their weight bits and biases / BatchNormalization at 32, "
        "although the .tflite folds BatchNormalization into the convolutions).",
        "",
        markdown_table(["export", ".tflite bytes", "packed parameters (bytes)", "file / packed"], sizes),
        "",
        f"The mixed export rounded {len(changed)} layer(s) to what LiteRT runs"
        + (": " + "; ".join(f"{k}: {v[0]}" for k, v in list(changed.items())[:3]) if changed else "") + ".",
    ])
    print(markdown)
    if not args.no_write:
        write_section("export_host_timing", markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
