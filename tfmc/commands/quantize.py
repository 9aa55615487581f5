"""`tfmc quantize MODEL`: apply per-layer bit widths, or search them with GMPQ, then train with QAT and export."""
import json
import math
import os
import sys
import tempfile

SEARCH_FOLDER = "search"  # the search's run folder inside --out, written in place (a killed run keeps it)
_SUMMARY_HEADER = ("| model | test accuracy of the .tflite | .tflite bytes | host latency, ms | BOPs | of 8-bit BOPs "
                   "| packed size (params x bits / 8), bytes |")


def register(sub):
    from tfmc import data
    from tfmc.cli import add_model_argument, add_overwrite_argument, add_strategy_argument
    from tfmc.commands.precision_table import add_timing_arguments

    p = sub.add_parser(
        "quantize",
        help="per-layer bit widths: given (--bits) or searched by GMPQ under a BOPs, size or latency budget, "
             "then QAT and the deployable .tflite",
        description=(
            "Writes to --out: policy.json, bits.png, qat.keras, model.tflite (the QAT model exported for LiteRT), "
            "summary.md (the .tflite against the float32 model and uniform int8 post-training quantization: test "
            "accuracy measured by each .tflite, size, host latency in alternating rounds; and what each layer became) "
            "and, with a conv layer, attribution.png; a search adds history.json and its run folder search/ "
            "(a checkpoint after every epoch, history.jsonl / .csv, TensorBoard scalars, plots; --resume continues "
            "it), and a size or latency budget without --cost-table adds cost_table.json (measured here). "
            "--target-bops <= 1 is a fraction of the model's 8-bit BOPs, larger values are absolute BOPs."
        ),
    )
    add_model_argument(p)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--bits", help="BitPolicy JSON file to apply")
    source.add_argument("--target-bops", type=float, help="BOPs budget: fraction of 8-bit (<= 1) or absolute")
    source.add_argument("--target-bytes", type=float, metavar="BYTES",
                        help="model size budget in bytes (the .tflite size estimated from the precision table)")
    source.add_argument("--target-latency-ms", type=float, metavar="MS",
                        help="latency budget in ms (sum of the layers' measured latencies; never above all-int8)")
    data.add_data_arguments(p, "training data (the search reads a share of it, QAT all of it)", required=True)
    p.add_argument("--out", required=True, help="output folder")
    add_overwrite_argument(p)
    p.add_argument("--space", default="litert", choices=["litert", "gmpq"],
                   help="litert: weights {4,8} (depthwise 8), activations 8 (default); gmpq: {2,3,4,6} simulated")
    p.add_argument("--search-fraction", type=float, default=0.1, help="share of the training data the search sees (default 0.1)")
    p.add_argument("--search-epochs", type=int, default=25, help="search epochs (default 25)")
    p.add_argument("--resume", action="store_true",
                   help="continue the search checkpointed in --out/search (refused if it had other inputs)")
    p.add_argument("--lambda", dest="attribution_weight", type=float, default=20.0, help="attribution loss weight (default 20)")
    p.add_argument("--random-shift", type=int, metavar="PIXELS", default=None,
                   help="move each search image by up to PIXELS at random every time it is read "
                        "(default 4 for images; 0 reads them as they are)")
    p.add_argument("--keep-ends", type=int, metavar="BITS", default=None,
                   help="hold the first and last searched layers (stem, classifier) at BITS/BITS, as GMPQ's authors "
                        "do at 8; they count in the budget")
    p.add_argument("--cost-table", metavar="FILE",
                   help="precision table for --target-bytes / --target-latency-ms (from `tfmc precision-table`, e.g. "
                        "measured on a phone); default: measured on this host")
    add_timing_arguments(p)
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
            "summary.md": outputs.starts_with(_SUMMARY_HEADER), "model.tflite": outputs.is_tflite_file,
            "history.json": outputs.is_json(lambda v: isinstance(v, list)),
            "cost_table.json": outputs.is_json(lambda v: isinstance(v, dict) and v.get("format") == "tfmc.precision_table"),
            SEARCH_FOLDER: _is_search_run}


