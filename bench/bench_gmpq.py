"""GMPQ on the digits CNN: search on 10 % vs all of the data, vs uniform bits, and without attribution.

Run: .venv/bin/python bench/bench_gmpq.py [--space gmpq] [--budget-bits 3] [--epochs 25] [--qat-epochs 6] [--seeds 3]

The float model is tfmc.models.digits_cnn trained on the digits training
split. The budget is the BOPs of every layer at --budget-bits / --budget-bits
(uniform); each searched policy must fit it. Every policy then gets the same
quantization-aware training (same epochs, learning rate and seeds) and is
scored on the test split; accuracies are the mean over --seeds QAT runs.
Search time is the wall time of tfmc.gmpq.search (supernet, teacher maps,
training, repair) on this machine.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

import tfmc  # noqa: E402
from tfmc import bops, data, gmpq, models  # noqa: E402
from tfmc._keras import keras  # noqa: E402
from tfmc.quant import quantize  # noqa: E402
from tfmc.train import accuracy, fit  # noqa: E402
from benchmarks_md import write_section  # noqa: E402


def qat_accuracy(model, policy, dataset, epochs, seeds, lr):
    scores = []
    for seed in range(seeds):
        keras.utils.set_random_seed(seed)
        qat = quantize(model, policy)
        fit(qat, dataset.x_train, dataset.y_train, epochs=epochs, learning_rate=lr, copy=False)
        scores.append(accuracy(qat, dataset.x_test, dataset.y_test))
    return float(np.mean(scores)), float(np.std(scores))


def bits_text(policy):
    return " ".join(f"{b.weight_bits}/{b.activation_bits}" for _, b in policy.items())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="gmpq", choices=["gmpq", "litert"])
    parser.add_argument("--budget-bits", type=int, default=3, help="budget = BOPs of uniform N/N bits")
    parser.add_argument("--epochs", type=int, default=25, help="search epochs")
    parser.add_argument("--float-epochs", type=int, default=15)
    parser.add_argument("--qat-epochs", type=int, default=6)
    parser.add_argument("--qat-lr", type=float, default=1e-3)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--no-write", action="store_true", help="print, do not update BENCHMARKS.md")
    args = parser.parse_args()

    dataset = data.load("digits")
    model = models.digits_cnn(input_shape=dataset.input_shape)
    fit(model, dataset.x_train, dataset.y_train, epochs=args.float_epochs, learning_rate=3e-3, copy=False)
    float_acc = accuracy(model, dataset.x_test, dataset.y_test)
    uniform = bops.uniform_policy(model, args.budget_bits, args.budget_bits)
    if args.space == "litert":
        uniform = bops.uniform_policy(model, 4, 8)
        for name in uniform:
            if type(model.get_layer(name)).__name__ == "DepthwiseConv2D":
                uniform.layers[name] = type(uniform[name])(8, 8)
    target = bops.count_bops(model, uniform)
    int8 = bops.count_bops(model, bops.uniform_policy(model, 8, 8))
    print(f"float test accuracy {float_acc:.4f}; budget {target:,} BOPs ({target / int8:.3f} of 8-bit)", file=sys.stderr)

    runs = [
        ("GMPQ, 10 % of the training data", dict(search_fraction=0.1)),
        ("GMPQ, all the training data", dict(search_fraction=1.0)),
        ("lambda = 0 (no attribution), 10 %", dict(search_fraction=0.1, attribution_weight=0.0)),
    ]
    rows = []
    for label, options in runs:
        result = gmpq.search(model, dataset, target_bops=target, space=args.space, epochs=args.epochs, **options)
        acc, std = qat_accuracy(model, result.policy, dataset, args.qat_epochs, args.seeds, args.qat_lr)
        rows.append((label, result.samples, result.search_seconds, result.achieved_bops, acc, std, result.policy))
        print(f"{label}: {result.search_seconds:.1f} s, acc {acc:.4f} +- {std:.4f}, {bits_text(result.policy)}", file=sys.stderr)
    acc, std = qat_accuracy(model, uniform, dataset, args.qat_epochs, args.seeds, args.qat_lr)
    uniform_label = f"uniform {args.budget_bits}/{args.budget_bits}" if args.space == "gmpq" else "uniform w4a8 (dw 8)"
    rows.append((uniform_label, 0, 0.0, target, acc, std, uniform))

    lines = [
        f"## Mixed precision (GMPQ)",
        "",
        f"Command: `python bench/bench_gmpq.py --space {args.space} --budget-bits {args.budget_bits} --epochs {args.epochs} "
        f"--float-epochs {args.float_epochs} --qat-epochs {args.qat_epochs} --seeds {args.seeds}`. "
        f"Model: tfmc.models.digits_cnn on digits 32x32 (float test accuracy {float_acc:.4f}); "
        f"space `{args.space}`; budget {target:,} BOPs ({target / int8:.3f} of 8-bit), the BOPs of {uniform_label}. "
        f"Each policy gets the same QAT ({args.qat_epochs} epochs, Adam {args.qat_lr}), test accuracy as mean +- std over "
        f"{args.seeds} QAT seeds. Search time: wall time of `tfmc.gmpq.search` ({args.epochs} epochs, batch 32) on 2 shared CPU cores.",
        "",
        "| policy | search images | search time (s) | BOPs | of 8-bit | QAT test accuracy | bits per layer (w/a) |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for label, samples, seconds, achieved, acc, std, policy in rows:
        lines.append(f"| {label} | {samples or '-'} | {seconds:.1f} | {achieved:,} | {achieved / int8:.3f} | "
                     f"{acc:.4f} +- {std:.4f} | {bits_text(policy)} |")
    small, full = rows[0], rows[1]
    lines += [
        "",
        f"(a) search cost: {full[2] / small[2]:.1f}x less time on 10 % than on all the data; accuracy difference "
        f"{100 * (small[4] - full[4]):+.2f} points. (b) GMPQ 10 % vs {uniform_label}: {100 * (small[4] - rows[3][4]):+.2f} "
        f"points at {small[3] / target:.3f}x its BOPs. (c) attribution on vs off (lambda 20 vs 0): "
        f"{100 * (small[4] - rows[2][4]):+.2f} points.",
    ]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        write_section(f"bench_gmpq_{args.space}", text)


if __name__ == "__main__":
    main()
