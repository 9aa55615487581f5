"""GMPQ on the digits CNN: search on 10 % vs all of the data, vs uniform bits, and without attribution.

Run: .venv/bin/python bench/bench_gmpq.py [--space gmpq] [--budget-bits 2/3] [--ends-bits 8] [--epochs 25]
                                         [--qat-epochs 10] [--seeds 5]

The float model is tfmc.models.digits_cnn trained on the digits training
split. Space gmpq: the budget is the BOPs of uniform --budget-bits (W/A),
which (with uniform A/W) is the reference. Space litert: the budget is
--budget-fraction of the 8-bit BOPs, between the references uniform w4a8
and w8a8 (depthwise 8 in both); no uniform policy has the budget's BOPs
there, since weights are 4 or 8 bits. With --ends-bits (default 8)
the stem and the classifier are held at that width in every policy, as the
GMPQ authors keep them at high precision; --ends-bits 0 searches them like
every other layer (the budget then counts them at --budget-bits too). A run
whose --ends-bits is not 8 writes its own BENCHMARKS.md section beside the
8/8 one. Each searched policy must fit the budget.

The benchmark runs --seeds trials. Trial t searches every searched row with
seed t (its data subset, shuffling and initial state) and trains every
policy, searched or uniform, with the same quantization-aware training
(epochs, learning rate) under QAT seed t. A row's accuracy is the mean over
trials; two rows are compared by their per-trial (paired) differences, so
the spread of the search and of QAT both enter the standard error. Accuracy
is measured on the validation and test splits together (neither the search
nor QAT reads them): the digits test split alone is 270 images, where one
image is 0.37 points. Search time is the wall time of tfmc.gmpq.search
(supernet, teacher maps, training, repair) on this machine.
"""
import argparse
import dataclasses
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

import tfmc  # noqa: E402,F401
from tfmc import bops, data, gmpq, models  # noqa: E402
from tfmc._keras import keras  # noqa: E402
from tfmc.quant import quantize  # noqa: E402
from tfmc.train import fit  # noqa: E402
from benchmarks_md import write_section  # noqa: E402
from harness import markdown_table, mean_and_std, paired, score  # noqa: E402


@dataclasses.dataclass
class Row:
    """One policy row: per trial, its policy, search wall time and held-out accuracy."""

    label: str
    samples: int = 0
    policies: list = dataclasses.field(default_factory=list)
    seconds: list = dataclasses.field(default_factory=list)
    scores: list = dataclasses.field(default_factory=list)


def qat_accuracy(model, policy, dataset, epochs, lr, seed):
    """Held-out (validation + test) accuracy of ``policy`` after QAT under ``seed``; the same recipe for every policy."""
    keras.utils.set_random_seed(seed)
    qat = quantize(model, policy)
    fit(qat, dataset.x_train, dataset.y_train, epochs=epochs, learning_rate=lr, copy=False, seed=seed)
    return score(qat, *held_out(dataset)).accuracy


def held_out(dataset):
    """(x, y) of the validation and test splits together."""
    return np.concatenate([dataset.x_val, dataset.x_test]), np.concatenate([dataset.y_val, dataset.y_test])


def bits_text(policy):
    return " ".join(f"{b.weight_bits}/{b.activation_bits}" for _, b in policy.items())


def ends_label(args):
    """The label suffix ', stem and classifier N/N' when --ends-bits holds them at N bits; empty when searched."""
    return f", stem and classifier {args.ends_bits}/{args.ends_bits}" if args.ends_bits else ""