def _is_search_run(path):
    """Whether ``path`` is a GMPQ search's run folder (tfmc.gmpq.run), finished or not."""
    from tfmc.runs import JOURNAL, POINTER

    return os.path.isdir(path) and (not os.listdir(path) or any(os.path.exists(os.path.join(path, name))
                                                                for name in (POINTER, JOURNAL)))


def _load_policy(path):
    from tfmc.cli import UsageError
    from tfmc.policy import BitPolicy

    if not os.path.exists(path):
        raise UsageError(f"--bits {path!r} does not exist")
    try:
        return BitPolicy.from_json(path)
    except (ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"--bits {path}: not a valid BitPolicy ({exc})") from None


def _cost_table(args, model, folder):
    """The precision table a size or latency budget reads: --cost-table, or measured here and written to --out."""
    from tfmc.gmpq.costs import PrecisionTable, build_precision_table
    from tfmc.progress import bar, layer_callback

    if args.cost_table:
        return PrecisionTable.from_json(args.cost_table)
    print("measuring the precision table on this host (each layer at float32, float16, int8, int4)", file=sys.stderr)
    with bar("precision table", None, unit="layer") as layers:
        table = build_precision_table(model, threads=args.threads, runs=args.runs, warmup=args.warmup,
                                      rounds=args.rounds, progress=layer_callback(layers))
    table.to_json(os.path.join(folder, "cost_table.json"))
    return table


def _tflite_rows(args, model, qat, policy, dataset, folder):
    """Summary rows of the float32 model, its uniform int8 PTQ and model.tflite (the QAT export), measured."""
    from tfmc import export
    from tfmc.errors import ExportError
    from tfmc.gmpq import explain
    from tfmc.pipeline import tflite_accuracy, time_alternating

    path = os.path.join(folder, "model.tflite")
    try:
        result = export.to_tflite(qat, path, mode="qat", policy=policy)
    except ExportError as exc:  # e.g. activations below 8 bits: nothing LiteRT can run
        print(f"no model.tflite: {exc}", file=sys.stderr)
        return None, None
    with tempfile.TemporaryDirectory(prefix="tfmc_quantize_") as scratch:
        references = [("float32", os.path.join(scratch, "float32.tflite"), "float32"),
                      ("uniform int8 (post-training)", os.path.join(scratch, "int8.tflite"), "int8")]
        for _, reference, mode in references:
            export.to_tflite(model, reference, mode=mode, representative_data=dataset.x_train[:200])
        paths = [reference for _, reference, _ in references] + [path]
        latency = time_alternating(paths, threads=args.threads, rounds=args.rounds, runs=args.runs, warmup=args.warmup)
        rows = [(label, tflite_accuracy(p, dataset.x_test, dataset.y_test, args.threads), os.path.getsize(p),
                 latency[p]) for label, p in zip([label for label, _, _ in references] + ["model.tflite (QAT)"], paths)]
    layers = explain.layer_precisions(model, policy, result.layers, args.space)
    return rows, layers


