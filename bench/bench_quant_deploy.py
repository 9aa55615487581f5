"""Quantization that reaches LiteRT: float32, float16, int8 PTQ, tfmot QAT, tfmc QAT 8/8 and GMPQ under size and latency budgets.

Run: .venv/bin/python bench/bench_quant_deploy.py [--models digits_cnn,mobilenet_v2_small] [--qat-epochs 1]
                                                  [--qat-images 10000] [--search-epochs 3] [--size-budget 1.05]
                                                  [--rounds 5] [--runs 50] [--threads 1] [--no-write]

For each model (tfmc.models.digits_cnn trained here on the digits data by
the demo's recipe; the Fashion-MNIST mobilenet_v2_small reference model of
bench/reference.py, cached) seven .tflite files are written and measured:
float32, float16, int8 post-training quantization (200 calibration images),
tfmot's quantize_model after QAT, tfmc.quantize with every layer at 8/8
after the same QAT, and tfmc GMPQ in the litert space under a size budget
(--size-budget x the all-int8 size estimate) and under a latency budget (the
all-int8 latency), both from a precision table measured on this host, each
policy trained by the same QAT. QAT is short (--qat-epochs on the first
--qat-images training images, Adam 2e-4); the searches read --search-fraction
of the training data for --search-epochs. Each file's accuracy is measured by
the .tflite itself on the whole test set (binomial standard error); the files
of a model are timed together in alternating rounds (bench/harness.py).
"""
import argparse
import collections
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow_model_optimization as tfmot  # noqa: E402

import tfmc  # noqa: E402
from tfmc import bops, data, export, gmpq, models, train  # noqa: E402
from tfmc.export import flatbuffer  # noqa: E402
from tfmc.gmpq.costs import build_precision_table  # noqa: E402
from benchmarks_md import write_section  # noqa: E402
from harness import host_latency, markdown_table, score  # noqa: E402
from reference import reference_model  # noqa: E402

MODELS = ("digits_cnn", "mobilenet_v2_small")
ROWS = ("float32", "float16", "int8 PTQ", "tfmot QAT int8", "tfmc QAT 8/8", "tfmc GMPQ, size budget",
        "tfmc GMPQ, latency budget")


def load(name, args):
    """(trained float model, Dataset, how it was trained)."""
    if name == "digits_cnn":
        dataset = data.load("digits", image_size=32, seed=0)
        model, _ = train.fit(models.digits_cnn(dataset.input_shape, dataset.num_classes, seed=0), dataset.x_train,
                             dataset.y_train, epochs=20, learning_rate=3e-3, seed=0)
        return model, dataset, "trained here: 20 epochs, Adam 3e-3 cosine, seed 0 (the demo's recipe)"
    model, info = reference_model(name, data_dir=args.data_dir, verbose=0)
    dataset = data.load_for_model("fashion_mnist", model, data_dir=args.data_dir, classes=True)
    return model, dataset, f"bench/reference.py's recipe ({info['recipe']['epochs']} epochs), cached"


def qat_fit(qat, dataset, args):
    n = args.qat_images
    train.fit(qat, dataset.x_train[:n], dataset.y_train[:n], epochs=args.qat_epochs, learning_rate=2e-4, seed=0,
              copy=False)
    return qat


def stored(result):
    """'int8 x17, int4 x1, float32 x1': the weight types of the file's Conv / Depthwise / Dense ops."""
    counts = collections.Counter(w for layer in result.layers for w in layer.weights)
    return ", ".join(f"{kind} x{count}" for kind, count in sorted(counts.items()))


def op_histogram(path):
    """{TFLite op: count} of a .tflite file."""
    with open(path, "rb") as f:
        return dict(collections.Counter(flatbuffer.op_names(f.read())))


def measure(name, args, directory):
    model, dataset, trained = load(name, args)
    calib = dataset.x_train[:200]
    table = build_precision_table(model, threads=args.threads, runs=args.runs, rounds=3)
    size_budget = gmpq.space_budget(model, "litert", measure="bytes", table=table)
    latency_budget = gmpq.space_budget(model, "litert", measure="ms", table=table)
    budgets = {"tfmc GMPQ, size budget": {"target_bytes": args.size_budget * size_budget.int8_cost},
               "tfmc GMPQ, latency budget": {"target_ms": latency_budget.int8_cost}}
    files, policies = {}, {}

    def write(label, source, mode, policy=None):
        path = os.path.join(directory, f"{name}-{len(files)}.tflite")
        files[label] = export.to_tflite(source, path, mode=mode, policy=policy, representative_data=calib)
        print(f"{name} {label}: {files[label].size_bytes:,} bytes, {stored(files[label])}", flush=True)

    write("float32", model, "float32")
    write("float16", model, "float16")
    write("int8 PTQ", model, "int8")
    write("tfmot QAT int8", qat_fit(tfmot.quantization.keras.quantize_model(model), dataset, args), "qat")
    write("tfmc QAT 8/8", qat_fit(tfmc.quantize(model, bops.uniform_policy(model, 8, 8)), dataset, args), "qat")
    for label, budget in budgets.items():
        result = gmpq.search(model, dataset, table=table, space="litert", search_fraction=args.search_fraction,
                             epochs=args.search_epochs, seed=0, verbose=False, **budget)
        policies[label] = result
        write(label, qat_fit(tfmc.quantize(model, result.policy), dataset, args), "qat", result.policy)
    paths = [files[label].path for label in ROWS]
    histograms = {label: op_histogram(files[label].path) for label in ROWS}
    scores = {label: score(files[label].path, dataset.x_test, dataset.y_test, threads=args.threads) for label in ROWS}
    latency = dict(zip(ROWS, host_latency(paths, reference=0, rounds=args.rounds, threads=args.threads,
                                          runs=args.runs, warmup=args.warmup)))
    return {"trained": trained, "files": files, "scores": scores, "latency": latency, "policies": policies,
            "histograms": histograms,
            "table": table, "test_images": len(dataset.y_test), "size_budget": size_budget,
            "latency_budget": latency_budget}


