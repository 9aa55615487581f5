"""Gradual pruning during training vs one-shot pruning + fine-tuning, at equal epochs, on the Fashion-MNIST reference.

Run: .venv/bin/python bench/bench_gradual.py [--targets 0.5,0.3] [--seeds 3] [--epochs 1] [--ratios uniform[,amc]]
                                             [--train-images N] [--lr 1e-3] [--calib-images 500]
                                             [--amc-episodes 300] [--amc-warmup 100] [--amc-reward-images N]
                                             [--amc-fill-budget] [--amc-policies DIR] [--search-only] [--no-write]

The model is the cached mobilenet_v2_small reference (bench/reference.py,
trained 10 epochs on the 55,000 Fashion-MNIST training images). For each
target fraction of its MACs, ratio source and seed:

* one-shot: ``tfmc.prune(model, ratios, calib_data=500 training images)``
  (least-squares reconstruction), then ``--epochs`` epochs of
  ``tfmc.train.fit`` (Adam, cosine learning rate from --lr, seed = the seed);
* gradual: ``tfmc.prune.gradual.prune_during_training`` for the same epochs,
  learning rate, seed and training images (keep ratio decays from 1.0 to the
  target over the first 3/4 of the steps, masks re-selected about 20 times,
  then stripped).

Both are scored on the official 10,000-image test set; their MACs must be
equal. Ratio sources: ``uniform`` is the largest single keep ratio whose
pruned MACs fit the target (bench_amc.heuristic_policy); ``amc`` is one
``tfmc.amc.search`` per seed (search seed = training seed) with the
validation split, or its first --amc-reward-images, as reward set; with
--amc-policies DIR the policies are kept there and reused by a later run
with the same settings (--search-only runs just the searches).
With --train-images N each seed trains on the same random N of the 55,000
training images (drawn with that seed) in both arms.
"""
import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

import tfmc  # noqa: E402  must precede tensorflow
from tfmc import amc, train  # noqa: E402
from tfmc import data as data_lib  # noqa: E402
from tfmc.amc.budget import CostModel  # noqa: E402
from tfmc.graph import ChannelGraph  # noqa: E402
from tfmc.prune.gradual import prune_during_training  # noqa: E402
from bench_amc import heuristic_policy  # noqa: E402
from benchmarks_md import write_section  # noqa: E402
from harness import markdown_table, mean_and_error, paired, score  # noqa: E402
from reference import reference_model  # noqa: E402


def uniform_policy(model, target):
    """The largest uniform keep ratio whose pruned MACs fit ``target`` of the model's, as a PrunePolicy."""
    analysis = ChannelGraph(model)
    groups = [g for g in analysis.groups if g.prunable]
    cost = CostModel(analysis, "macs")
    policy, _ = heuristic_policy(cost, groups, target * cost.full, "uniform")
    return policy


# The agent the policies of the 2026-12-01 run were searched with (before AgentConfig's defaults changed);
# a policy file that names no agent was found by it.
_FIRST_AGENT = {"reward_scale": "none", "updates": 1, "targets": "bootstrap"}


def amc_settings(args, info):
    """The model, search and agent settings an AMC policy file must have been found with (kept in its metadata)."""
    return {"model": info["cache_key"], "episodes": args.amc_episodes, "warmup": args.amc_warmup,
            "reward_images": args.amc_reward_images, "fill_budget": args.amc_fill_budget,
            "calib_images": args.calib_images, "agent": amc.AgentConfig().as_dict()}


def _stored_settings(policy):
    """The settings a policy file records; files without an agent entry were searched by ``_FIRST_AGENT``."""
    stored = dict(policy.metadata.get("bench_gradual") or {})
    if stored and "agent" not in stored:
        stored["agent"] = {**amc.AgentConfig().as_dict(), **_FIRST_AGENT}
    return stored


