"""AMC under a latency budget, end to end: a latency table measured here, searches, the pruned .tflite files timed.

Run: .venv/bin/python bench/bench_amc_latency.py [--target 0.6] [--episodes 300] [--warmup 100]
                                                 [--methods ddpg,random,greedy] [--seeds 1]
                                                 [--train-epochs 20] [--rounds 9] [--no-write]

The model is tfmc.models.digits_cnn trained on the digits training split.
`tflite_bench.lut.build_latency_table` times every conv / depthwise / dense
layer alone, as a one-layer float .tflite in the LiteRT interpreter (1
thread), on a 4 x 4 grid of channel counts. Each searcher of ``--methods``
(``amc.search(method=...)``: the DDPG agent, random search, greedy) searches
with a budget of ``--target`` times the table's latency of the whole model
(He et al., AMC, ECCV 2018, section 3.3: a latency-constrained search with a
lookup table), once per seed, with the same number of episodes. Uniform
pruning gets the largest single keep ratio whose table latency fits the
same budget, and, for comparison, the one that fits the same fraction of
the MACs. Every policy is applied with reconstruction, scored on the test
split (no fine-tuning) and exported to float32 .tflite; all files are timed
against the original in the same alternating rounds (1 thread). The
table's prediction of each model's latency (sum over its layers) is set
against the measurement.
"""
import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

