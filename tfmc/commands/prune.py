"""`tfmc prune MODEL`: remove channels by given keep ratios, or search them with AMC; at once or during training."""
import os

_TARGETS = ("target_macs", "target_params", "target_latency_ms")
_SUMMARY_HEADER = "| | original | pruned | ratio |"


def _folder_outputs():
    from tfmc import outputs

    return {"pruned.keras": outputs.is_model_file, "policy.json": outputs.is_policy("prune"),
            "summary.md": outputs.starts_with(_SUMMARY_HEADER)}


def register(sub):
    from tfmc import data
    from tfmc.cli import add_model_argument, add_overwrite_argument, add_strategy_argument

    p = sub.add_parser(
        "prune",
        help="remove channels: by given keep ratios (--ratios) or by an AMC search under a budget",
        description=(
            "With --ratios FLOAT|FILE the given keep ratios are applied. --out is a .keras/.h5 file, "
            "or a folder that receives pruned.keras, policy.json and summary.md. With a budget "
            "(--target-macs / --target-params / --target-latency-ms) an AMC search picks the ratios; --out is then "
            "a folder that also receives best_policy.json, history.csv, tensorboard/, keep_ratios.png, rewards.png "
            "and the search checkpoint (--resume continues it). With --gradual-epochs N the channels go a few at a "
            "time during N epochs of training on --data (after the search, with the policy it found), and the "
            "stripped model is written."
        ),
    )
    add_model_argument(p)
    p.add_argument("--ratios", help="keep ratio for every prunable group (e.g. 0.5) or a PrunePolicy JSON file")
    data.add_data_arguments(p, "calibration data for least-squares reconstruction (an AMC search: its reward set)")
    p.add_argument("--calib-images", type=int, default=512, help="calibration images used for reconstruction (default 512)")
    p.add_argument("--round-to", type=int, default=8, help="kept channel counts are multiples of this (default 8)")
    p.add_argument("--importance", choices=_criteria(),
                   help="channel importance criterion (default: the one a --ratios policy file records, else l1; "
                        "taylor reads --data); an AMC search ranks channels by it and records it in its policy")
    p.add_argument("--out", required=True, help="output .keras/.h5 file or folder")
    p.add_argument("--gradual-epochs", type=int,
                   help="prune during this many epochs of training on --data (Adam at --finetune-lr, cosine), "
                        "then strip the masked channels; instead of --finetune-epochs")
    add_overwrite_argument(p)
    add_search_arguments(p)
    add_strategy_argument(p)
    p.set_defaults(run=run)
    return p


def _criteria():
    from tfmc.prune.importance import CRITERIA

    return sorted(CRITERIA)


