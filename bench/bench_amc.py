"""AMC on the digits CNN at half the MACs: the searched policy vs uniform, "deep" and "shallow" heuristics.

Run: .venv/bin/python bench/bench_amc.py [--episodes 300] [--warmup 100] [--seeds 3] [--train-epochs 20]
                                         [--finetune-epochs 3] [--target 0.5] [--walls fill,paper]
                                         [--sigma-decays 0.95] [--copies 4] [--reward-images val]
                                         [--calib-images 500] [--no-write]

The model is tfmc.models.digits_cnn (MobileNetV2-like: residual Adds couple
the producers of a block's output, depthwise layers follow their input),
trained on the digits training split. The reward set is the validation
split, or with --reward-images train fresh augmentations of the training
images (1257 distinct digits where the validation split has 270); the test
split is only used for the figures below. With --copies N
each split also holds N randomly rotated, scaled and shifted copies of its
own images (the splits stay disjoint): 270 reward images make one image
worth 0.37 points, less than the gaps between good policies, so the search
would mostly pick the policy the reward set happens to favour. Every policy is
applied with tfmc.prune and least-squares reconstruction from 500 training
images (--calib-images; 0 turns reconstruction off, in the search too),
then scored on the test split before and after the same short fine-tune.
The heuristics keep the most channels that still fit the same
MACs budget: uniform (one keep ratio), deep (keep ratio falls linearly with
depth: deeper groups pruned more) and shallow (the reverse), as in He et
al., AMC, ECCV 2018, section 4.1. Each AMC seed is a separate search, run
once per action wall (``paper``: the paper's and tfmc's default, which
only stops a policy from exceeding the budget; ``fill``:
``fill_budget=True``, which also makes every policy spend it) and per
exploration decay (0.95 per episode is the paper's: after about 100
learning episodes the noise is gone and most episodes repeat one policy);
fine-tuning seeds are shared by all policies.
"""
import argparse
import dataclasses
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
from tfmc.policy import PrunePolicy, kept_channels  # noqa: E402
from benchmarks_md import write_section  # noqa: E402
from harness import markdown_table, mean_and_error, mean_and_std, paired, score  # noqa: E402


def _counts(groups, ratios, round_to=8):
    return {g.name: kept_channels(g.channels, r, round_to) for g, r in zip(groups, ratios)}


def heuristic_policy(cost, groups, limit, shape, lbound=0.2):
    """The least pruning of ``shape`` (uniform / deep / shallow) whose MACs fit ``limit``, by bisection."""
    count = len(groups)
    weights = {"uniform": [1.0] * count,
               "deep": [(t + 1) / count for t in range(count)],
               "shallow": [(count - t) / count for t in range(count)]}[shape]

    def ratios(strength):
        return [min(1.0, max(lbound, 1.0 - strength * w)) for w in weights]

    low, high = 0.0, (1.0 - lbound) / min(weights)
    for _ in range(60):
        mid = (low + high) / 2
        if cost.total(_counts(groups, ratios(mid))) <= limit:
            high = mid
        else:
            low = mid
    counts = _counts(groups, ratios(high))
    return PrunePolicy({g.name: counts[g.name] / g.channels for g in groups}), counts


def kept_channels_table(groups, named_policies, round_to=8):
    """A Markdown table with one row per (name, PrunePolicy): the kept channel count of every group."""
    return markdown_table(["policy", *(f"{g.name} ({g.channels})" for g in groups)],
                          [[name, *(kept_channels(g.channels, policy.keep_ratios[g.name], round_to) for g in groups)]
                           for name, policy in named_policies])