import tfmc  # noqa: E402
from tfmc import amc, data, models, train  # noqa: E402
from tfmc.amc.budget import CostModel  # noqa: E402
from tfmc.graph import ChannelGraph  # noqa: E402
from tflite_bench.lut import build_latency_table  # noqa: E402
from bench_amc import heuristic_policy, kept_channels_table  # noqa: E402
from benchmarks_md import write_section  # noqa: E402
from harness import host_latency, markdown_table, mean_and_error, score  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", type=float, default=0.6, help="budget as a fraction of the table's full latency")
    parser.add_argument("--episodes", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--methods", default="ddpg,random,greedy", help="searchers of amc.search, comma-separated")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--train-epochs", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=9, help="alternating timing rounds")
    parser.add_argument("--runs", type=int, default=200, help="inferences per model per round")
    parser.add_argument("--no-write", action="store_true", help="print the section instead of writing BENCHMARKS.md")
    args = parser.parse_args()
    methods = args.methods.split(",")

    dataset = data.load("digits", image_size=32)
    base, _ = train.fit(models.digits_cnn(), dataset.x_train, dataset.y_train, epochs=args.train_epochs, seed=0)
    calib = dataset.x_train[:500]
    started = time.perf_counter()
    table = build_latency_table(base, threads=1, runs=30, warmup=5)
    table_seconds = time.perf_counter() - started
    analysis = ChannelGraph(base)
    groups = [g for g in analysis.groups if g.prunable]
    latency = CostModel(analysis, "latency", latency=table)
    macs = CostModel(analysis, "macs")
    budget_ms = args.target * latency.full

    policies = []  # (method label, seed or None, policy, search seconds, kept counts)
    with tempfile.TemporaryDirectory(prefix="bench_amc_latency_") as out:
        for seed in range(args.seeds):
            for method in methods:
                started = time.perf_counter()
                result = amc.search(base, (dataset.x_val, dataset.y_val), calib_data=calib, episodes=args.episodes,
                                    warmup=args.warmup, seed=seed, progress=False, method=method,
                                    target_latency_ms=budget_ms, latency_table=table)
                policies.append((f"AMC {method}, latency budget", seed, result.policy, time.perf_counter() - started,
                                 result.policy.metadata["kept_channels"]))
                print(f"seed {seed} {method}: {policies[-1][3]:.0f} s", flush=True)
        for label, cost, limit in (("uniform keep ratio, latency budget", latency, budget_ms),
                                   (f"uniform keep ratio, {args.target:g} of the MACs", macs, args.target * macs.full)):
            policy, counts = heuristic_policy(cost, groups, limit, "uniform")
            policies.append((label, None, policy, 0.0, counts))

        rows, paths = [], [tfmc.export.to_tflite(base, os.path.join(out, "original.tflite"), mode="float32").path]
        for index, (label, seed, policy, seconds, counts) in enumerate(policies):
            pruned = tfmc.prune(base, policy, calib_data=calib)
            paths.append(tfmc.export.to_tflite(pruned, os.path.join(out, f"{index}.tflite"), mode="float32").path)
            rows.append({"label": label, "seed": seed, "seconds": seconds,
                         "accuracy": score(pruned, dataset.x_test, dataset.y_test),
                         "macs": macs.total(counts) / macs.full, "table_ms": latency.total(counts)})
        measured = host_latency(paths, reference=0, rounds=args.rounds, threads=1, runs=args.runs, warmup=20)
    original = score(base, dataset.x_test, dataset.y_test)
    for row, timed in zip(rows, measured[1:]):
        row.update(ms=timed.ms, ratio=timed.ratio)

    command = (f"python bench/bench_amc_latency.py --target {args.target:g} --episodes {args.episodes} "
               f"--warmup {args.warmup} --methods {args.methods} --seeds {args.seeds} "
               f"--train-epochs {args.train_epochs} --rounds {args.rounds} --runs {args.runs}")
    lines = [
        "## AMC under a latency budget",
        "",
        f"Command: `{command}`. Model: `tfmc.models.digits_cnn` trained {args.train_epochs} epochs on digits "
        f"(32x32), test accuracy {original} (+- its binomial standard error). Latency table: "
        f"`build_latency_table(model, threads=1)`, {len(table.layers)} layers on a 4 x 4 grid of channel counts, "
        f"each point a one-layer float .tflite timed by the LiteRT interpreter ({table_seconds:.0f} s); it sums to "
        f"{latency.full:.4f} ms for the whole model. Budget: {args.target:g} of that ({budget_ms:.4f} ms). Each "
        f"searcher: {args.warmup} + {args.episodes} episodes per seed (greedy may use fewer), reward = accuracy on "
        f"the {len(dataset.x_val)}-image validation split, reconstruction from 500 training images. Uniform: the "
        f"largest single keep ratio that fits the latency budget by the table, and the one that fits "
        f"{args.target:g} of the MACs. Measured: every model as a float32 .tflite, LiteRT interpreter (XNNPACK, 1 "
        f"thread), all {len(paths)} files in the same {args.rounds} alternating rounds of {args.runs} inferences, "
        f"median of the rounds' medians; ratio = latency / the original's in the same rounds. Test accuracy "
        f"({len(dataset.y_test)} images) before any fine-tuning.",
        "",
        markdown_table(["model", "seed", "search (s)", "test acc.", "MACs (of original)", "table latency (ms)",
                        "of original (table)", "measured latency (ms)", "of original (measured)",
                        "within the budget (measured)"],
                       [["original", "-", "-", original, "1.000", f"{latency.full:.4f}", "1.000",
                         f"{measured[0].ms:.4f}", "1.000", "-"]]
                       + [[r["label"], "-" if r["seed"] is None else r["seed"], f"{r['seconds']:.0f}", r["accuracy"],
                           f"{r['macs']:.3f}", f"{r['table_ms']:.4f}", f"{r['table_ms'] / latency.full:.3f}",
                           f"{r['ms']:.4f}", f"{r['ratio']:.3f}", "yes" if r["ratio"] <= args.target else "no"]
                          for r in rows]),
    ]
    if args.seeds > 1:
        lines += ["", f"Mean +- standard error over the {args.seeds} seeds:", ""]
        summary = []
        for label in dict.fromkeys(r["label"] for r in rows if r["seed"] is not None):
            mine = [r for r in rows if r["label"] == label]
            figures = ([100 * r["accuracy"].accuracy for r in mine], [r["ratio"] for r in mine],
                       [r["macs"] for r in mine])
            summary.append([label] + ["{:.3f} +- {:.3f}".format(*mean_and_error(values)) for values in figures])
        lines.append(markdown_table(["searcher", "test acc. (%)", "measured latency (of original)",
                                     "MACs (of original)"], summary))
    error = max(abs(r["table_ms"] / latency.full - r["ratio"]) for r in rows)
    lines += ["", f"The table's fraction of the original's latency and the measured one differ by at most {error:.3f} "
              f"over these models (table {latency.full:.4f} ms against {measured[0].ms:.4f} ms measured for the "
              f"whole original). Timings share 2 cores with other work; alternating rounds make drift hit all files "
              f"alike.", "", "Kept channels per group:", ""]
    lines.append(kept_channels_table(groups, [(label if seed is None else f"{label}, seed {seed}", policy)
                                              for label, seed, policy, _, _ in policies]))
    markdown = "\n".join(lines)
    print(markdown)
    if not args.no_write:
        write_section("amc_latency", markdown)


if __name__ == "__main__":
    main()