def amc_policy(model, info, target, dataset, calib, seed, args):
    """One ``tfmc.amc.search`` at ``target`` of the MACs with ``seed``, or its policy from --amc-policies when found there.

    The reward set is the first --amc-reward-images of the validation split
    (all 5,000 when unset). With --amc-policies DIR the policy is written to
    ``DIR/amc_macs<target>_seed<seed>.json`` with the search settings in its
    metadata and read back, instead of searching again, when those settings
    match; a file found with other settings stops the run (never reused).

    Returns:
      (policy, seconds the search took, also when read from a file).
    """
    settings = amc_settings(args, info)
    path = os.path.join(args.amc_policies, f"amc_macs{target:g}_seed{seed}.json") if args.amc_policies else None
    if path and os.path.exists(path):
        policy = tfmc.PrunePolicy.from_json(path)
        if _stored_settings(policy) != settings:
            raise SystemExit(f"{path} was searched with {_stored_settings(policy)}, not {settings}: "
                             "move it away or give another --amc-policies folder")
        print(f"AMC policy read from {path}", flush=True)
        return policy, policy.metadata["search_seconds"]
    n = args.amc_reward_images or len(dataset.y_val)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench_gradual_amc_") as out:
        result = amc.search(model, (dataset.x_val[:n], dataset.y_val[:n]), target_macs=target, calib_data=calib,
                            episodes=args.amc_episodes, warmup=args.amc_warmup, seed=seed, out_dir=out,
                            progress=False, fill_budget=args.amc_fill_budget)
    seconds = time.monotonic() - started
    policy = result.policy
    policy.metadata["bench_gradual"] = settings
    policy.metadata["search_seconds"] = round(seconds, 1)
    print(f"AMC target {target:g} seed {seed}: best reward-set accuracy {result.best_accuracy:.4f} at episode "
          f"{result.best_episode} of {result.episodes_done}, {seconds:.0f} s", flush=True)
    if path:
        os.makedirs(args.amc_policies, exist_ok=True)
        policy.to_json(path)
    return policy, seconds


