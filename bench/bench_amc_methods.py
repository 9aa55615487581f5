"""AMC's searchers at equal evaluations: DDPG (paper settings and variants) vs random search, greedy and uniform.

Run: .venv/bin/python bench/bench_amc_methods.py [--model mobilenet_v2_small] [--target 0.3] [--seeds 3]
                                                 [--episodes 100] [--warmup 50]
                                                 [--methods ddpg,ddpg_spread,random,greedy]
                                                 [--reward-images 1000] [--rescore-images 1000]
                                                 [--calib-images 256] [--finetune-epochs 1]
                                                 [--finetune-images 10000] [--results FILE]
                                                 [--stop-at HH:MM] [--no-write]

The model is a cached Fashion-MNIST reference model (bench/reference.py;
``mobilenet_v2_small`` by default) or ``digits_cnn`` trained here on the
digits (with 4 augmented copies per split, as bench_amc.py does). The reward
set is the first ``--reward-images`` of a seeded shuffle of the validation
split, the re-scoring set (the winner's curse: the top 5 distinct policies
are scored again and the best there is chosen) the next
``--rescore-images``; the test split is only read for the figures. Every
search of a seed gets the same number of episodes (warm-up + learning,
``--warmup`` + ``--episodes``): DDPG spends them as the paper does
(``ddpg``; ``ddpg_spread``: rewards divided by their running spread,
``AgentConfig(reward_scale="spread")``), random search draws every keep
ratio uniformly through the same action wall, greedy probes each group
alone and allocates the budget by the measured losses (it may use fewer).
Uniform is one keep ratio for every group, the largest that fits the
budget. Every policy is applied by ``tfmc.prune`` with least-squares
reconstruction from ``--calib-images`` training images and scored on the
test split before and after a short fine-tune (``--finetune-epochs`` on the
first ``--finetune-images`` training images, Adam, cosine); comparisons
are paired over seeds (the fine-tuning seed is the search seed).

Every finished (method, seed) and uniform seed is appended to ``--results``
(one JSON line, with the settings it depends on), and a rerun of the same
command skips what is there, so a crash loses at most one search.
``--stop-at`` (UTC) starts no seed after that time and writes the section
from the seeds that are complete.

The BENCHMARKS.md section is keyed by the model and the target, and by the
reward set's size and the episode counts when they are not the first runs'
(500 images, 20 + 60 episodes), so such a run gets a section of its own.
"""
import argparse
import dataclasses
import datetime
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

import tfmc  # noqa: E402
from tfmc import amc, data, models, train  # noqa: E402
from tfmc.amc.budget import CostModel  # noqa: E402
from tfmc.graph import ChannelGraph  # noqa: E402
from bench_amc import augmented, heuristic_policy, kept_channels_table  # noqa: E402
from benchmarks_md import write_section  # noqa: E402
from harness import ResultsFile, markdown_table, mean_and_error, paired, score  # noqa: E402
from tfmc.policy import PrunePolicy  # noqa: E402

# name -> (searcher, AgentConfig changes)
METHODS = {
    "ddpg": ("ddpg", {"reward_scale": "none", "targets": "bootstrap", "updates": 1}),
    "ddpg_spread": ("ddpg", {"reward_scale": "spread"}),
    "ddpg_updates4": ("ddpg", {"updates": 4}),
    "ddpg_spread_reward": ("ddpg", {"reward_scale": "spread", "targets": "reward"}),
    "ddpg_floor": ("ddpg", {"reward_scale": "spread", "targets": "reward", "sigma_min": 0.1}),
    "ddpg_final": ("ddpg", {"reward_scale": "spread", "targets": "final"}),
    "random": ("random", {}),
    "greedy": ("greedy", {}),
}
_FIRST_REWARD_IMAGES = 500  # the reward set of the first sections, which keep their keys
_FIRST_EPISODES = (20, 60)  # their warm-up and learning episodes
LABELS = {
    "ddpg": "DDPG (the paper's settings)",
    "ddpg_spread": "DDPG, rewards scaled by their spread",
    "ddpg_updates4": "DDPG, 4 updates per transition",
    "ddpg_spread_reward": "DDPG, rewards scaled by their spread, critic targets the reward",
    "ddpg_floor": "DDPG, spread-scaled rewards, reward targets, exploration sigma at least 0.1",
    "ddpg_final": "DDPG, spread-scaled rewards, the reward on the last step bootstrapped back",
    "random": "random search",
    "greedy": "greedy sensitivity allocation",
    "uniform": "uniform keep ratio",
}