def add_search_arguments(parser):
    """Add the AMC search options (tfmc.amc.cli.run_search reads them)."""
    group = parser.add_argument_group("AMC search (instead of --ratios; --data and an --out folder required)")
    group.add_argument("--target-macs", type=float, help="keep at most this fraction of the MACs, in (0, 1)")
    group.add_argument("--target-params", type=float, help="keep at most this fraction of the parameters, in (0, 1)")
    group.add_argument("--target-latency-ms", type=float, help="latency budget in ms, summed over --latency-table")
    group.add_argument("--latency-table", help="per-layer latency table JSON (from tfmc latency-table) for --target-latency-ms")
    group.add_argument("--episodes", type=int, default=300,
                       help="learning episodes after the warm-up (default 300); greedy and random use warm-up + "
                            "episodes in all (greedy may use fewer)")
    group.add_argument("--warmup", type=int, default=100, help="ddpg: warm-up episodes of random actions (default 100)")
    group.add_argument("--reward", default="acc", choices=["acc", "acc_flops", "acc_params"],
                       help="acc: accuracy; acc_flops / acc_params: -error * log(MACs / params) (default acc)")
    group.add_argument("--lbound", type=float, default=0.2, help="smallest keep ratio of a group (default 0.2)")
    group.add_argument("--sigma-decay", type=float, default=0.95,
                       help="exploration noise decay per learning episode (default 0.95, the paper's)")
    group.add_argument("--warmup-actions", choices=["uniform", "noise"], default="uniform",
                       help="warm-up actions: uniform in [lbound, 1] (the authors' code, default) or the paper's "
                            "sigma-0.5 noise around the untrained actor")
    group.add_argument("--fill-budget", action="store_true",
                       help="clamp keep ratios from below too, so every policy spends the whole budget "
                            "(for --reward acc; default: the paper's wall alone)")
    group.add_argument("--search", default="random", metavar="NAME",
                       help="how policies are proposed: random (uniform random keep ratios through the wall; "
                            "default: level with ddpg and never far behind the best at equal evaluations, "
                            "docs/amc.md), ddpg (the AMC paper's agent) or greedy (per-group sensitivity, then an "
                            "allocation)")
    group.add_argument("--rescore-top", type=int, default=5,
                       help="re-score this many best distinct policies on the second half of the validation split "
                            "and choose the best there (the first half is the reward set); 0: no re-scoring, the "
                            "whole split is the reward set (default 5)")
    group.add_argument("--actor-every", type=int, default=10,
                       help="ddpg: score the actor's noise-free policy every this many learning episodes (default 10)")
    group.add_argument("--reward-scale", choices=["none", "spread"], default="spread",
                       help="ddpg: divide the centred rewards by their spread (default) or not (none, the paper)")
    group.add_argument("--critic-targets", choices=["reward", "bootstrap", "final"], default="reward",
                       help="ddpg: the critic estimates each transition's episode reward (reward, default), "
                            "bootstraps from the next step with discount 1 (bootstrap, the paper), or bootstraps "
                            "a reward given on the last step only (final)")
    group.add_argument("--sigma-min", type=float, default=0.0,
                       help="ddpg: the exploration sigma decays no lower than this (default 0, the paper)")
    group.add_argument("--finetune-epochs", type=int, default=0, help="fine-tune the pruned model this many epochs")
    group.add_argument("--finetune-lr", type=float, default=1e-3, help="fine-tuning learning rate, Adam (default 1e-3)")
    group.add_argument("--resume", action="store_true", help="continue the search checkpointed in --out")
    group.add_argument("--seed", type=int, default=0, help="the same seed gives the same policy (default 0)")
    group.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def _parse_ratios(text):
    from tfmc.cli import UsageError
    from tfmc.policy import PrunePolicy

    if os.path.exists(text):
        try:
            return PrunePolicy.from_json(text)
        except (OSError, ValueError, KeyError) as exc:
            raise UsageError(f"--ratios {text}: not a valid PrunePolicy JSON ({exc})") from None
    try:
        return float(text)
    except ValueError:
        raise UsageError(f"--ratios {text!r} is neither a number in (0, 1] nor an existing policy file") from None


def _output_paths(out):
    if os.path.splitext(out)[1] in (".keras", ".h5"):
        return out, None
    return os.path.join(out, "pruned.keras"), out


def run(args):
    from tfmc import data, io
    from tfmc.cli import UsageError, check_numbers
    from tfmc.prune import prune

    check_numbers(args, calib_images="count", seed="count0", finetune_lr="positive", gradual_epochs="count")
    if args.gradual_epochs is not None:
        return _run_gradual(args)
    if any(getattr(args, name) is not None for name in _TARGETS):
        from tfmc.amc.cli import run_search

        return run_search(args)
    if args.ratios is None:
        raise UsageError("give --ratios FLOAT|FILE (keep ratios to apply) or a budget for an AMC search (--target-macs F)")
    ratios = _parse_ratios(args.ratios)
    model_path, folder = _claim_outputs(args)
    model = io.load_model(args.model, trust_code=args.trust_model_code)
    calib = None
    if args.data:
        dataset = data.load_for_model(args.data, model, data_dir=args.data_dir)
        calib = dataset.x_train[: args.calib_images]
    pruned, details = prune(model, ratios, calib_data=calib, round_to=args.round_to, importance=args.importance,
                            return_details=True)
    return _write_outputs(args, model, pruned, ratios, details["kept_channels"], model_path, folder,
                          importance=details["importance"])


def _claim_outputs(args):
    from tfmc import outputs

    model_path, folder = _output_paths(args.out)
    if folder:
        outputs.claim_folder(folder, "tfmc prune", _folder_outputs(), overwrite=args.overwrite)
    else:
        outputs.claim_file(model_path, "model", outputs.is_model_file, overwrite=args.overwrite)
    return model_path, folder