def run(args):
    from tfmc import bops, data, io, outputs
    from tfmc.cli import UsageError, check_numbers
    from tfmc.commands.precision_table import check_timing_arguments
    from tfmc.errors import PolicyError
    from tfmc.gmpq import explain, plots
    from tfmc.quant import quantize
    from tfmc.train import accuracy, fit, make_strategy

    if args.qat_epochs < 0 or args.search_epochs < 1:
        raise UsageError("--qat-epochs must be >= 0 and --search-epochs >= 1")
    if not 0 < args.search_fraction <= 1:
        raise UsageError(f"--search-fraction must be in (0, 1], got {args.search_fraction}")
    check_numbers(args, qat_lr="positive", seed="count0", target_bytes="positive", target_latency_ms="positive")
    check_timing_arguments(args)
    if not math.isfinite(args.attribution_weight) or args.attribution_weight < 0:
        raise UsageError(f"--lambda must be a finite number >= 0, got {args.attribution_weight}")
    if args.resume and args.bits:
        raise UsageError("--resume continues a search; --bits applies a policy without one")
    if args.cost_table and args.target_bytes is None and args.target_latency_ms is None:
        raise UsageError("--cost-table is read by --target-bytes and --target-latency-ms only")
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
            table = None
            if args.target_bops is None:
                table = _cost_table(args, model, folder)
            result = gmpq.search(
                model, dataset, target_bops=args.target_bops, target_bytes=args.target_bytes,
                target_ms=args.target_latency_ms, table=table, space=args.space,
                search_fraction=args.search_fraction, epochs=args.search_epochs,
                attribution_weight=args.attribution_weight, seed=args.seed, strategy=args.strategy, fixed_bits=fixed,
                random_shift=args.random_shift, out_dir=os.path.join(args.out, SEARCH_FOLDER), resume=args.resume,
                verbose=False, progress="GMPQ search",
            )
            policy = result.policy
            io.write_json(os.path.join(folder, "history.json"), result.history)
            show = (lambda v: f"{v:.4f} ms") if result.measure == "ms" else (  # noqa: E731
                lambda v: f"{v:,.0f} {'BOPs' if result.measure == 'bops' else 'bytes'}")
            print(f"search: {result.search_seconds:.1f} s on {result.samples} images; {show(result.achieved)} of a "
                  f"{show(result.target)} budget (all-int8: {show(result.int8_cost)})", file=sys.stderr)
            for note in result.policy.metadata["rounded"]:
                print(f"note: {note}", file=sys.stderr)
        strategy = make_strategy(args.strategy)
        with strategy.scope():  # variables trained under a strategy must be created in its scope
            qat = quantize(model, policy)
        policy.to_json(os.path.join(folder, "policy.json"))
        plots.plot_bits(policy, os.path.join(folder, "bits.png"))
        if args.qat_epochs:
            fit(qat, dataset.x_train, dataset.y_train, epochs=args.qat_epochs, learning_rate=args.qat_lr,
                validation=(dataset.x_val, dataset.y_val), copy=False, progress="QAT", strategy=strategy)
        io.save_model(qat, os.path.join(folder, "qat.keras"))
        try:
            plots.attribution_figure(model, qat, dataset.x_test[:4], os.path.join(folder, "attribution.png"))
        except PolicyError as exc:  # a model without a conv feature map has no Grad-CAM
            print(f"no attribution figure: {exc}", file=sys.stderr)
        measured, layers = _tflite_rows(args, model, qat, policy, dataset, folder)
        int8_policy = bops.uniform_policy(model, 8, 8)
        int8 = bops.count_bops(model, int8_policy)
        lines = [_SUMMARY_HEADER, "|---|---:|---:|---:|---:|---:|---:|"]
        if measured is None:  # no .tflite: the Keras models' accuracy, nothing measured in LiteRT
            measured = [("float32 (Keras)", accuracy(model, dataset.x_test, dataset.y_test), None, None),
                        (f"QAT ({args.qat_epochs} epochs, Keras)", accuracy(qat, dataset.x_test, dataset.y_test),
                         None, None)]
            policies = [None, policy]
        else:
            policies = [None, int8_policy, policy]
        for (label, acc, size, ms), p in zip(measured, policies):
            count = bops.count_bops(model, p)
            size_text = "-" if size is None else f"{size:,}"
            ms_text = "-" if ms is None else f"{ms:.4f}"
            lines.append(f"| {label} | {acc:.4f} | {size_text} | {ms_text} | {count:,} | {count / int8:.3f} "
                         f"| {bops.packed_size_bytes(model, p):,} |")
        lines += ["", f"Host latency: LiteRT interpreter with XNNPACK, {args.threads} thread(s), median of "
                  f"{args.rounds} alternating rounds of {args.runs} runs. QAT: {args.qat_epochs} epochs."]
        if layers:
            lines += ["", "What each layer of model.tflite holds, and why:", "", explain.to_markdown(layers)]
        summary = "\n".join(lines)
        io.write_text(os.path.join(folder, "summary.md"), summary + "\n")
    print(summary)
    print(json.dumps({n: [b.weight_bits, b.activation_bits] for n, b in policy.items()}))
    print(f"saved {args.out}")
    return 0