def load(model_name, train_epochs):
    """(model, dataset, description) for the named model."""
    if model_name == "digits_cnn":
        dataset = data.load("digits", image_size=32)
        splits = {}
        for index, part in enumerate(("train", "val", "test")):
            splits[f"x_{part}"], splits[f"y_{part}"] = augmented(getattr(dataset, f"x_{part}"),
                                                                 getattr(dataset, f"y_{part}"), 4, index)
        dataset = dataclasses.replace(dataset, **splits)
        model, _ = train.fit(models.digits_cnn(), dataset.x_train, dataset.y_train, epochs=train_epochs, seed=0)
        return model, dataset, (f"`tfmc.models.digits_cnn` trained {train_epochs} epochs on the digits (32x32, 4 "
                                "augmented copies of every image in every split)")
    from reference import reference_model

    model, info = reference_model(model_name, verbose=0)
    return model, data.load(info["recipe"]["data"]), (f"the cached Fashion-MNIST reference model `{model_name}` "
                                                      f"(bench/reference.py; test accuracy {info['test_accuracy']:.4f})")


def test_scores(model, policy, dataset, calib, finetune, seed, lr):
    """Test accuracy of the pruned model before and after the fine-tune, and its MACs."""
    pruned = tfmc.prune(model, policy, calib_data=calib)
    before = score(pruned, dataset.x_test, dataset.y_test).accuracy
    after = before
    if finetune[2]:
        tuned, _ = train.fit(pruned, finetune[0], finetune[1], epochs=finetune[2], learning_rate=lr, seed=seed)
        after = score(tuned, dataset.x_test, dataset.y_test).accuracy
    return {"before": before, "after": after, "macs": tfmc.count_macs(pruned)}


