"""Reference models on Fashion-MNIST: test accuracy with its standard error, MACs, parameters, training time, float32 vs int8.

Run: .venv/bin/python bench/bench_reference.py [--models mobilenet_v2_small,resnet_small,keras_mobilenet_v2]
                                               [--calib-images 200] [--rounds 7] [--runs 50] [--threads 1]
                                               [--data-dir D] [--no-write]

Each model comes from bench/reference.py (trained by its fixed recipe, or
loaded from bench/.cache when that recipe was trained before). It is scored
on the official 10,000-image Fashion-MNIST test set as a Keras model, as a
float32 .tflite and as an int8 .tflite (full-integer post-training
quantization, float input and output, calibrated on --calib-images training
images drawn at random with seed 0), each accuracy with its binomial
standard error sqrt(p (1 - p) / n). The two files are timed on this machine
by the LiteRT interpreter in alternating rounds (bench/harness.py).
"""
import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

import tfmc  # noqa: E402
from tfmc import data  # noqa: E402
from benchmarks_md import write_section  # noqa: E402
from harness import host_latency, markdown_table, model_facts, score  # noqa: E402
from reference import RECIPES, reference_model  # noqa: E402


def measure(name, args, directory):
    """Every figure of one reference model: its info, Scores, facts, file sizes and latencies."""
    model, info = reference_model(name, data_dir=args.data_dir, cache_dir=args.cache_dir)
    dataset = data.load_for_model("fashion_mnist", model, data_dir=args.data_dir, classes=True)
    rng = np.random.default_rng(0)
    calib = dataset.x_train[rng.choice(len(dataset.x_train), args.calib_images, replace=False)]
    float32 = tfmc.export.to_tflite(model, os.path.join(directory, f"{name}-float32.tflite"), mode="float32")
    int8 = tfmc.export.to_tflite(model, os.path.join(directory, f"{name}-int8.tflite"), mode="int8",
                                 representative_data=calib)
    scores = {kind: score(source, dataset.x_test, dataset.y_test, threads=args.threads)
              for kind, source in (("keras", model), ("float32", float32.path), ("int8", int8.path))}
    print(f"{name}: " + ", ".join(f"{kind} {s}" for kind, s in scores.items()), flush=True)
    latency = host_latency([float32.path, int8.path], reference=0, rounds=args.rounds, threads=args.threads,
                           runs=args.runs, warmup=args.warmup)
    return {"info": info, "scores": scores, "facts": model_facts(model, float32.path),
            "int8_bytes": int8.size_bytes, "latency": latency, "input_shape": dataset.input_shape,
            "test_images": len(dataset.y_test)}


def section(args, results):
    """The BENCHMARKS.md section: command, set-up, the accuracy table and the size / latency table."""
    command = (f"python bench/bench_reference.py --models {args.models} --calib-images {args.calib_images} "
               f"--rounds {args.rounds} --runs {args.runs} --warmup {args.warmup} --threads {args.threads}")
    recipes = "; ".join(
        f"{name}: {r['info']['recipe']['epochs']} epochs on {r['info']['train_images']:,} images, batch "
        f"{r['info']['recipe']['batch_size']}, Adam {r['info']['recipe']['learning_rate']:g} with cosine decay, "
        f"seed {r['info']['recipe']['seed']}" + (f", {r['info']['recipe']['model_kwargs']}"
                                                 if r["info"]["recipe"]["model_kwargs"] else "")
        for name, r in results.items())
    hosts = sorted({r["info"]["host"] for r in results.values()})
    test_images = {r["test_images"] for r in results.values()}
    accuracy_rows = [
        [name, "x".join(map(str, r["input_shape"])), f"{r['facts'].macs:,}", f"{r['facts'].params:,}",
         f"{r['info']['train_seconds']:.0f}", r["scores"]["keras"], r["scores"]["float32"], r["scores"]["int8"]]
        for name, r in results.items()]
    latency_rows = [
        [name, f"{r['facts'].tflite_bytes:,}", f"{r['int8_bytes']:,}", f"{r['latency'][0].ms:.3f}",
         f"{r['latency'][1].ms:.3f}", f"{r['latency'][1].ratio:.3f}"]
        for name, r in results.items()]
    return "\n".join([
        "## Reference models on Fashion-MNIST",
        "",
        f"Command: `{command}`. Models: `bench/reference.py`'s fixed recipes ({recipes}), trained on the "
        f"training images less the seeded, class-stratified 5,000-image validation split; training time is the "
        f"wall time of `tfmc.train.fit` on {' and '.join(hosts)} (no GPU; the machine is shared with other jobs, "
        "so the time varies with their load). Accuracy on the official "
        f"{' / '.join(f'{n:,}' for n in sorted(test_images))}-image test set, +- its binomial standard error "
        "sqrt(p (1 - p) / n), as a Keras model, as a float32 .tflite and as an int8 .tflite "
        f"(`tfmc.export.to_tflite` mode int8: full-integer post-training quantization calibrated on "
        f"{args.calib_images} training images drawn at random with seed 0, float input and output); the .tflite "
        "files run in the LiteRT interpreter one image at a time.",
        "",
        markdown_table(["model", "input", "MACs", "params", "training time (s)", "test acc. (Keras)",
                        "test acc. (float32 .tflite)", "test acc. (int8 .tflite)"], accuracy_rows),
        "",
        f"Host latency: LiteRT interpreter with XNNPACK, {args.threads} thread(s), the float32 and int8 files of each "
        f"model timed in {args.rounds} alternating rounds of {args.runs} runs after {args.warmup} warm-up runs, "
        "median of the rounds' medians.",
        "",
        markdown_table(["model", "float32 .tflite bytes", "int8 .tflite bytes", "float32 latency (ms)",
                        "int8 latency (ms)", "int8 / float32 latency"], latency_rows),
    ])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(RECIPES),
                        help=f"comma-separated reference models (of {', '.join(RECIPES)})")
    parser.add_argument("--calib-images", type=int, default=200, help="training images that calibrate the int8 export")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data-dir", help="folder with the four Fashion-MNIST IDX files (default: Debian's)")
    parser.add_argument("--cache-dir", help="where bench/reference.py keeps trained models (default: its own)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = parser.parse_args()
    names = args.models.split(",")
    unknown = sorted(set(names) - set(RECIPES))
    if unknown:
        parser.error(f"unknown reference models {unknown}; expected some of {', '.join(RECIPES)}")
    if args.calib_images < 1:
        parser.error(f"--calib-images must be at least 1, got {args.calib_images}")

    with tempfile.TemporaryDirectory(prefix="bench_reference_") as directory:
        results = {name: measure(name, args, directory) for name in names}
    markdown = section(args, results)
    print(markdown)
    if not args.no_write:
        write_section("reference_models", markdown)


if __name__ == "__main__":
    main()