def augmented(x, y, copies, seed):
    """``x`` followed by ``copies`` randomly rotated (+-12 deg), scaled (0.9-1.1) and shifted (+-2 px) versions."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    size = x.shape[1]
    centre = (size - 1) / 2.0
    out = [x]
    for _ in range(copies):
        batch = np.empty_like(x)
        for i, image in enumerate(x):
            angle, scale = np.deg2rad(rng.uniform(-12, 12)), rng.uniform(0.9, 1.1)
            matrix = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]) / scale
            offset = centre - matrix @ (centre + rng.uniform(-2, 2, 2))
            plane = ndimage.affine_transform(image[..., 0], matrix, offset, order=1, mode="constant")
            batch[i] = np.clip(plane, 0.0, 1.0)[..., None]
        out.append(batch)
    return np.concatenate(out), np.concatenate([y] * (copies + 1))


def evaluate(model, policy, dataset, reward, calib, finetune_epochs, seed, lr):
    """Test accuracy before and after each fine-tune length (each one its own run from the pruned model)."""
    pruned = tfmc.prune(model, policy, calib_data=calib)
    before = score(pruned, dataset.x_test, dataset.y_test).accuracy
    val = score(pruned, *reward).accuracy
    after = {}
    for epochs in finetune_epochs:
        tuned, _ = train.fit(pruned, dataset.x_train, dataset.y_train, epochs=epochs, learning_rate=lr, seed=seed)
        after[epochs] = score(tuned, dataset.x_test, dataset.y_test).accuracy
    return {"before": before, "after": after, "val": val, "macs": tfmc.count_macs(pruned)}


def setting_variant(args):
    """(BENCHMARKS.md key suffix, title suffix) of the reward set and reconstruction; the defaults have none."""
    variants = [("_reward_train", ", reward on augmented training images")] if args.reward_images == "train" else []
    if not args.calib_images:
        variants.append(("_no_refit", ", without reconstruction"))
    return "".join(k for k, _ in variants), "".join(t for _, t in variants)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--train-epochs", type=int, default=20)
    parser.add_argument("--finetune-epochs", default="3",
                        help="fine-tune lengths, comma-separated: each policy is fine-tuned once per length")
    parser.add_argument("--finetune-lr", type=float, default=5e-4)
    parser.add_argument("--target", type=float, default=0.5)
    parser.add_argument("--walls", default="fill,paper",
                        help="AMC runs with each action wall: fill (spend the whole budget) and/or paper")
    parser.add_argument("--sigma-decays", default="0.95",
                        help="AMC runs with each exploration decay per episode (0.95: the paper's)")
    parser.add_argument("--copies", type=int, default=4,
                        help="augmented copies added to each split (0: the plain 1257/270/270 digits splits)")
    parser.add_argument("--calib-images", type=int, default=500,
                        help="training images for least-squares reconstruction (0: none, pruned weights as they are)")
    parser.add_argument("--reward-images", default="val", choices=["val", "train"],
                        help="val: the validation split; train: --copies fresh augmentations of the training images")
    parser.add_argument("--no-write", action="store_true", help="print the section instead of writing BENCHMARKS.md")
    args = parser.parse_args()
    lengths = [int(v) for v in args.finetune_epochs.split(",")]
    if args.reward_images == "train" and not args.copies:
        parser.error("--reward-images train needs --copies >= 1 (the fresh augmentations are the reward set)")

    dataset = plain = data.load("digits", image_size=32)
    if args.copies:  # larger reward and test sets: one image is worth less than 0.1 points instead of 0.37
        splits = {}
        for index, part in enumerate(("train", "val", "test")):
            splits[f"x_{part}"], splits[f"y_{part}"] = augmented(getattr(dataset, f"x_{part}"),
                                                                 getattr(dataset, f"y_{part}"), args.copies, index)
        dataset = dataclasses.replace(dataset, **splits)
    if args.reward_images == "train":  # seed 3: augmentations the model was not trained on (splits use seeds 0-2)
        reward_x, reward_y = augmented(plain.x_train, plain.y_train, args.copies, 3)
        reward = (reward_x[len(plain.x_train):], reward_y[len(plain.y_train):])
    else:
        reward = (dataset.x_val, dataset.y_val)
    base, _ = train.fit(models.digits_cnn(), dataset.x_train, dataset.y_train, epochs=args.train_epochs, seed=0)
    calib = dataset.x_train[:args.calib_images] if args.calib_images else None
    analysis = ChannelGraph(base)
    groups = [g for g in analysis.groups if g.prunable]
    cost = CostModel(analysis, "macs")
    limit = args.target * cost.full
    original = score(base, dataset.x_test, dataset.y_test)

    decays = [float(v) for v in args.sigma_decays.split(",")]
    walls = args.walls.split(",")
    variants = [(wall, decay) for wall in walls for decay in decays]
    variant_key = lambda wall, decay: f"amc:{wall}@{decay:g}"  # noqa: E731
    policies = {shape: heuristic_policy(cost, groups, limit, shape)[0] for shape in ("uniform", "deep", "shallow")}
    scores = {name: [] for name in [*(variant_key(*v) for v in variants), *policies]}
    searches = []
    for seed, (wall, decay) in ((seed, v) for seed in range(args.seeds) for v in variants):
        with tempfile.TemporaryDirectory(prefix="bench_amc_") as out:
            started = time.perf_counter()
            result = amc.search(base, reward, target_macs=args.target, calib_data=calib,
                                episodes=args.episodes, warmup=args.warmup, seed=seed, out_dir=out, progress=False,
                                agent_config=amc.AgentConfig(sigma_decay=decay), fill_budget=wall == "fill")
            seconds = time.perf_counter() - started
        rows = result.history
        fresh = [r["seconds"] for r in rows if r["phase"] == "explore" and r["evaluated"]]
        repeat = [r["seconds"] for r in rows if r["phase"] == "explore" and not r["evaluated"]]
        searches.append({"seed": seed, "decay": decay, "wall": wall, "seconds": seconds, "policy": result.policy,
                         "plain": result.plain_eval_seconds,
                         "calibration": result.plain_calibration_seconds,
                         "warmup_median": float(np.median([r["seconds"] for r in rows if r["phase"] == "warmup"])),
                         "fresh_median": float(np.median(fresh)) if fresh else float("nan"),
                         "repeat_median": float(np.median(repeat)) if repeat else float("nan"),
                         "repeats": len(repeat) / max(len(fresh) + len(repeat), 1),
                         "mean": float(np.mean([r["seconds"] for r in rows])),
                         "best_episode": result.best_episode, "reward": result.best_reward})
        scores[variant_key(wall, decay)].append(evaluate(base, result.policy, dataset, reward, calib, lengths, seed,
                                                 args.finetune_lr))
        if (wall, decay) != variants[-1]:
            continue
        for name, policy in policies.items():
            scores[name].append(evaluate(base, policy, dataset, reward, calib, lengths, seed, args.finetune_lr))
        print(f"seed {seed}: " + ", ".join(f"{n} {s[-1]['before']:.4f}/" + "/".join(f"{s[-1]['after'][e]:.4f}" for e in lengths)
                                           for n, s in scores.items()),
              flush=True)

    command = ("python bench/bench_amc.py " + f"--episodes {args.episodes} --warmup {args.warmup} --seeds {args.seeds} "
               f"--train-epochs {args.train_epochs} --finetune-epochs {args.finetune_epochs} --target {args.target} "
               f"--walls {args.walls} --sigma-decays {args.sigma_decays} --copies {args.copies} "
               f"--reward-images {args.reward_images} --calib-images {args.calib_images}")
    wall_names = {"fill": "filling wall (`fill_budget=True`)", "paper": "the paper's wall (the default)"}
    labels = {variant_key(w, d): f"AMC, {wall_names[w]}" + (f", sigma decay {d:g}{' (the paper)' if d == 0.95 else ''}"
                                                    if len(decays) > 1 else "") for w, d in variants}
    labels.update({"uniform": "uniform keep ratio", "deep": "deep (prune deeper more)",
                   "shallow": "shallow (prune shallower more)"})
    reward_text = (f"the {len(reward[0])}-image validation split" if args.reward_images == "val" else
                   f"{len(reward[0])} fresh augmentations ({args.copies} per image, a seed the splits do not use) of "
                   f"the training images, as the authors' code draws its reward images from the training set the model "
                   f"was trained on")
    refit_text = (f"least-squares reconstruction from {args.calib_images} training images" if args.calib_images else
                  "no reconstruction (the kept weights as they are, in the search and in every policy below)")
    key_suffix, title_suffix = setting_variant(args)
    lines = [
        ("## AMC" if args.target == 0.5 else f"## AMC at {args.target:g} of the MACs") + title_suffix,
        "",
        f"Command: `{command}`. Model: `tfmc.models.digits_cnn` (MobileNetV2-like, residual Adds, depthwise) trained "
        f"{args.train_epochs} epochs on the digits training split (32x32"
        f"{f', with {args.copies} augmented copies of every image in every split' if args.copies else ''}), "
        f"{cost.full:,} MACs, "
        f"{len(groups)} prunable channel groups; test accuracy {original} (binomial standard error). Budget: {args.target:g} of "
        f"the MACs ({int(limit):,}). AMC: {args.warmup} warm-up + {args.episodes} episodes per search, the paper's "
        f"agent settings (exploration decay {args.sigma_decays}), reward = "
        f"accuracy on {reward_text}, {refit_text}, one search per seed and action wall (the paper's wall only stops a policy from "
        f"exceeding the budget; the filling wall, `fill_budget=True`, also keeps every policy spending it). "
        f"Every policy is applied by `tfmc.prune` {'with' if args.calib_images else 'without'} reconstruction and "
        f"scored on the {len(dataset.x_test)}-image test split before and after {' and after '.join(map(str, lengths))} epochs of "
        f"fine-tuning (Adam {args.finetune_lr:g}, cosine); mean +- sample std over {args.seeds} seeds.",
        "",
    ]
    fmt = lambda values: "{:.4f} +- {:.4f}".format(*mean_and_std(values))  # noqa: E731
    lines.append(markdown_table(
        ["policy", "MACs (of original)", "test acc. before fine-tune",
         *(f"test acc. after {e} epochs" for e in lengths), "reward-set acc."],
        [[labels[name], f"{np.mean([r['macs'] for r in runs]) / cost.full:.3f}", fmt([r["before"] for r in runs]),
          *(fmt([r["after"][e] for r in runs]) for e in lengths), fmt([r["val"] for r in runs])]
         for name, runs in scores.items()]))
    lines += ["", "Kept channels per group (AMC per seed, then the heuristics):", ""]
    lines.append(kept_channels_table(groups, [(f"{labels[variant_key(s['wall'], s['decay'])]}, seed {s['seed']} (best at episode "
                                           f"{s['best_episode']})", s["policy"])
                                          for s in searches] + [(labels[n], p) for n, p in policies.items()]))
    lines += ["", "Search cost. A plain evaluation is the unpruned model on the reward set through the search's traced "
              "forward function" + ("; scoring a new policy also runs the calibration images through the model once "
                                    "(the sequential least-squares refit, so the reward is that of the model "
                                    "`tfmc.prune` builds) and solves the refits" if args.calib_images else "")
              + ". Policies seen before are not evaluated again. Every episode also runs the agent, its DDPG "
              "updates and a checkpoint. Goal: learning episode / plain evaluation <= 1.5.", ""]
    lines.append(markdown_table(
        ["wall", "sigma decay", "seed", "search time (s)", "plain eval. (ms)", "calibration pass (ms)",
         "warm-up episode (ms)", "learning episode, new policy (ms)", "learning episode, repeat (ms)", "repeats",
         "mean episode (ms)", "new policy / plain eval.", "new policy / (plain eval. + calibration pass)",
         "mean episode / plain eval."],
        [[s["wall"], f"{s['decay']:g}", s["seed"], f"{s['seconds']:.1f}", f"{s['plain'] * 1e3:.1f}",
          f"{s['calibration'] * 1e3:.1f}", f"{s['warmup_median'] * 1e3:.1f}", f"{s['fresh_median'] * 1e3:.1f}",
          f"{s['repeat_median'] * 1e3:.1f}", f"{s['repeats']:.0%}", f"{s['mean'] * 1e3:.1f}",
          f"{s['fresh_median'] / s['plain']:.2f}", f"{s['fresh_median'] / (s['plain'] + s['calibration']):.2f}",
          f"{s['mean'] / s['plain']:.2f}"] for s in searches]))
    uniform_before = np.mean([r["before"] for r in scores["uniform"]])  # no fine-tuning: the same in every seed
    lines.append("")
    for variant in variants:
        runs = scores[variant_key(*variant)]
        amc_before, amc_error = mean_and_error([100 * r["before"] for r in runs])
        gap_before = amc_before - 100 * uniform_before
        clear = gap_before > 2 * amc_error and gap_before >= 0.5
        afters = []
        for e in lengths:  # AMC and uniform share each seed's fine-tuning seed: compare them seed by seed
            gaps = paired([a["after"][e] for a in runs], [u["after"][e] for u in scores["uniform"]], scale=100)
            afters.append(f"after {e} epochs {gaps.mean:+.2f} (standard error of the per-seed differences "
                          f"{gaps.standard_error:.2f}; AMC wins/ties/losses {gaps.record}): "
                          f"{'met' if gaps.mean >= -2 * gaps.standard_error else 'NOT met'}")
        lines.append(f"{labels[variant_key(*variant)]} minus uniform: {gap_before:+.2f} points before fine-tuning "
                     f"(standard error of AMC's mean over seeds {amc_error:.2f}). Goal \"beats uniform "
                     f"by a clear margin before fine-tuning\" (taken as at least 0.5 points and two standard errors): "
                     f"{'met' if clear else 'NOT met'}. Goal \"not worse after\" (the mean difference no lower than "
                     f"minus two standard errors): " + "; ".join(afters) + ".")
        lines.append("")
    lines.append(f"Episode cost goal (learning episode / plain evaluation <= 1.5): the mean episode costs "
                 f"{max(s['mean'] / s['plain'] for s in searches):.2f} plain evaluations at most, an episode with a "
                 f"new policy {max(s['fresh_median'] / s['plain'] for s in searches):.2f} (median) at most.")
    markdown = "\n".join(lines)
    print(markdown)
    if not args.no_write:
        write_section(("amc" if args.target == 0.5 else f"amc_{args.target:g}") + key_suffix, markdown)


if __name__ == "__main__":
    main()
