"""Export a Keras model to .tflite and time it on this machine or on an Android phone.

What it does:

1. Takes a tf_keras model (``--model FILE.keras``), or, without one, builds
   the built-in ``tfmc.models.digits_cnn`` and trains it on ``--data`` for
   ``--train-epochs``.
2. Exports it with ``tfmc.export.to_tflite`` in each of ``--modes``
   (float32, float16, dynamic, int8; int8 calibrates on training images of
   ``--data``); every file is checked in LiteRT before it is written.
3. Times every file with ``tflite_bench.run``: by default here, in the
   LiteRT interpreter (XNNPACK); with ``--android`` on a phone over adb,
   using a ``benchmark_model`` binary built for the phone (``--binary``).
   It prints median, p5/p95 and mean latency (and peak memory where the
   phone reports it) per file.

Nothing is faked: with ``--android`` and no adb on PATH, or no phone
attached, the script stops with tflite_bench's error (exit code 2).

Commands:
  python examples/android_benchmark.py --quick --out bench_quick             # host timing, about 30 s
  python examples/android_benchmark.py --model pruned.keras --modes float32,int8 --data digits --out bench
  python examples/android_benchmark.py --model pruned.keras --android --binary ./android_aarch64_benchmark_model \\
      --threads 4 --taskset f0 --out bench_phone
  python examples/android_benchmark.py --model pruned.keras --android --binary ./benchmark_model \\
      --serial R58M123ABC --use-gpu --out bench_phone_gpu

The same measurement by hand, once the .tflite files exist (this is what
``--android`` does for each file):

  adb devices                                   # the phone must be listed as "device"
  adb push bench_phone/model_float32.tflite /data/local/tmp/
  adb push android_aarch64_benchmark_model /data/local/tmp/benchmark_model
  adb shell chmod +x /data/local/tmp/benchmark_model
  adb shell taskset f0 /data/local/tmp/benchmark_model --graph=/data/local/tmp/model_float32.tflite \\
      --num_threads=4 --num_runs=50 --warmup_runs=5
  # add --use_gpu=true or --use_nnapi=true for a delegate
  adb shell rm /data/local/tmp/model_float32.tflite /data/local/tmp/benchmark_model

or with tflite_bench's command, which pushes, runs, parses and cleans up:

  tflite-bench bench_phone/model_float32.tflite --android --binary ./benchmark_model --threads 4
  tflite-bench bench_phone/model_int8.tflite --android --binary ./benchmark_model --threads 4 --taskset f0

``benchmark_model`` is not part of any Python package: download the nightly
``android_aarch64_benchmark_model`` from the TensorFlow Lite / LiteRT
performance-measurement page, or build it with
``bazel build -c opt --config=android_arm64 //tensorflow/lite/tools/benchmark:benchmark_model``.
``--taskset f0`` pins the run to CPUs 4-7, the big cores on most phones.

Output folder (``--out``): ``model.keras`` (when trained here),
``model_<mode>.tflite`` per mode, and ``summary.md`` / ``results.json``
with the table. Bad input prints one line and exits with code 2.
"""
import argparse
import os
import sys

import _common

MODES = ("float32", "float16", "dynamic", "int8")


def _modes(text):
    modes = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if not modes or unknown:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of {', '.join(MODES)}; got {text!r}")
    return list(dict.fromkeys(modes))


def build_parser():
    parser = argparse.ArgumentParser(
        prog="android_benchmark.py", description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model", default=None,
                        help="a tf_keras model (.keras, .h5 or SavedModel folder); without it the built-in digits "
                             "CNN is trained here")
    parser.add_argument("--modes", type=_modes, default=["float32", "int8"],
                        help=f"export modes, comma-separated, of {', '.join(MODES)}")
    parser.add_argument("--data", default="digits",
                        help="training data for the built-in CNN and calibration images for int8: digits, "
                             "tfds:NAME[:SPLIT], a folder of class sub-folders of images, or an .npz with x and y")
    parser.add_argument("--data-dir", default=None, help="where tfds:NAME data are prepared (nothing is downloaded)")
    parser.add_argument("--train-epochs", type=_common.count, default=None,
                        help="epochs for the built-in CNN when no --model is given (default 6; 1 with --quick)")
    parser.add_argument("--android", action="store_true",
                        help="time on an Android phone over adb instead of this machine (needs --binary)")
    parser.add_argument("--binary", default=None,
                        help="benchmark_model executable: built for the phone with --android; without --android "
                             "a benchmark_model for this machine (else the LiteRT interpreter in this process)")
    parser.add_argument("--serial", default=None, help="the phone's serial (adb devices), when several are attached")
    parser.add_argument("--taskset", default=None, help="CPU mask in hex for the phone run, e.g. f0 (big cores)")
    parser.add_argument("--use-gpu", action="store_true", help="benchmark_model's GPU delegate (binary runs only)")
    parser.add_argument("--use-nnapi", action="store_true", help="benchmark_model's NNAPI delegate (binary runs only)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default 2 here, 4 with --android)")
    parser.add_argument("--runs", type=int, default=None, help="timed inferences (default 50; 20 with --quick)")
    parser.add_argument("--warmup", type=_common.count, default=5, help="warm-up inferences before timing")
    parser.add_argument("--seed", type=int, default=0, help="seeds the data split and the training")
    parser.add_argument("--quick", action="store_true",
                        help="a short run: 1 training epoch for the built-in CNN, 20 timed runs")
    parser.add_argument("--out", default="android_benchmark_out", help="output folder (created if missing)")
    return parser


