"""The search path of `tfmc prune` (its options are in tfmc/commands/prune.py): run AMC, apply, fine-tune, save."""
import os

_TARGETS = ("target_macs", "target_params", "target_latency_ms")


def _latency_table(path):
    from tfmc.cli import UsageError

    if path is None:
        return None
    from tflite_bench.lut import LatencyTable

    try:
        return LatencyTable.from_json(path)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"--latency-table {path}: not a readable latency table ({exc})") from None


def _run_outputs():
    """What an AMC search with `tfmc prune` writes in --out, and how each of tfmc's own entries is recognised."""
    from tfmc import outputs

    def holds(name):
        return lambda path: os.path.isfile(os.path.join(path, name))

    def events_only(path):
        return os.path.isdir(path) and all(e.startswith("events.out.tfevents") for e in os.listdir(path))

    return {
        "checkpoint.json": outputs.is_json(lambda v: isinstance(v, dict) and {"latest", "fingerprint"} <= set(v)),
        "ckpt-*": holds("state.json"),
        "history.jsonl": outputs.starts_with('{"episode": '),
        "history.csv": outputs.starts_with("episode,phase,"),
        "tensorboard": events_only,
        "best_policy.json": outputs.is_policy("prune"),
        "keep_ratios.png": outputs.is_matplotlib_png,
        "rewards.png": outputs.is_matplotlib_png,
        "diagnostics.png": outputs.is_matplotlib_png,
        "actor_keep.png": outputs.is_matplotlib_png,
        "actor_rewards.png": outputs.is_matplotlib_png,
        "pruned.keras": outputs.is_model_file,
        "summary.md": outputs.starts_with("AMC: "),
    }


def _summary(rows):
    base = rows[0]
    lines = ["| model | test accuracy | MACs | of original | params | of original |", "|---|---:|---:|---:|---:|---:|"]
    for label, accuracy, macs, params in rows:
        lines.append(f"| {label} | {accuracy:.4f} | {macs:,} | {macs / base[2]:.3f} | {params:,} | {params / base[3]:.3f} |")
    return "\n".join(lines)


def reward_and_rescore_sets(x, y, rescore_top, seed=0):
    """The validation split as (reward set, re-scoring set): two halves of a seeded shuffle, or all and None.

    Args:
      x, y: the validation split.
      rescore_top: 0 keeps the whole split as the reward set (no re-scoring).
      seed: seeds the shuffle.
    """
    if not rescore_top:
        return (x, y), None
    import numpy as np

    order = np.random.default_rng(seed).permutation(len(y))
    half = len(y) // 2
    return (x[order[:half]], y[order[:half]]), (x[order[half:]], y[order[half:]])


def run_search(args):
    """Search a policy with AMC under the budget, apply it with reconstruction, optionally fine-tune, save."""
    from tfmc import amc, cost, data, io, outputs, train
    from tfmc.cli import UsageError
    from tfmc.prune import prune

    if args.ratios is not None:
        raise UsageError("give either --ratios or a budget (--target-macs / --target-params / --target-latency-ms), not both")
    if sum(getattr(args, name) is not None for name in _TARGETS) > 1:
        raise UsageError("give one budget: --target-macs, --target-params or --target-latency-ms")
    if not args.data:
        raise UsageError("an AMC search needs --data: its validation split is the reward set")
    if os.path.splitext(args.out)[1] in (".keras", ".h5"):
        raise UsageError(f"--out {args.out}: an AMC search writes a folder (checkpoints, history, plots, pruned.keras)")
    if not 0.0 < args.sigma_decay <= 1.0:
        raise UsageError(f"--sigma-decay must be in (0, 1], got {args.sigma_decay}")
    if args.finetune_epochs < 0:
        raise UsageError(f"--finetune-epochs must be >= 0, got {args.finetune_epochs}")
    if args.rescore_top < 0:
        raise UsageError(f"--rescore-top must be >= 0, got {args.rescore_top}")
    amc.searchers.searcher_class(args.search)  # an unknown name fails before anything loads
    agent_config = amc.AgentConfig(sigma_decay=args.sigma_decay, warmup_actions=args.warmup_actions,
                                   reward_scale=args.reward_scale, targets=args.critic_targets,
                                   sigma_min=args.sigma_min)  # so do bad agent settings
    outputs.claim_folder(args.out, "tfmc prune (AMC search)", _run_outputs(), overwrite=args.overwrite)
    table = _latency_table(args.latency_table)
    model = io.load_model(args.model, trust_code=args.trust_model_code)
    dataset = data.load_for_model(args.data, model, data_dir=args.data_dir, classes=True)
    calib = dataset.x_train[: args.calib_images]
    reward_set, rescore_set = reward_and_rescore_sets(dataset.x_val, dataset.y_val, args.rescore_top)
    result = amc.search(
        model, reward_set, target_macs=args.target_macs, target_params=args.target_params,
        target_latency_ms=args.target_latency_ms, latency_table=table, calib_data=calib, reward=args.reward,
        episodes=args.episodes, warmup=args.warmup, lbound=args.lbound, round_to=args.round_to, out_dir=args.out,
        resume=args.resume, seed=args.seed, progress=not args.no_progress,
        agent_config=agent_config,
        fill_budget=args.fill_budget, method=args.search, rescore_data=rescore_set,
        rescore_top=max(args.rescore_top, 1), actor_every=args.actor_every, strategy=args.strategy,
        importance=args.importance,
    )
    pruned = prune(model, result.policy, calib_data=calib)  # with the criterion the policy records
    x_test, y_test = dataset.x_test, dataset.y_test
    rows = [("original", train.accuracy(model, x_test, y_test), cost.count_macs(model), cost.count_params(model)),
            ("AMC policy, reconstructed", train.accuracy(pruned, x_test, y_test), cost.count_macs(pruned),
             cost.count_params(pruned))]
    if args.finetune_epochs:
        pruned, _ = train.fit(pruned, dataset.x_train, dataset.y_train, epochs=args.finetune_epochs,
                              learning_rate=args.finetune_lr, validation=(dataset.x_val, dataset.y_val), seed=args.seed,
                              strategy=args.strategy, progress=None if args.no_progress else "fine-tuning")
        rows.append((f"AMC policy, fine-tuned {args.finetune_epochs} epochs", train.accuracy(pruned, x_test, y_test),
                     cost.count_macs(pruned), cost.count_params(pruned)))
    io.save_model(pruned, os.path.join(args.out, "pruned.keras"))
    summary = _summary(rows)
    budget = result.budget
    chosen = (f"reward {result.best_reward:.4f}, reward-set accuracy {result.best_accuracy:.4f}"
              + (f"; second split: reward {result.policy.metadata['rescore_value']:.4f}, accuracy "
                 f"{result.policy.metadata['rescore_accuracy']:.4f}, best of {len(result.rescored)} re-scored"
                 if result.rescored else ""))
    header = (f"AMC: {result.episodes_done} episodes ({result.method} search), chosen: episode {result.best_episode} ({chosen}); "
              f"budget {budget.metric} {budget.target:g}, policy costs {budget.describe(result.policy.metadata['cost'])}")
    io.write_text(os.path.join(args.out, "summary.md"), header + "\n\n" + summary + "\n")
    print(header)
    print(summary)
    print(f"saved {os.path.join(args.out, 'pruned.keras')}")
    return 0