def search_facts(result):
    """What a search did: evaluations, where the chosen policy came from, episode cost, the actor's rewards."""
    rows = result.history
    learning = [r for r in rows if r["phase"] in ("explore", "actor", "random") and r["evaluated"]]
    ratios = [r["seconds"] / r["forward_seconds"] for r in learning if r.get("forward_seconds")]
    learning = [r["seconds"] for r in learning]
    actor = [r["reward"] for r in rows if r["phase"] == "actor"]
    warm = [r["reward"] for r in rows if r["phase"] == "warmup"]
    chosen = next(r for r in rows if r["episode"] == result.best_episode)
    meta = result.policy.metadata
    return {"episodes": len(rows), "evaluations": result.evaluations, "best_episode": result.best_episode,
            "best_phase": chosen["phase"], "reward_acc": result.best_accuracy,
            "top_reward": max(r["reward"] for r in rows if r.get("eligible", True)),
            "rescore_acc": meta.get("rescore_accuracy", float("nan")), "plain": result.plain_eval_seconds,
            "learning_median": float(np.median(learning)) if learning else float("nan"),
            "per_forward": float(np.median(ratios)) if ratios else float("nan"),
            "actor_first": actor[0] if actor else float("nan"), "actor_last": actor[-1] if actor else float("nan"),
            "warmup_mean": float(np.mean(warm)) if warm else float("nan")}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mobilenet_v2_small")
    parser.add_argument("--train-epochs", type=int, default=20, help="digits_cnn only")
    parser.add_argument("--target", type=float, default=0.3)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--methods", default="ddpg,ddpg_spread,random,greedy")
    parser.add_argument("--reward-images", type=int, default=1000)
    parser.add_argument("--rescore-images", type=int, default=1000)
    parser.add_argument("--calib-images", type=int, default=256)
    parser.add_argument("--finetune-epochs", type=int, default=1)
    parser.add_argument("--finetune-images", type=int, default=10000)
    parser.add_argument("--finetune-lr", type=float, default=5e-4)
    parser.add_argument("--actor-every", type=int, default=10)
    parser.add_argument("--results", default=None,
                        help="JSON lines of finished searches to resume from (default bench/.cache/amc_methods/"
                             "MODEL_TARGET.jsonl)")
    parser.add_argument("--stop-at", default=None, help="HH:MM UTC: start no seed after it")
    parser.add_argument("--no-write", action="store_true", help="print the section instead of writing BENCHMARKS.md")
    args = parser.parse_args()
    methods = args.methods.split(",")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        parser.error(f"unknown --methods {unknown}; expected some of {', '.join(METHODS)}")

    model, dataset, description = load(args.model, args.train_epochs)
    order = np.random.default_rng(0).permutation(len(dataset.y_val))
    reward_index = order[:args.reward_images]
    rescore_index = order[args.reward_images:args.reward_images + args.rescore_images]
    reward = (dataset.x_val[reward_index], dataset.y_val[reward_index])
    rescore = (dataset.x_val[rescore_index], dataset.y_val[rescore_index])
    calib = dataset.x_train[:args.calib_images]
    finetune = (dataset.x_train[:args.finetune_images], dataset.y_train[:args.finetune_images], args.finetune_epochs)
    analysis = ChannelGraph(model)
    groups = [g for g in analysis.groups if g.prunable]
    cost = CostModel(analysis, "macs")
    limit = args.target * cost.full
    uniform, _ = heuristic_policy(cost, groups, limit, "uniform")
    original = score(model, dataset.x_test, dataset.y_test)

    settings = {k: v for k, v in vars(args).items() if k not in ("seeds", "methods", "results", "stop_at", "no_write")}
    if args.model != "digits_cnn":
        settings.pop("train_epochs")
    results = ResultsFile(args.results or os.path.join(os.path.dirname(os.path.abspath(__file__)), ".cache",
                                                       "amc_methods", f"{args.model}_{args.target:g}.jsonl"), settings)
    scores = {name: [] for name in [*methods, "uniform"]}
    facts = {name: [] for name in methods}
    policies = []
    seeds = 0
    for seed in range(args.seeds):
        if args.stop_at and datetime.datetime.now(datetime.timezone.utc).strftime("%H:%M") >= args.stop_at:
            print(f"--stop-at {args.stop_at}: no seed after {seed - 1}", flush=True)
            break
        for name in methods:
            if (name, seed) not in results.done:
                method, changes = METHODS[name]
                started = time.perf_counter()
                result = amc.search(model, reward, target_macs=args.target, calib_data=calib, episodes=args.episodes,
                                    warmup=args.warmup, seed=seed, progress=False, method=method,
                                    agent_config=amc.AgentConfig(**changes), rescore_data=rescore,
                                    actor_every=args.actor_every)
                fact = dict(search_facts(result), seconds=time.perf_counter() - started)
                tested = test_scores(model, result.policy, dataset, calib, finetune, seed, args.finetune_lr)
                results.add((name, seed), {"facts": fact, "scores": tested,
                                           "counts": result.policy.metadata["kept_channels"]})
            record = results.done[(name, seed)]
            facts[name].append(record["facts"])
            scores[name].append(record["scores"])
            policies.append((f"{LABELS[name]}, seed {seed}",
                             PrunePolicy({g.name: record["counts"][g.name] / g.channels for g in groups})))
            print(f"seed {seed} {name}: test {scores[name][-1]['before']:.4f} -> {scores[name][-1]['after']:.4f}, "
                  f"{record['facts']}", flush=True)
        if ("uniform", seed) not in results.done:
            results.add(("uniform", seed), test_scores(model, uniform, dataset, calib, finetune, seed,
                                                        args.finetune_lr))
        scores["uniform"].append(results.done[("uniform", seed)])
        print(f"seed {seed} uniform: test {scores['uniform'][-1]['before']:.4f} -> {scores['uniform'][-1]['after']:.4f}",
              flush=True)
        seeds += 1
    if not seeds:
        raise SystemExit("no seed finished before --stop-at")

    command = (f"python bench/bench_amc_methods.py --model {args.model} --target {args.target:g} --seeds {args.seeds} "
               f"--episodes {args.episodes} --warmup {args.warmup} --methods {args.methods} "
               f"--reward-images {args.reward_images} --rescore-images {args.rescore_images} "
               f"--calib-images {args.calib_images} --finetune-epochs {args.finetune_epochs} "
               f"--finetune-images {args.finetune_images} --finetune-lr {args.finetune_lr:g} "
               f"--actor-every {args.actor_every}" + (f" --train-epochs {args.train_epochs}"
                                                       if args.model == "digits_cnn" else ""))
    lines = [
        f"## AMC searchers at equal evaluations: {args.model} at {args.target:g} of the MACs, "
        f"{args.reward_images} reward images, {args.warmup} + {args.episodes} episodes",
        "",
        f"Command: `{command}`. Model: {description}; {cost.full:,} MACs, {len(groups)} prunable channel groups, "
        f"test accuracy {original} (binomial standard error). Budget: {args.target:g} of the MACs ({int(limit):,}). "
        f"Each search: {args.warmup} + {args.episodes} episodes (DDPG: warm-up + learning, every "
        f"{args.actor_every}th learning episode the actor's noise-free policy; random search the same number of "
        f"random policies; greedy as many probes as fit), reward = accuracy on {len(reward[1])} validation images, "
        f"the top 5 distinct policies re-scored on {len(rescore[1])} other validation images and the best there "
        f"chosen, least-squares reconstruction from {args.calib_images} training images. Test split "
        f"({len(dataset.y_test)} images) before and after {args.finetune_epochs} epoch(s) of fine-tuning on "
        f"{args.finetune_images} training images (Adam {args.finetune_lr:g}, cosine); mean +- standard error over "
        f"{seeds} seeds" + (f" (--stop-at {args.stop_at} ended the run after {seeds} of the {args.seeds} seeds)"
                             if seeds < args.seeds else "") + ".",
        "",
    ]
    fmt = lambda values: "{:.2f} +- {:.2f}".format(*mean_and_error([100 * v for v in values]))  # noqa: E731
    rows = []
    for name in [*methods, "uniform"]:
        runs, fs = scores[name], facts.get(name)
        rows.append([LABELS[name], f"{np.mean([r['macs'] for r in runs]) / cost.full:.3f}",
                     fmt([r["before"] for r in runs]), fmt([r["after"] for r in runs]),
                     fmt([f["top_reward"] for f in fs]) if fs else "",
                     fmt([f["rescore_acc"] for f in fs]) if fs else "",
                     f"{np.mean([f['evaluations'] for f in fs]):.0f}" if fs else "1",
                     ", ".join(f"{f['best_episode']} ({f['best_phase']})" for f in fs) if fs else ""])
    lines.append(markdown_table(["policy", "MACs (of original)", "test acc. before fine-tune (%)",
                                 f"test acc. after {args.finetune_epochs} epoch(s) (%)",
                                 "best reward-set acc. (%)", "chosen policy on the re-scoring set (%)",
                                 "policies evaluated", "chosen episode per seed (phase)"], rows))
    lines += ["", "Paired over seeds (points of test accuracy; mean difference, its standard error, wins/ties/losses):",
              ""]
    pairs = []
    for i, a in enumerate(methods):
        for b in [*methods[i + 1:], "uniform"]:  # every pair of searchers once, and each against uniform
            for when in ("before", "after"):
                p = paired([r[when] for r in scores[a]], [r[when] for r in scores[b]], scale=100)
                pairs.append([f"{LABELS[a]} minus {LABELS[b]}", when, f"{p.mean:+.2f}", f"{p.standard_error:.2f}",
                              p.record])
    lines.append(markdown_table(["comparison", "fine-tune", "difference", "standard error", "wins/ties/losses"], pairs))
    ddpg_like = [m for m in methods if m.startswith("ddpg")]
    if ddpg_like:
        lines += ["", "Does the agent learn? Reward-set accuracy of the actor's noise-free policy at its first and last "
                  "scoring, against the mean of the random warm-up episodes (mean over seeds):", ""]
        lines.append(markdown_table(
            ["agent", "warm-up mean (%)", "actor, first (%)", "actor, last (%)"],
            [[LABELS[m], f"{100 * np.mean([f['warmup_mean'] for f in facts[m]]):.2f}",
              f"{100 * np.mean([f['actor_first'] for f in facts[m]]):.2f}",
              f"{100 * np.mean([f['actor_last'] for f in facts[m]]):.2f}"] for m in ddpg_like]))
    lines += ["", "Search cost. A plain evaluation is the unpruned model on the reward set through the search's "
              "forward function, timed once when the search starts; a learning episode (median over the episodes "
              "that scored a new policy; random search: its random episodes) also runs the calibration images "
              "through the model for the least-squares refit, the agent, its DDPG updates and a checkpoint-free "
              "bookkeeping (no run folder here). On a loaded machine one timing of the plain evaluation is noisy, so "
              "the last column sets each episode against its own reward-set forward pass (the masked model has the "
              "unpruned model's shapes, so that pass costs what a plain evaluation costs, at the same moment). Goal: "
              "at most 1.2 plain evaluations.", ""]
    lines.append(markdown_table(
        ["searcher", "search time (s), mean", "plain eval. (ms)", "learning episode (ms)", "episode / plain eval.",
         "episode / its own forward pass"],
        [[LABELS[m], f"{np.mean([f['seconds'] for f in facts[m]]):.0f}",
          f"{1e3 * np.mean([f['plain'] for f in facts[m]]):.0f}",
          f"{1e3 * np.nanmean([f['learning_median'] for f in facts[m]]):.0f}",
          f"{np.nanmean([f['learning_median'] / f['plain'] for f in facts[m]]):.2f}",
          f"{np.nanmean([f.get('per_forward', float('nan')) for f in facts[m]]):.2f}"]
         for m in methods if m != "greedy"]))
    lines += ["", "Kept channels per group of each chosen policy:", ""]
    lines.append(kept_channels_table(groups, policies + [(LABELS["uniform"], uniform)]))
    goals = []
    agent = next((m for m in methods if m.startswith("ddpg")), None)
    if agent:
        name = LABELS[agent]
        if "random" in methods:
            p = paired([r["before"] for r in scores[agent]], [r["before"] for r in scores["random"]], scale=100)
            ok = p.mean >= 0.3 and p.mean > 2 * p.standard_error
            goals.append(f"{name} ahead of random search by at least 0.3 points and two standard errors (before "
                         f"fine-tuning): {p.mean:+.2f} +- {p.standard_error:.2f}: {'met' if ok else 'NOT met'}.")
        p = paired([r["before"] for r in scores[agent]], [r["before"] for r in scores["uniform"]], scale=100)
        goals.append(f"{name} ahead of uniform by at least 1 point before fine-tuning: {p.mean:+.2f} +- "
                     f"{p.standard_error:.2f}: {'met' if p.mean >= 1.0 else 'NOT met'}.")
        p = paired([r["after"] for r in scores[agent]], [r["after"] for r in scores["uniform"]], scale=100)
        goals.append(f"{name} not behind uniform after fine-tuning (mean difference no lower than minus two standard "
                     f"errors): {p.mean:+.2f} +- {p.standard_error:.2f}: "
                     f"{'met' if p.mean >= -2 * p.standard_error else 'NOT met'}.")
        plain = np.nanmean([f["learning_median"] / f["plain"] for f in facts[agent]])
        own = np.nanmean([f.get("per_forward", float("nan")) for f in facts[agent]])
        goals.append(f"A learning episode costs at most 1.2 plain evaluations: {plain:.2f} against the plain "
                     f"evaluation timed at the start, {own:.2f} against its own forward pass: "
                     f"{'met' if own <= 1.2 else 'NOT met'}.")
    lines += ["", "Goals (issue 17, at this reduced size): " + " ".join(goals)]
    markdown = "\n".join(lines)
    print(markdown, flush=True)
    if not args.no_write:
        write_section(f"amc_methods_{args.model}_{args.target:g}" + (
            f"_reward{args.reward_images}" if args.reward_images != _FIRST_REWARD_IMAGES else "") + (
            f"_episodes{args.warmup}+{args.episodes}" if (args.warmup, args.episodes) != _FIRST_EPISODES else ""),
            markdown)


if __name__ == "__main__":
    main()