def _check(args):
    if args.train_epochs is None:
        args.train_epochs = 1 if args.quick else 6
    if args.runs is None:
        args.runs = 20 if args.quick else 50
    if args.threads is None:
        args.threads = 4 if args.android else 2
    if args.threads < 1 or args.runs < 1:
        raise _common.UsageError("--threads and --runs must be at least 1")
    if args.android and not args.binary:
        raise _common.UsageError("--android needs --binary PATH, a benchmark_model built for the phone")
    if not args.android and (args.serial or args.taskset):
        raise _common.UsageError("--serial and --taskset apply to --android runs only")
    if (args.use_gpu or args.use_nnapi) and not args.binary:
        raise _common.UsageError("--use-gpu and --use-nnapi need a benchmark_model binary (--binary)")
    return args


def _ms(us):
    return "-" if us is None else f"{us / 1e3:.3f}"


def main(argv=None):
    args = _check(build_parser().parse_args(argv))
    import tflite_bench
    from tfmc import data, export, io, models, train

    log = _common.timed_logger()

    out = _common.make_out_dir(args.out)
    if args.model:
        model = io.load_model(args.model)
        dataset = data.load_for_model(args.data, model, data_dir=args.data_dir, seed=args.seed) \
            if "int8" in args.modes else None
        log(f"loaded {args.model}")
    else:
        dataset = data.load(args.data, image_size=32, seed=args.seed, data_dir=args.data_dir)
        log(f"training the built-in digits CNN on {dataset.name} for {args.train_epochs} epoch(s)")
        model = models.digits_cnn(dataset.input_shape, dataset.num_classes, seed=args.seed)
        if args.train_epochs:
            model, _ = train.fit(model, dataset.x_train, dataset.y_train, epochs=args.train_epochs,
                                 learning_rate=3e-3, seed=args.seed)
        io.save_model(model, os.path.join(out, "model.keras"))
        log(f"test accuracy {train.accuracy(model, dataset.x_test, dataset.y_test):.4f}")

    files = []
    for mode in args.modes:
        representative = dataset.x_train[:200] if mode == "int8" else None
        result = export.to_tflite(model, os.path.join(out, f"model_{mode}.tflite"), mode=mode,
                                  representative_data=representative)
        files.append((mode, result))
        log(f"exported {os.path.basename(result.path)}: {result.size_bytes:,} bytes; {result.agreement}")

    where = "android" if args.android else "host"
    log(f"timing on {'the phone' if args.android else 'this machine'} ({args.threads} threads, {args.runs} runs, "
        f"{args.warmup} warm-up)")
    rows, results = [], {"target": where, "threads": args.threads, "runs": args.runs, "files": {}}
    for mode, exported in files:
        timing = tflite_bench.run(
            exported.path, target=where, threads=args.threads, runs=args.runs, warmup=args.warmup,
            binary=args.binary, serial=args.serial, taskset=args.taskset, use_gpu=args.use_gpu,
            use_nnapi=args.use_nnapi)
        results["files"][os.path.basename(exported.path)] = {
            "mode": mode, "bytes": exported.size_bytes, "median_us": timing.median_us, "p5_us": timing.p5_us,
            "p95_us": timing.p95_us, "mean_us": timing.mean_us, "peak_memory_mb": timing.peak_memory_mb}
        rows.append((os.path.basename(exported.path), mode, f"{exported.size_bytes:,}", _ms(timing.median_us),
                     _ms(timing.p5_us), _ms(timing.p95_us), _ms(timing.mean_us),
                     "-" if timing.peak_memory_mb is None else f"{timing.peak_memory_mb:.1f}"))
    table = _common.markdown_table(
        ("file", "mode", "bytes", "median ms", "p5 ms", "p95 ms", "mean ms", "peak MB"), rows)
    _common.write_results(out, results, table)
    print(f"{where} timing, {args.threads} threads, {args.runs} runs")
    print(table)
    log("done")
    return 0


if __name__ == "__main__":
    sys.exit(_common.run_main("android_benchmark.py", main))
