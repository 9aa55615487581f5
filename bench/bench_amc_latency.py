"""AMC under a latency budget, end to end: a latency table measured here, a search, and the pruned .tflite timed.

Run: .venv/bin/python bench/bench_amc_latency.py [--target 0.6] [--episodes 300] [--warmup 100]
                                                 [--train-epochs 20] [--rounds 9] [--no-write]

The model is tfmc.models.digits_cnn trained on the digits training split.
`tflite_bench.lut.build_latency_table` times every conv / depthwise / dense
layer alone, as a one-layer float .tflite in the LiteRT interpreter (1
thread), on a 4 x 4 grid of channel counts. AMC searches with a budget of
``--target`` times the table's latency of the whole model (He et al., AMC,
ECCV 2018, section 3.3: a latency-constrained search with a lookup table),
and, for comparison, with the same fraction of MACs. Both policies and the
uniform keep ratio at that MACs fraction are applied with reconstruction
and exported to float32 .tflite; all are timed against the original in
alternating rounds (1 thread). The table's prediction of each model's
latency (sum over its layers) is set against the measurement.
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
from harness import host_latency, markdown_table, score  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", type=float, default=0.6, help="budget as a fraction of the table's full latency")
    parser.add_argument("--episodes", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--train-epochs", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=9, help="alternating timing rounds")
    parser.add_argument("--runs", type=int, default=200, help="inferences per model per round")
    parser.add_argument("--no-write", action="store_true", help="print the section instead of writing BENCHMARKS.md")
    args = parser.parse_args()

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

    policies = {}
    with tempfile.TemporaryDirectory(prefix="bench_amc_latency_") as out:
        for name, budget in (("AMC, latency budget", {"target_latency_ms": budget_ms, "latency_table": table}),
                             ("AMC, MACs budget", {"target_macs": args.target})):
            started = time.perf_counter()
            result = amc.search(base, (dataset.x_val, dataset.y_val), calib_data=calib, episodes=args.episodes,
                                warmup=args.warmup, seed=0, out_dir=os.path.join(out, str(len(policies))),
                                progress=False, **budget)
            policies[name] = (result.policy, time.perf_counter() - started, result.policy.metadata["kept_channels"])
        uniform, uniform_counts = heuristic_policy(macs, groups, args.target * macs.full, "uniform")
        policies[f"uniform keep ratio, {args.target:g} of the MACs"] = (uniform, 0.0, uniform_counts)

        rows, paths = [], [tfmc.export.to_tflite(base, os.path.join(out, "original.tflite"), mode="float32").path]
        for index, (name, (policy, seconds, counts)) in enumerate(policies.items()):
            pruned = tfmc.prune(base, policy, calib_data=calib)
            paths.append(tfmc.export.to_tflite(pruned, os.path.join(out, f"{index}.tflite"), mode="float32").path)
            rows.append([name, f"{seconds:.0f}", score(pruned, dataset.x_test, dataset.y_test),
                         f"{macs.total(counts) / macs.full:.3f}", f"{latency.total(counts):.4f}",
                         f"{latency.total(counts) / latency.full:.3f}"])
        measured = host_latency(paths, reference=0, rounds=args.rounds, threads=1, runs=args.runs, warmup=20)
    original = score(base, dataset.x_test, dataset.y_test)
    rows.insert(0, ["original", "-", original, "1.000", f"{latency.full:.4f}", "1.000"])

    command = (f"python bench/bench_amc_latency.py --target {args.target} --episodes {args.episodes} "
               f"--warmup {args.warmup} --train-epochs {args.train_epochs} --rounds {args.rounds} --runs {args.runs}")
    lines = [
        "## AMC under a latency budget",
        "",
        f"Command: `{command}`. Model: `tfmc.models.digits_cnn` trained {args.train_epochs} epochs on digits "
        f"(32x32), test accuracy {original} (+- its binomial standard error here and below). Latency table: "
        f"`build_latency_table(model, threads=1)`, {len(table.layers)} layers on a 4 x 4 grid of channel counts, "
        f"each point a one-layer float .tflite timed by the LiteRT interpreter ({table_seconds:.0f} s); it sums to "
        f"{latency.full:.4f} ms for the whole model. Budget: {args.target:g} of that ({budget_ms:.4f} ms), and for "
        f"comparison {args.target:g} of the MACs. AMC: {args.warmup} warm-up + {args.episodes} episodes, reward = "
        f"accuracy on the {len(dataset.x_val)}-image validation split, reconstruction from 500 training images, "
        f"seed 0. Measured: float32 .tflite, LiteRT interpreter (XNNPACK, 1 thread), {args.rounds} alternating "
        f"rounds of {args.runs} inferences, median of the rounds' medians. Test accuracy before any fine-tuning.",
        "",
        markdown_table(["model", "search (s)", "test acc.", "MACs (of original)", "table latency (ms)",
                        "of original (table)", "measured latency (ms)", "of original (measured)"],
                       [row + [f"{timed.ms:.4f}", f"{timed.ratio:.3f}"] for row, timed in zip(rows, measured)]),
    ]
    lines += ["", "Kept channels per group:", ""]
    lines.append(kept_channels_table(groups, [(name, policy) for name, (policy, _, _) in policies.items()]))
    markdown = "\n".join(lines)
    print(markdown)
    if not args.no_write:
        write_section("amc_latency", markdown)


if __name__ == "__main__":
    main()