def _summary(model, pruned, accuracy_rows=()):
    from tfmc import cost

    before, after = cost.count_macs(model), cost.count_macs(pruned)
    params_before, params_after = cost.count_params(model), cost.count_params(pruned)
    return "\n".join([
        _SUMMARY_HEADER,
        "|---|---:|---:|---:|",
        f"| MACs | {before:,} | {after:,} | {after / before:.3f} |",
        f"| params | {params_before:,} | {params_after:,} | {params_after / params_before:.3f} |",
        *(f"| {label} | {a:.4f} | {b:.4f} | |" for label, a, b in accuracy_rows),
    ])


def _write_outputs(args, model, pruned, ratios, kept_channels, model_path, folder, accuracy_rows=(), importance=None):
    from tfmc import cost, io, outputs
    from tfmc.policy import PrunePolicy

    summary = _summary(model, pruned, accuracy_rows)
    after, params_after = cost.count_macs(pruned), cost.count_params(pruned)
    if folder:
        policy = ratios if isinstance(ratios, PrunePolicy) else PrunePolicy(
            {g: float(ratios) for g in kept_channels}, round_to=args.round_to
        )
        policy.metadata.update({"kept_channels": kept_channels, "macs": after, "params": params_after})
        if importance is not None:
            policy.metadata["importance"] = importance
        with outputs.staged(folder) as stage:
            io.save_model(pruned, os.path.join(stage, "pruned.keras"))
            policy.to_json(os.path.join(stage, "policy.json"))
            io.write_text(os.path.join(stage, "summary.md"), summary + "\n")
    else:
        io.save_model(pruned, model_path)
    print(summary)
    print(f"saved {model_path}")
    return 0


def _run_gradual(args):
    """--gradual-epochs: prune during training on --data (with the policy an AMC search finds, under a budget)."""
    from tfmc import data, io, train
    from tfmc.cli import UsageError
    from tfmc.graph import ChannelGraph
    from tfmc.policy import PrunePolicy
    from tfmc.prune.gradual import prune_during_training
    from tfmc.prune.importance import resolve
    from tfmc.prune.select import keep_counts, resolve_keep_ratios

    if not args.data:
        raise UsageError("--gradual-epochs trains the model while it prunes it: give --data")
    if args.finetune_epochs:
        raise UsageError("give --gradual-epochs or --finetune-epochs, not both: pruning during training is the fine-tuning")
    searched = any(getattr(args, name) is not None for name in _TARGETS)
    if searched:
        from tfmc.amc.cli import run_search

        run_search(args)  # writes the search's outputs and the one-shot model, which the gradual one replaces
        ratios = PrunePolicy.from_json(os.path.join(args.out, "best_policy.json"))
        model_path, folder = os.path.join(args.out, "pruned.keras"), None
    elif args.ratios is None:
        raise UsageError("give --ratios FLOAT|FILE (keep ratios to reach) or a budget for an AMC search (--target-macs F)")
    else:
        ratios = _parse_ratios(args.ratios)
        model_path, folder = _claim_outputs(args)
    model = io.load_model(args.model, trust_code=args.trust_model_code)
    dataset = data.load_for_model(args.data, model, data_dir=args.data_dir, classes=True)
    criterion = resolve(args.importance, ratios if isinstance(ratios, PrunePolicy) else None)
    small, _ = prune_during_training(
        model, ratios, dataset.x_train, dataset.y_train, epochs=args.gradual_epochs, learning_rate=args.finetune_lr,
        validation=(dataset.x_val, dataset.y_val), strategy=args.strategy, seed=args.seed, round_to=args.round_to,
        importance=None if criterion.name == "l1" else (
            lambda analysis: criterion.scores(analysis, dataset.x_train[: args.calib_images])))
    analysis = ChannelGraph(model)
    kept = keep_counts(analysis, *resolve_keep_ratios(analysis, ratios, args.round_to))
    accuracy = [(f"test accuracy (pruned during {args.gradual_epochs} epochs)",
                 train.accuracy(model, dataset.x_test, dataset.y_test),
                 train.accuracy(small, dataset.x_test, dataset.y_test))]
    if not searched:
        return _write_outputs(args, model, small, ratios, kept, model_path, folder, accuracy)
    io.save_model(small, model_path)
    summary = _summary(model, small, accuracy)
    with open(os.path.join(args.out, "summary.md"), encoding="utf-8") as f:
        searched_summary = f.read()
    io.write_text(os.path.join(args.out, "summary.md"), f"{searched_summary}\nPruned during training with the policy:\n\n"
                                                          f"{summary}\n")
    print(summary)
    print(f"saved {model_path}")
    return 0