def references(model, args, fixed):
    """[(label, uniform policy)] that the searched policies are compared with."""
    ends = ends_label(args)
    if args.space == "litert":
        found = [("uniform w4a8 (dw 8)" + ends, bops.uniform_policy(model, 4, 8)),
                 ("uniform w8a8", bops.uniform_policy(model, 8, 8))]
        for name in found[0][1]:
            if type(model.get_layer(name)).__name__ == "DepthwiseConv2D":
                found[0][1].layers[name] = type(found[0][1][name])(8, 8)
    else:
        w, a = (int(v) for v in (args.budget_bits.split("/") * 2)[:2])
        pairs = [(w, a)] if w == a else [(w, a), (a, w)]
        found = [(f"uniform {pw}/{pa}" + ends, bops.uniform_policy(model, pw, pa)) for pw, pa in pairs]
    for _, policy in found:
        for name, bits in fixed.items():
            policy.layers[name] = type(policy[name])(*bits)
    return found


def run_trials(model, dataset, args, target, fixed, searches, uniforms):
    """Fill the rows: trial t searches with seed t and trains every policy with QAT seed t."""
    rows = [Row(label) for label, _ in searches] + [Row(label) for label, _ in uniforms]
    for trial in range(args.seeds):
        for row, (_, options) in zip(rows, searches):
            result = gmpq.search(model, dataset, target_bops=target, space=args.space, epochs=args.epochs,
                                 fixed_bits=fixed, seed=trial, **options)
            row.samples = result.samples
            row.policies.append(result.policy)
            row.seconds.append(result.search_seconds)
        for row, (_, policy) in zip(rows[len(searches):], uniforms):
            row.policies.append(policy)
            row.seconds.append(0.0)
        for row in rows:
            row.scores.append(qat_accuracy(model, row.policies[-1], dataset, args.qat_epochs, args.qat_lr, trial))
            print(json.dumps({"trial": trial, "row": row.label, "seconds": round(row.seconds[-1], 1),
                              "accuracy": row.scores[-1], "bits": bits_text(row.policies[-1])}), file=sys.stderr,
                  flush=True)
    return rows


def trials_needed(diff, error, trials, margin=0.0):
    """Trials at which a mean difference would clear ``margin`` by two standard errors.

    ``diff`` has the standard error ``error`` over ``trials``; the per-trial
    spread is assumed to stay as it is. None when the mean is not past the margin.
    """
    gap = diff - margin
    return int(np.ceil((2 * error * np.sqrt(trials) / gap) ** 2)) if gap > 0 and np.isfinite(error) else None


def significance(difference):
    """How a paired difference (harness.Paired, in points) that is not a met goal reads."""
    if difference.mean == 0:
        return "no difference"
    if difference.mean > 0:
        if difference.clears():
            return "ahead"
        needed = trials_needed(difference.mean, difference.standard_error, difference.n)
        return "ahead, by less than two standard errors" + (
            f"; about {needed} trials at this mean and spread would reach them" if needed else "")
    return "behind" if difference.clears() else "behind, within two standard errors"