def _front(r, label, key):
    """Whether no other row is at least as accurate and at least as small / fast, and better in one."""
    mine = (r["scores"][label].accuracy, key(label))
    for other in ROWS:
        theirs = (r["scores"][other].accuracy, key(other))
        if other != label and theirs[0] >= mine[0] and theirs[1] <= mine[1] and theirs != mine:
            return False
    return True


def section(args, name, r):
    """The BENCHMARKS.md section of model ``name``: the command, the seven rows, the goals checked."""
    command = (f"python bench/bench_quant_deploy.py --models {name} --qat-epochs {args.qat_epochs} "
               f"--qat-images {args.qat_images} --search-epochs {args.search_epochs} --search-fraction "
               f"{args.search_fraction} --size-budget {args.size_budget} --rounds {args.rounds} --runs {args.runs} "
               f"--threads {args.threads}")
    title = "## Quantization that reaches LiteRT's kernels (issue 16)" + ("" if name == MODELS[0] else f": {name}")
    lines = [title, "", f"Command: `{command}`. " + __doc__.split("\n\n", 2)[2].replace("\n", " ").strip(), ""]
    size = lambda label: r["files"][label].size_bytes  # noqa: E731
    ms = lambda label: r["latency"][label].ms  # noqa: E731
    rows = [[label, r["scores"][label], f"{size(label):,}", f"{ms(label):.3f}", f"{r['latency'][label].ratio:.3f}",
             stored(r["files"][label])] for label in ROWS]
    tfmot_row, ours = "tfmot QAT int8", "tfmc QAT 8/8"
    slower = [label for label in ROWS[1:] if ms(label) > ms("float32")]
    fronts = []
    for label in ROWS[-2:]:
        on = [what for what, key in (("accuracy-latency", ms), ("accuracy-size", size)) if _front(r, label, key)]
        fronts.append(f"{label}: on the {' and '.join(on)} front" if on else f"{label}: on no front (dominated)")
    show = lambda res, v: f"{v:.4f} ms" if res.measure == "ms" else f"{v:,.0f} bytes"  # noqa: E731
    searched = "; ".join(
        f"{label}: {show(res, res.achieved)} estimated of a {show(res, res.target)} budget (all-int8 "
        f"{show(res, res.int8_cost)}), float layers {res.policy.metadata['float_layers'] or 'none'}, int4 layers "
        f"{[n for n, b in res.policy.items() if b.weight_bits <= 4] or 'none'}"
        for label, res in r["policies"].items())
    same_ops = r["histograms"][ours] == r["histograms"][tfmot_row]
    lines += [
        f"### {name}", "",
        f"Model: {r['trained']}. Test set: {r['test_images']:,} images. {searched}.", "",
        markdown_table(["model", "test acc. (.tflite)", ".tflite bytes", "host latency (ms)", "latency / float32",
                        "weights stored"], rows, align="lrrrrl"),
        "",
        f"- tfmc QAT 8/8 against tfmot QAT: size {size(ours) / size(tfmot_row):.3f}x, latency "
        f"{ms(ours) / ms(tfmot_row):.3f}x (goal: size within 3 %, latency within 5 %); op histogram "
        + ("identical" if same_ops else f"DIFFERENT: {r['histograms'][ours]} vs tfmot {r['histograms'][tfmot_row]}")
        + ".",
        f"- Quantized rows slower than float32: {', '.join(slower) if slower else 'none'}.",
        "- " + "; ".join(fronts) + " (among all seven rows).", "",
        f"Host latency: LiteRT interpreter with XNNPACK, {args.threads} thread(s), each model's files timed "
        f"in {args.rounds} alternating rounds of {args.runs} runs after {args.warmup} warm-up runs, median of "
        "the rounds' medians, on a machine shared with other jobs.",
    ]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--qat-epochs", type=int, default=1)
    parser.add_argument("--qat-images", type=int, default=10000)
    parser.add_argument("--search-epochs", type=int, default=3)
    parser.add_argument("--search-fraction", type=float, default=0.05)
    parser.add_argument("--size-budget", type=float, default=1.05, help="size budget as a multiple of all-int8's")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data-dir")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    names = args.models.split(",")
    if sorted(set(names) - set(MODELS)):
        parser.error(f"--models takes some of {', '.join(MODELS)}")
    with tempfile.TemporaryDirectory(prefix="bench_quant_deploy_") as directory:
        for name in names:
            markdown = section(args, name, measure(name, args, directory))
            print(markdown, flush=True)
            if not args.no_write:  # one section per model, so a run of one model keeps the other's
                write_section("quant_deploy" if name == MODELS[0] else f"quant_deploy_{name}", markdown)


if __name__ == "__main__":
    main()
