"""Speedup fidelity of structural pruning: MobileNetV2 at about half its MACs, timed in LiteRT.

Run: .venv/bin/python bench/bench_prune.py [--size 128] [--rounds 15] [--runs 20] [--threads 2]

Every model is converted to float32 .tflite and run by the LiteRT
interpreter (XNNPACK) through the harness's ``host_latency``: the models take
turns in rounds, so drift on this noisy machine hits all alike; each round's
per-inference median is taken and the medians of the rounds are compared. Speedup fidelity =
(latency ratio) / (MACs ratio); 1.0 means latency fell exactly as MACs did.
"""
import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tfmc  # noqa: E402
from tfmc._keras import keras  # noqa: E402
from benchmarks_md import write_section  # noqa: E402
from harness import host_latency, markdown_table, model_facts  # noqa: E402


def uniform_ratio_for(model, target_fraction, round_to):
    """Bisect the uniform keep ratio whose pruned MACs are closest to ``target_fraction``."""
    full = tfmc.count_macs(model)
    lo, hi, best = 0.2, 1.0, None
    for _ in range(8):
        mid = (lo + hi) / 2
        fraction = tfmc.count_macs(tfmc.prune(model, mid, round_to=round_to)) / full
        if best is None or abs(fraction - target_fraction) < abs(best[1] - target_fraction):
            best = (mid, fraction)
        lo, hi = (mid, hi) if fraction < target_fraction else (lo, mid)
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--round-to", type=int, default=8, help="kept channels are multiples of this")
    parser.add_argument("--no-write", action="store_true", help="print only, do not update BENCHMARKS.md")
    args = parser.parse_args()

    keras.utils.set_random_seed(0)
    shape = (args.size, args.size, 3)
    model = keras.applications.MobileNetV2(weights=None, input_shape=shape, alpha=1.0)
    ratio, _ = uniform_ratio_for(model, 0.5, args.round_to)
    candidates = [
        ("original (width 1.0)", model),
        (f"tfmc.prune, uniform keep {ratio:.3f}", tfmc.prune(model, ratio, round_to=args.round_to)),
    ] + [
        (f"reference: width multiplier {alpha}", keras.applications.MobileNetV2(weights=None, input_shape=shape, alpha=alpha))
        for alpha in (0.75, 0.5)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        paths = [tfmc.export.to_tflite(m, os.path.join(tmp, f"{i}.tflite"), mode="float32").path
                 for i, (_, m) in enumerate(candidates)]
        facts = [model_facts(m, path) for (_, m), path in zip(candidates, paths)]
        latency = host_latency(paths, reference=0, rounds=args.rounds, threads=args.threads, runs=args.runs, warmup=10)
    command = "python bench/bench_prune.py " + " ".join(
        f"--{k} {v}" for k, v in (("size", args.size), ("threads", args.threads), ("rounds", args.rounds), ("runs", args.runs), ("round-to", args.round_to))
    )
    rows = []
    for (name, _), fact, timed in zip(candidates, facts, latency):
        macs_ratio = facts[0].macs / fact.macs
        fidelity = f"{timed.speedup / macs_ratio:.3f}" if fact.macs != facts[0].macs else "-"
        rows.append([name, f"{fact.macs:,}", f"{fact.params:,}", f"{fact.tflite_bytes:,}", f"{timed.ms:.3f}",
                     f"{macs_ratio:.3f}", f"{timed.speedup:.3f}", fidelity])
    table = "\n".join([
        f"## Structural pruning: MobileNetV2 {args.size}x{args.size} at half the MACs (channels in multiples of {args.round_to})",
        "",
        f"Command: `{command}`. Float32 .tflite, LiteRT interpreter with XNNPACK, {args.threads} threads, "
        f"{args.rounds} alternating rounds of {args.runs} runs over all four models, median of round medians. "
        "Speedup fidelity = latency ratio / MACs ratio against the original (goal >= 0.9; AMC's MobileNet on a Pixel 1: 0.89). "
        "Keras' own width-multiplier models are timed in the same run as the reference for what this runtime gives.",
        "",
        markdown_table(["model", "MACs", "params", ".tflite bytes", "latency (ms)", "MACs ratio", "latency ratio",
                        "fidelity"], rows),
    ])
    print(table)
    if not args.no_write:
        write_section(f"bench_prune_{args.size}_round{args.round_to}", table)


if __name__ == "__main__":
    main()