def verdicts(rows, budget_bops):
    """The three goal lines, computed from the rows (10 %, all, lambda 0, uniform references...)."""
    small, full, ablation, uniform = rows[0], rows[1], rows[2], rows[3:]
    small_bops = max(budget_bops(p) for p in small.policies)
    # (b) compares with the best uniform policy that costs at least as many BOPs as GMPQ's
    eligible = [row for row in uniform if budget_bops(row.policies[0]) >= small_bops]
    reference = max(eligible or uniform, key=lambda row: np.mean(row.scores))
    ratio = np.mean(full.seconds) / np.mean(small.seconds)
    a, b, c = (paired(small.scores, other.scores, scale=100) for other in (full, reference, ablation))
    # (a) is an equivalence goal: the 10 % search may not be more than 0.5 points behind at two standard errors
    low_a = a.mean - 2 * a.standard_error
    if ratio >= 5 and low_a >= -0.5:
        text_a = "met"
    elif ratio < 5:
        text_a = "NOT met (less than 5x cheaper)"
    elif a.mean < -0.5:
        text_a = "NOT met (more than 0.5 points behind)"
    else:
        needed = trials_needed(a.mean, a.standard_error, a.n, -0.5)
        text_a = (f"NOT met (the mean is within 0.5 points, but the mean minus two standard errors is "
                  f"{low_a:+.2f}" + (f"; about {needed} trials at this mean and spread would keep it "
                                     f"within)" if needed else ")"))
    met_b = b.mean > 0 and b.clears() and small_bops <= budget_bops(reference.policies[0])
    met_c = c.mean > 0 and c.clears()
    return [
        f"- (a) search cost: {ratio:.1f}x less time on 10 % than on all the data; accuracy {a.mean:+.2f} +- "
        f"{a.standard_error:.2f} points (10 % search wins/ties/losses {a.record}). Goal (>= 5x cheaper, at most 0.5 "
        f"points behind at two standard errors): {text_a}.",
        f"- (b) GMPQ 10 % vs {reference.label}: {b.mean:+.2f} +- {b.standard_error:.2f} points (wins/ties/losses "
        f"{b.record}) at {small_bops / budget_bops(reference.policies[0]):.3f}x its BOPs (the most any trial's policy "
        f"used). Goal (better at equal or lower BOPs, by more than two standard errors): "
        f"{'met' if met_b else 'NOT met (' + significance(b) + ')'}.",
        f"- (c) attribution on vs off (lambda 20 vs 0): {c.mean:+.2f} +- {c.standard_error:.2f} points "
        f"(wins/ties/losses {c.record}). Goal (better, by more than two standard errors): "
        f"{'met' if met_c else 'NOT met (' + significance(c) + ')'}.",
    ]


def ends_variant(args):
    """(BENCHMARKS.md key suffix, title suffix) of a run's stem and classifier setting; 8/8, the default, has none."""
    if args.ends_bits == 8:
        return "", ""
    return f"_ends{args.ends_bits}", ends_label(args) or ", stem and classifier searched"