def fmt_mean(values):
    mean, error = mean_and_error([100 * v for v in values])
    return f"{mean:.2f} +- {error:.2f}" if len(values) > 1 else f"{mean:.2f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", default="0.5,0.3", help="fractions of the reference's MACs, comma-separated")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=1, help="fine-tuning epochs (one-shot) = pruning epochs (gradual)")
    parser.add_argument("--ratios", default="uniform", help="ratio sources, comma-separated: uniform, amc")
    parser.add_argument("--train-images", type=int, default=None,
                        help="train on a random subset of this many training images per seed (default all 55,000)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--calib-images", type=int, default=500)
    parser.add_argument("--amc-episodes", type=int, default=300)
    parser.add_argument("--amc-warmup", type=int, default=100)
    parser.add_argument("--amc-reward-images", type=int, default=None,
                        help="AMC reward set: the first N images of the validation split (default all 5,000)")
    parser.add_argument("--amc-fill-budget", action="store_true",
                        help="AMC with fill_budget=True (every policy spends the whole budget, as uniform does)")
    parser.add_argument("--amc-policies", default=None,
                        help="folder where each AMC policy is saved, and read back by a later run with the same settings")
    parser.add_argument("--search-only", action="store_true", help="run (or read) the AMC searches and stop")
    parser.add_argument("--no-write", action="store_true", help="print the section instead of writing BENCHMARKS.md")
    args = parser.parse_args()
    targets = [float(t) for t in args.targets.split(",")]
    sources = args.ratios.split(",")
    unknown = set(sources) - {"uniform", "amc"}
    if unknown:
        parser.error(f"unknown ratio sources {sorted(unknown)}; use uniform and/or amc")

    model, info = reference_model("mobilenet_v2_small")
    dataset = data_lib.load_for_model("fashion_mnist", model)
    calib = dataset.x_train[:args.calib_images]
    full_macs = tfmc.count_macs(model)
    reference = score(model, dataset.x_test, dataset.y_test)
    print(f"reference: {reference}, {full_macs:,} MACs", flush=True)

    results = {}  # (target, source) -> {"oneshot": [...], "gradual": [...], "macs": int, "seconds": {...}}
    started = time.monotonic()
    for target in targets:
        uniform = uniform_policy(model, target) if "uniform" in sources else None
        for source in sources:
            if args.search_only and source != "amc":
                continue
            entry = results.setdefault((target, source), {"oneshot": [], "gradual": [], "macs": set(),
                                                          "before": [], "reward": [],
                                                          "seconds": {"oneshot": 0.0, "gradual": 0.0, "search": 0.0}})
            for seed in range(args.seeds):
                if args.train_images:
                    index = np.sort(np.random.default_rng(seed).choice(len(dataset.x_train), args.train_images,
                                                                       replace=False))
                    x, y = dataset.x_train[index], dataset.y_train[index]
                else:
                    x, y = dataset.x_train, dataset.y_train
                if source == "uniform":
                    policy = uniform
                else:
                    policy, seconds = amc_policy(model, info, target, dataset, calib, seed, args)
                    entry["seconds"]["search"] += seconds
                    entry["reward"].append(policy.metadata["reward_accuracy"])
                    if args.search_only:
                        continue
                t0 = time.monotonic()
                pruned = tfmc.prune(model, policy, calib_data=calib)
                entry["before"].append(score(pruned, dataset.x_test, dataset.y_test).accuracy)
                oneshot, _ = train.fit(pruned, x, y, epochs=args.epochs, batch_size=args.batch_size,
                                       learning_rate=args.lr, seed=seed)
                entry["seconds"]["oneshot"] += time.monotonic() - t0
                t0 = time.monotonic()
                gradual, _ = prune_during_training(model, policy, x, y, epochs=args.epochs, batch_size=args.batch_size,
                                                   learning_rate=args.lr, seed=seed)
                entry["seconds"]["gradual"] += time.monotonic() - t0
                macs = (tfmc.count_macs(oneshot), tfmc.count_macs(gradual))
                if macs[0] != macs[1]:
                    raise SystemExit(f"MACs differ at target {target}, {source}, seed {seed}: "
                                     f"one-shot {macs[0]:,}, gradual {macs[1]:,}")
                entry["macs"].add(macs[0])
                a, b = score(oneshot, dataset.x_test, dataset.y_test), score(gradual, dataset.x_test, dataset.y_test)
                entry["oneshot"].append(a)
                entry["gradual"].append(b)
                print(f"target {target} {source} seed {seed}: MACs {macs[0]:,} ({macs[0] / full_macs:.3f}); "
                      f"one-shot {a}, gradual {b} [{time.monotonic() - started:.0f} s]", flush=True)

    if args.search_only:
        return
    rows, goal_lines = [], []
    for (target, source), entry in results.items():
        a = [s.accuracy for s in entry["oneshot"]]
        b = [s.accuracy for s in entry["gradual"]]
        diff = paired(b, a, scale=100)
        holds = diff.mean + 2 * diff.standard_error >= 0
        se_text = f"{diff.standard_error:.2f}" if len(a) > 1 else "n/a"
        macs = sorted(entry["macs"])
        macs_text = ", ".join(f"{m:,} ({m / full_macs:.3f})" for m in macs)
        goal = ("yes" if holds else "no") if len(a) > 1 else "n/a (1 seed)"
        rows.append([f"{target:g}", source, macs_text, fmt_mean(entry["before"]), fmt_mean(a), fmt_mean(b),
                     f"{diff.mean:+.2f} +- {se_text}", diff.record, goal])
        goal_lines.append(f"{target:g} / {source}: per-seed test accuracy (%) one-shot "
                          f"{', '.join(f'{100 * v:.2f}' for v in a)}; gradual {', '.join(f'{100 * v:.2f}' for v in b)}; "
                          f"time one-shot {entry['seconds']['oneshot']:.0f} s, gradual {entry['seconds']['gradual']:.0f} s"
                          + (f", AMC searches {entry['seconds']['search']:.0f} s (best reward-set accuracy "
                             f"{', '.join(f'{v:.3f}' for v in entry['reward'])})" if source == "amc" else "") + ".")

    command = (f"python bench/bench_gradual.py --targets {args.targets} --seeds {args.seeds} --epochs {args.epochs} "
               f"--ratios {args.ratios} --lr {args.lr:g} --batch-size {args.batch_size} "
               f"--calib-images {args.calib_images}"
               + (f" --train-images {args.train_images}" if args.train_images else "")
               + (f" --amc-episodes {args.amc_episodes} --amc-warmup {args.amc_warmup}" if "amc" in sources else "")
               + (f" --amc-reward-images {args.amc_reward_images}" if "amc" in sources and args.amc_reward_images
                  else "")
               + (" --amc-fill-budget" if "amc" in sources and args.amc_fill_budget else "")
               + (f" --amc-policies {args.amc_policies}" if "amc" in sources and args.amc_policies else ""))
    reward_set = (f"the first {args.amc_reward_images:,} images of the validation split" if args.amc_reward_images
                  else "the 5,000-image validation split")
    images = (f"a random {args.train_images:,} of the 55,000 training images per seed (the same ones in both arms)"
              if args.train_images else "all 55,000 training images")
    section = "\n".join([
        "## Gradual pruning during training vs one-shot pruning + fine-tuning (Fashion-MNIST mobilenet_v2_small)",
        "",
        f"Command: `{command}`.",
        "",
        f"Model: the cached mobilenet_v2_small reference ({full_macs:,} MACs, test accuracy {reference}). "
        f"One-shot: `tfmc.prune(model, ratios, calib_data=first {args.calib_images} training images)` "
        f"(least-squares reconstruction), then {args.epochs} epoch(s) of `tfmc.train.fit` (Adam, cosine learning "
        f"rate from {args.lr:g}, batch {args.batch_size}, seed = the trial seed). Gradual: "
        f"`tfmc.prune.gradual.prune_during_training` for the same {args.epochs} epoch(s), learning rate, batch size, "
        "seed and images (keep ratio decays from 1.0 to the target over the first 3/4 of the steps, PolynomialDecay "
        "power 3, masks re-selected about 20 times by UpdateMasks, then `tfmc.strip`). "
        f"Training images: {images}. Seeds 0..{args.seeds - 1}. Ratios: uniform = the largest single keep ratio whose "
        "pruned MACs fit the target (channels in multiples of 8)"
        + ("; amc = one `tfmc.amc.search` per seed, search seed = training seed (reward: top-1 accuracy on "
           f"{reward_set} after least-squares reconstruction from the same {args.calib_images} training images, "
           f"{args.amc_warmup} warm-up + {args.amc_episodes} learning episodes, "
           + ("fill_budget=True so every policy spends the budget as uniform does" if args.amc_fill_budget
              else "the paper's action wall") + ")" if "amc" in sources else "")
        + ". Accuracy: top-1 on the official 10,000-image test set (per-arm figure: mean over seeds +- its standard "
        "error, in %; one test score's binomial SE is about 0.3 points). Difference: paired per seed, gradual - "
        "one-shot, in points, +- its standard error; record = gradual wins/ties/losses. Goal "
        "\"gradual at least level with one-shot at equal epochs\": holds when difference + 2 SE >= 0. "
        "Both arms' stripped models have identical MACs (checked).",
        "",
        markdown_table(["MACs target", "ratios", "MACs (fraction)", "one-shot before fine-tuning (%)",
                        "one-shot + fine-tuning (%)", "gradual (%)",
                        "gradual - one-shot (pts)", "W/T/L", "goal holds"], rows),
        "",
        *[f"- {line}" for line in goal_lines],
    ])
    print(section)
    if not args.no_write:
        write_section("bench_gradual", section)


if __name__ == "__main__":
    main()
