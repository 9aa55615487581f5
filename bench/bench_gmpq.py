"""GMPQ on the digits CNN: search on 10 % vs all of the data, vs uniform bits, and without attribution.

Run: .venv/bin/python bench/bench_gmpq.py [--space gmpq] [--budget-bits 2] [--epochs 25] [--qat-epochs 10] [--seeds 3]

The float model is tfmc.models.digits_cnn trained on the digits training
split. Space gmpq: the budget is the BOPs of uniform --budget-bits (W/A),
which (with uniform A/W) is the reference. Space litert: the budget is
--budget-fraction of the 8-bit BOPs, between the references uniform w4a8
and w8a8 (depthwise 8 in both); no uniform policy has the budget's BOPs
there, since weights are 4 or 8 bits. With --ends-bits (default 8)
the stem and the classifier are held at that width in every policy, as the
GMPQ authors keep them at high precision. Each searched policy must fit the
budget. Every policy then gets the same quantization-aware training (same
epochs, learning rate and seeds) and is scored on the test split;
accuracies are the mean over --seeds QAT runs. Search time is the wall time
of tfmc.gmpq.search (supernet, teacher maps, training, repair) on this machine.
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
    """(mean, std, scores) of test accuracy after identical QAT runs, one per seed."""
    scores = []
    for seed in range(seeds):
        keras.utils.set_random_seed(seed)
        qat = quantize(model, policy)
        fit(qat, dataset.x_train, dataset.y_train, epochs=epochs, learning_rate=lr, copy=False, seed=seed)
        scores.append(accuracy(qat, dataset.x_test, dataset.y_test))
    return float(np.mean(scores)), float(np.std(scores)), scores


def compare(a, b):
    """Mean difference of two score lists in points, and whether it exceeds twice its standard error."""
    diff = 100 * (np.mean(a) - np.mean(b))
    error = 100 * np.sqrt(np.var(a, ddof=1) / len(a) + np.var(b, ddof=1) / len(b)) if len(a) > 1 else float("inf")
    return diff, error, abs(diff) > 2 * error


def bits_text(policy):
    return " ".join(f"{b.weight_bits}/{b.activation_bits}" for _, b in policy.items())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="gmpq", choices=["gmpq", "litert"])
    parser.add_argument("--budget-bits", default="2/3",
                        help="space gmpq: budget = BOPs of uniform W/A bits (or N for N/N); with W != A, uniform A/W "
                             "(the same BOPs) is a reference too")
    parser.add_argument("--budget-fraction", type=float, default=0.7, help="space litert: budget as a fraction of 8-bit BOPs")
    parser.add_argument("--ends-bits", type=int, default=8, help="stem and classifier held at N/N bits; 0 searches them")
    parser.add_argument("--epochs", type=int, default=25, help="search epochs")
    parser.add_argument("--float-epochs", type=int, default=15)
    parser.add_argument("--qat-epochs", type=int, default=10)
    parser.add_argument("--qat-lr", type=float, default=1e-3)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--no-write", action="store_true", help="print, do not update BENCHMARKS.md")
    args = parser.parse_args()

    dataset = data.load("digits")
    model = models.digits_cnn(input_shape=dataset.input_shape)
    fit(model, dataset.x_train, dataset.y_train, epochs=args.float_epochs, learning_rate=3e-3, copy=False)
    float_acc = accuracy(model, dataset.x_test, dataset.y_test)
    fixed = {name: (args.ends_bits, args.ends_bits) for name in gmpq.end_layers(model, args.space)} if args.ends_bits else {}
    ends = f", stem and classifier {args.ends_bits}/{args.ends_bits}" if fixed else ""
    if args.space == "litert":
        references = [("uniform w4a8 (dw 8)" + ends, bops.uniform_policy(model, 4, 8)),
                      ("uniform w8a8", bops.uniform_policy(model, 8, 8))]
        for name in references[0][1]:
            if type(model.get_layer(name)).__name__ == "DepthwiseConv2D":
                references[0][1].layers[name] = type(references[0][1][name])(8, 8)
    else:
        w, a = (int(v) for v in (args.budget_bits.split("/") * 2)[:2])
        pairs = [(w, a)] if w == a else [(w, a), (a, w)]
        references = [(f"uniform {pw}/{pa}" + ends, bops.uniform_policy(model, pw, pa)) for pw, pa in pairs]
    for _, policy in references:
        for name, bits in fixed.items():
            policy.layers[name] = type(policy[name])(*bits)
    uniform = references[0][1]
    int8 = bops.count_bops(model, bops.uniform_policy(model, 8, 8))
    target = bops.count_bops(model, uniform) if args.space == "gmpq" else int(args.budget_fraction * int8)
    print(f"float test accuracy {float_acc:.4f}; budget {target:,} BOPs ({target / int8:.3f} of 8-bit)", file=sys.stderr)

    runs = [
        ("GMPQ, 10 % of the training data", dict(search_fraction=0.1)),
        ("GMPQ, all the training data", dict(search_fraction=1.0)),
        ("lambda = 0 (no attribution), 10 %", dict(search_fraction=0.1, attribution_weight=0.0)),
    ]
    rows = []
    for label, options in runs:
        result = gmpq.search(model, dataset, target_bops=target, space=args.space, epochs=args.epochs,
                             fixed_bits=fixed, **options)
        acc, std, scores = qat_accuracy(model, result.policy, dataset, args.qat_epochs, args.seeds, args.qat_lr)
        rows.append((label, result.samples, result.search_seconds, result.achieved_bops, acc, std, result.policy, scores))
        print(f"{label}: {result.search_seconds:.1f} s, acc {acc:.4f} +- {std:.4f}, {bits_text(result.policy)}", file=sys.stderr)
    for label, policy in references:
        acc, std, scores = qat_accuracy(model, policy, dataset, args.qat_epochs, args.seeds, args.qat_lr)
        rows.append((label, 0, 0.0, bops.count_bops(model, policy), acc, std, policy, scores))
        print(f"{label}: acc {acc:.4f} +- {std:.4f}", file=sys.stderr)

    if args.space == "gmpq":
        budget_text = "the BOPs of " + " and of ".join(label for label, _ in references)
    else:
        budget_text = f"--budget-fraction {args.budget_fraction} of 8-bit, between " + " and ".join(
            label for label, _ in references)
    lines = [
        f"## Mixed precision (GMPQ), space `{args.space}`",
        "",
        f"Command: `python bench/bench_gmpq.py --space {args.space} "
        + (f"--budget-bits {args.budget_bits} " if args.space == "gmpq" else f"--budget-fraction {args.budget_fraction} ")
        + f"--ends-bits {args.ends_bits} --epochs {args.epochs} "
        f"--float-epochs {args.float_epochs} --qat-epochs {args.qat_epochs} --seeds {args.seeds}`. "
        f"Model: tfmc.models.digits_cnn on digits 32x32 (float test accuracy {float_acc:.4f}); "
        f"space `{args.space}`{' (' + ends[2:] + ' in every policy)' if fixed else ''}; budget {target:,} BOPs ({target / int8:.3f} of 8-bit), {budget_text}. "
        f"Each policy gets the same QAT ({args.qat_epochs} epochs, Adam {args.qat_lr}), test accuracy as mean +- std over "
        f"{args.seeds} QAT seeds. Search time: wall time of `tfmc.gmpq.search` ({args.epochs} epochs, batch 32) on 2 shared CPU cores.",
        "",
        "| policy | search images | search time (s) | BOPs | of 8-bit | QAT test accuracy | bits per layer (w/a) |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for label, samples, seconds, achieved, acc, std, policy, _ in rows:
        lines.append(f"| {label} | {samples or '-'} | {seconds:.1f} | {achieved:,} | {achieved / int8:.3f} | "
                     f"{acc:.4f} +- {std:.4f} | {bits_text(policy)} |")
    small, full, ablation = rows[:3]
    # (b) compares with the best uniform policy that costs at least as many BOPs as GMPQ's
    eligible = [row for row in rows[3:] if row[3] >= small[3]]
    reference = max(eligible or rows[3:], key=lambda row: row[4])
    uniform_label = reference[0]
    ratio = full[2] / small[2]
    diff_a, err_a, _ = compare(small[7], full[7])
    diff_b, err_b, sig_b = compare(small[7], reference[7])
    diff_c, err_c, sig_c = compare(small[7], ablation[7])
    met_a = ratio >= 5 and abs(diff_a) <= 0.5
    met_b = diff_b > 0 and sig_b and small[3] <= reference[3]
    met_c = diff_c > 0 and sig_c

    def verdict(met, diff, significant):
        if met:
            return "met"
        if diff == 0:
            return "NOT met (no difference)"
        if diff > 0:
            return "NOT met (ahead, but by less than twice the standard error over QAT seeds)" if not significant else "NOT met"
        return "NOT met (behind)" if significant else "NOT met (behind, within twice the standard error over QAT seeds)"

    lines += [
        "",
        f"Differences are in accuracy points, +- one standard error over the {args.seeds} QAT seeds (one search per row).",
        "",
        f"- (a) search cost: {ratio:.1f}x less time on 10 % than on all the data; accuracy {diff_a:+.2f} +- {err_a:.2f} "
        f"points. Goal (>= 5x, within 0.5 points): {'met' if met_a else 'NOT met'}.",
        f"- (b) GMPQ 10 % vs {uniform_label}: {diff_b:+.2f} +- {err_b:.2f} points at {small[3] / reference[3]:.3f}x its BOPs. "
        f"Goal (better at equal or lower BOPs): {verdict(met_b, diff_b, sig_b)}.",
        f"- (c) attribution on vs off (lambda 20 vs 0): {diff_c:+.2f} +- {err_c:.2f} points. Goal (better): "
        f"{verdict(met_c, diff_c, sig_c)}.",
    ]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        write_section(f"bench_gmpq_{args.space}", text)


if __name__ == "__main__":
    main()