def section(args, rows, float_acc, target, int8, budget_text, budget_bops, evaluated):
    """The BENCHMARKS.md section: command, set-up, table, per-trial policies and the verdicts.

    ``float_acc`` is the float model's held-out Score; ``evaluated`` is the
    number of held-out images the accuracies are read on.
    """
    held = f"validation + test splits, {evaluated} images"
    ends = ends_label(args)
    ends_text = f" ({ends[2:]} in every policy)" if ends else " (stem and classifier searched too)"
    searched = [row for row in rows if row.samples]
    searched_with = searched[0].policies[0].metadata
    mode = ("training mode: BatchNorm on batch statistics" if searched_with["train_mode"]
            else "inference mode: the float model's BatchNorm statistics")
    shift = searched_with["random_shift"]
    reading = f"images moved by up to {shift} pixels at random" if shift else "images as they are"
    lines = [
        f"## Mixed precision (GMPQ), space `{args.space}`{ends_variant(args)[1]}",
        "",
        f"Command: `python bench/bench_gmpq.py --space {args.space} "
        + (f"--budget-bits {args.budget_bits} " if args.space == "gmpq" else f"--budget-fraction {args.budget_fraction} ")
        + f"--ends-bits {args.ends_bits} --epochs {args.epochs} --float-epochs {args.float_epochs} "
        f"--qat-epochs {args.qat_epochs} --qat-lr {args.qat_lr} --seeds {args.seeds}`. "
        f"Model: tfmc.models.digits_cnn on digits 32x32 (float accuracy {float_acc}, binomial standard error, "
        f"on the {held}); "
        f"space `{args.space}`{ends_text}; budget {target:,} BOPs "
        f"({target / int8:.3f} of 8-bit), {budget_text}. {args.seeds} trials: trial t runs each search with seed t "
        f"and trains every policy with the same QAT ({args.qat_epochs} epochs, Adam {args.qat_lr} cosine) under seed t. "
        f"Accuracy on the {held} (neither search nor QAT reads them), mean +- std over trials. "
        f"Search time: mean wall time of `tfmc.gmpq.search` ({args.epochs} epochs, batch 32, supernet in {mode}, {reading}) "
        f"on 2 shared CPU cores.",
        "",
    ]
    most = [max(budget_bops(p) for p in row.policies) for row in rows]
    lines.append(markdown_table(
        ["policy", "search images", "search time (s)", "BOPs (max)", "of 8-bit", "accuracy after QAT", "per trial",
         "bits per layer (w/a), trial 0"],
        [[row.label, row.samples or "-", f"{np.mean(row.seconds):.1f}", f"{most_bops:,}", f"{most_bops / int8:.3f}",
          "{:.4f} +- {:.4f}".format(*mean_and_std(row.scores)), " ".join(f"{s:.3f}" for s in row.scores),
          bits_text(row.policies[0])] for row, most_bops in zip(rows, most)],
        align="lrrrrrll"))
    if args.seeds > 1:
        lines += ["", "Searched policies of the other trials:", ""]
        lines += [f"- {row.label}, trial {t}: {bits_text(p)}" for row in searched for t, p in
                  enumerate(row.policies) if t]
    means = [np.mean(row.scores) for row in rows]
    spreads = [100 * mean_and_std(row.scores)[1] for row in rows]
    lines += ["", f"Room left: float {float_acc.accuracy:.4f}; after QAT the rows' means span {min(means):.4f} to "
              f"{max(means):.4f} ({round((max(means) - min(means)) * evaluated)} of {evaluated} images), and one row's "
              f"accuracy spreads {min(spreads):.2f} to {max(spreads):.2f} points (std) over trials.",
              "", f"Differences: mean of the per-trial differences in accuracy points, +- its standard error over "
              f"the {args.seeds} trials (search and QAT spread together).", ""]
    return "\n".join(lines + verdicts(rows, budget_bops))


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
    parser.add_argument("--qat-lr", type=float, default=3e-3,
                        help="Adam, cosine; 1e-3 leaves 2-3-bit QAT of the digits CNN short of convergence")
    parser.add_argument("--seeds", type=int, default=5, help="trials (search seed and QAT seed t in trial t)")
    parser.add_argument("--no-write", action="store_true", help="print, do not update BENCHMARKS.md")
    args = parser.parse_args()

    dataset = data.load("digits")
    model = models.digits_cnn(input_shape=dataset.input_shape)
    fit(model, dataset.x_train, dataset.y_train, epochs=args.float_epochs, learning_rate=3e-3, copy=False)
    float_acc = score(model, *held_out(dataset))
    fixed = {name: (args.ends_bits, args.ends_bits) for name in gmpq.end_layers(model, args.space)} if args.ends_bits else {}
    uniforms = references(model, args, fixed)
    int8 = bops.count_bops(model, bops.uniform_policy(model, 8, 8))
    target = bops.count_bops(model, uniforms[0][1]) if args.space == "gmpq" else int(args.budget_fraction * int8)
    print(f"float accuracy {float_acc}; budget {target:,} BOPs ({target / int8:.3f} of 8-bit)", file=sys.stderr)
    searches = [
        ("GMPQ, 10 % of the training data", dict(search_fraction=0.1)),
        ("GMPQ, all the training data", dict(search_fraction=1.0)),
        ("lambda = 0 (no attribution), 10 %", dict(search_fraction=0.1, attribution_weight=0.0)),
    ]
    rows = run_trials(model, dataset, args, target, fixed, searches, uniforms)
    if args.space == "gmpq":
        budget_text = "the BOPs of " + " and of ".join(label for label, _ in uniforms)
    else:
        budget_text = f"--budget-fraction {args.budget_fraction} of 8-bit, between " + " and ".join(
            label for label, _ in uniforms)
    text = section(args, rows, float_acc, target, int8, budget_text, lambda p: bops.count_bops(model, p),
                   len(held_out(dataset)[1]))
    print(text)
    if not args.no_write:
        write_section(f"bench_gmpq_{args.space}{ends_variant(args)[0]}", text)


if __name__ == "__main__":
    main()
