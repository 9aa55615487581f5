"""`tfmc quantize MODEL`: apply per-layer bit widths, or search them with GMPQ, then train with QAT."""
import json
import math
import os
import sys

_SUMMARY_HEADER = "| model | test accuracy | BOPs | of 8-bit BOPs | packed size (params x bits / 8), bytes |"


def register(sub):
    from tfmc import data
    from tfmc.cli import add_model_argument, add_overwrite_argument, add_strategy_argument

    p = sub.add_parser(
        "quantize",
        help="per-layer bit widths: given (--bits) or searched by GMPQ under a BOPs budget (--target-bops), then QAT",
        description=(
            "Writes to --out: policy.json, bits.png, qat.keras, summary.md and, with a conv layer, attribution.png; "
            "a search adds history.json. --target-bops <= 1 is a fraction of the model's 8-bit BOPs, "
            "larger values are absolute BOPs."
        ),
    )
    add_model_argument(p)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--bits", help="BitPolicy JSON file to apply")
    source.add_argument("--target-bops", type=float, help="BOPs budget: fraction of 8-bit (<= 1) or absolute")
    data.add_data_arguments(p, "training data (the search reads a share of it, QAT all of it)", required=True)
    p.add_argument("--out", required=True, help="output folder")
    add_overwrite_argument(p)
    p.add_argument("--space", default="litert", choices=["litert", "gmpq"],
                   help="litert: weights {4,8} (depthwise 8), activations 8 (default); gmpq: {2,3,4,6} simulated")
    p.add_argument("--search-fraction", type=float, default=0.1, help="share of the training data the search sees (default 0.1)")
    p.add_argument("--search-epochs", type=int, default=25, help="search epochs (default 25)")
    p.add_argument("--lambda", dest="attribution_weight", type=float, default=20.0, help="attribution loss weight (default 20)")
    p.add_argument("--random-shift", type=int, metavar="PIXELS", default=None,
                   help="move each search image by up to PIXELS at random every time it is read "
                        "(default 4 for images; 0 reads them as they are)")
    p.add_argument("--keep-ends", type=int, metavar="BITS", default=None,
                   help="hold the first and last searched layers (stem, classifier) at BITS/BITS, as GMPQ's authors "
                        "do at 8; they count in the budget")
    p.add_argument("--qat-epochs", type=int, default=3, help="quantization-aware training epochs (default 3)")
    p.add_argument("--qat-lr", type=float, default=1e-3, help="QAT learning rate, Adam (default 1e-3)")
    p.add_argument("--seed", type=int, default=0)
    add_strategy_argument(p)
    p.set_defaults(run=run)
    return p


def _folder_outputs():
    """What `tfmc quantize` writes in --out, and how each of tfmc's own entries is recognised."""
    from tfmc import outputs

    return {"policy.json": outputs.is_policy("bits"), "bits.png": outputs.is_matplotlib_png,
            "attribution.png": outputs.is_matplotlib_png, "qat.keras": outputs.is_model_file,
            "summary.md": outputs.starts_with(_SUMMARY_HEADER),
            "history.json": outputs.is_json(lambda v: isinstance(v, list))}


def _load_policy(path):
    from tfmc.cli import UsageError
    from tfmc.policy import BitPolicy

    if not os.path.exists(path):
        raise UsageError(f"--bits {path!r} does not exist")
    try:
        return BitPolicy.from_json(path)
    except (ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"--bits {path}: not a valid BitPolicy ({exc})") from None


def run(args):
    from tfmc import bops, data, io, outputs
    from tfmc.cli import UsageError, check_numbers
    from tfmc.errors import PolicyError
    from tfmc.gmpq import plots
    from tfmc.quant import quantize
    from tfmc.train import accuracy, fit, make_strategy

    if args.qat_epochs < 0 or args.search_epochs < 1:
        raise UsageError("--qat-epochs must be >= 0 and --search-epochs >= 1")
    if not 0 < args.search_fraction <= 1:
        raise UsageError(f"--search-fraction must be in (0, 1], got {args.search_fraction}")
    check_numbers(args, qat_lr="positive", seed="count0")
    if not math.isfinite(args.attribution_weight) or args.attribution_weight < 0:
        raise UsageError(f"--lambda must be a finite number >= 0, got {args.attribution_weight}")
    outputs.claim_folder(args.out, "tfmc quantize", _folder_outputs(), overwrite=args.overwrite)
    model = io.load_model(args.model, trust_code=args.trust_model_code)
    dataset = data.load_for_model(args.data, model, data_dir=args.data_dir, classes=True)
    with outputs.staged(args.out) as folder:
        if args.bits:
            policy = _load_policy(args.bits)
            bops.check_policy_layers(model, policy)
        else:
            from tfmc import gmpq

            fixed = None
            if args.keep_ends is not None:
                fixed = {name: (args.keep_ends, args.keep_ends) for name in gmpq.end_layers(model, args.space)}
            result = gmpq.search(
                model, dataset, target_bops=args.target_bops, space=args.space, search_fraction=args.search_fraction,
                epochs=args.search_epochs, attribution_weight=args.attribution_weight, seed=args.seed,
                strategy=args.strategy, fixed_bits=fixed, random_shift=args.random_shift,
            )
            policy = result.policy
            io.write_json(os.path.join(folder, "history.json"), result.history)
            print(f"search: {result.search_seconds:.1f} s on {result.samples} images; "
                  f"{result.achieved_bops:,} BOPs of a {result.target_bops:,} target", file=sys.stderr)
        strategy = make_strategy(args.strategy)
        with strategy.scope():  # variables trained under a strategy must be created in its scope
            qat = quantize(model, policy)
        policy.to_json(os.path.join(folder, "policy.json"))
        plots.plot_bits(policy, os.path.join(folder, "bits.png"))
        if args.qat_epochs:
            fit(qat, dataset.x_train, dataset.y_train, epochs=args.qat_epochs, learning_rate=args.qat_lr,
                validation=(dataset.x_val, dataset.y_val), copy=False, verbose=2,
                strategy=strategy)
        io.save_model(qat, os.path.join(folder, "qat.keras"))
        try:
            plots.attribution_figure(model, qat, dataset.x_test[:4], os.path.join(folder, "attribution.png"))
        except PolicyError as exc:  # a model without a conv feature map has no Grad-CAM
            print(f"no attribution figure: {exc}", file=sys.stderr)
        int8 = bops.count_bops(model, bops.uniform_policy(model, 8, 8))
        rows = [("float", model, None), (f"QAT ({args.qat_epochs} epochs)", qat, policy)]
        lines = [_SUMMARY_HEADER,
                 "|---|---:|---:|---:|---:|"]
        for label, m, p in rows:
            count = bops.count_bops(model, p)
            lines.append(f"| {label} | {accuracy(m, dataset.x_test, dataset.y_test):.4f} | {count:,} | {count / int8:.3f} "
                         f"| {bops.packed_size_bytes(model, p):,} |")
        summary = "\n".join(lines)
        io.write_text(os.path.join(folder, "summary.md"), summary + "\n")
    print(summary)
    print(json.dumps({n: [b.weight_bits, b.activation_bits] for n, b in policy.items()}))
    print(f"saved {args.out}")
    return 0
