"""`tfmc prune MODEL`: remove channels by given keep ratios, or search them with AMC."""
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
            "and the search checkpoint (--resume continues it)."
        ),
    )
    add_model_argument(p)
    p.add_argument("--ratios", help="keep ratio for every prunable group (e.g. 0.5) or a PrunePolicy JSON file")
    data.add_data_arguments(p, "calibration data for least-squares reconstruction (an AMC search: its reward set)")
    p.add_argument("--calib-images", type=int, default=512, help="calibration images used for reconstruction (default 512)")
    p.add_argument("--round-to", type=int, default=8, help="kept channel counts are multiples of this (default 8)")
    p.add_argument("--out", required=True, help="output .keras/.h5 file or folder")
    add_overwrite_argument(p)
    add_search_arguments(p)
    add_strategy_argument(p)
    p.set_defaults(run=run)
    return p


def add_search_arguments(parser):
    """Add the AMC search options (tfmc.amc.cli.run_search reads them)."""
    group = parser.add_argument_group("AMC search (instead of --ratios; --data and an --out folder required)")
    group.add_argument("--target-macs", type=float, help="keep at most this fraction of the MACs, in (0, 1)")
    group.add_argument("--target-params", type=float, help="keep at most this fraction of the parameters, in (0, 1)")
    group.add_argument("--target-latency-ms", type=float, help="latency budget in ms, summed over --latency-table")
    group.add_argument("--latency-table", help="per-layer latency table JSON (from tfmc latency-table) for --target-latency-ms")
    group.add_argument("--episodes", type=int, default=300, help="learning episodes after the warm-up (default 300)")
    group.add_argument("--warmup", type=int, default=100, help="warm-up episodes of random actions (default 100)")
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
    from tfmc import cost, data, io, outputs
    from tfmc.cli import UsageError, check_numbers
    from tfmc.policy import PrunePolicy
    from tfmc.prune import prune

    check_numbers(args, calib_images="count", seed="count0", finetune_lr="positive")
    if any(getattr(args, name) is not None for name in _TARGETS):
        from tfmc.amc.cli import run_search

        return run_search(args)
    if args.ratios is None:
        raise UsageError("give --ratios FLOAT|FILE (keep ratios to apply) or a budget for an AMC search (--target-macs F)")
    ratios = _parse_ratios(args.ratios)
    model_path, folder = _output_paths(args.out)
    if folder:
        outputs.claim_folder(folder, "tfmc prune", _folder_outputs(), overwrite=args.overwrite)
    else:
        outputs.claim_file(model_path, "model", outputs.is_model_file, overwrite=args.overwrite)
    model = io.load_model(args.model, trust_code=args.trust_model_code)
    calib = None
    if args.data:
        dataset = data.load_for_model(args.data, model, data_dir=args.data_dir)
        calib = dataset.x_train[: args.calib_images]
    pruned, details = prune(model, ratios, calib_data=calib, round_to=args.round_to, return_details=True)
    before, after = cost.count_macs(model), cost.count_macs(pruned)
    params_before, params_after = cost.count_params(model), cost.count_params(pruned)
    summary = "\n".join([
        _SUMMARY_HEADER,
        "|---|---:|---:|---:|",
        f"| MACs | {before:,} | {after:,} | {after / before:.3f} |",
        f"| params | {params_before:,} | {params_after:,} | {params_after / params_before:.3f} |",
    ])
    if folder:
        policy = ratios if isinstance(ratios, PrunePolicy) else PrunePolicy(
            {g: float(ratios) for g in details["kept_channels"]}, round_to=args.round_to
        )
        policy.metadata.update({"kept_channels": details["kept_channels"], "macs": after, "params": params_after})
        with outputs.staged(folder) as stage:
            io.save_model(pruned, os.path.join(stage, "pruned.keras"))
            policy.to_json(os.path.join(stage, "policy.json"))
            io.write_text(os.path.join(stage, "summary.md"), summary + "\n")
    else:
        io.save_model(pruned, model_path)
    print(summary)
    print(f"saved {model_path}")
    return 0
