"""`tfmc precision-table MODEL --out FILE`: measure what each layer costs at each precision LiteRT runs."""


def register(sub):
    from tfmc.cli import add_model_argument, add_overwrite_argument

    p = sub.add_parser(
        "precision-table",
        help="time every conv / depthwise / dense layer at float32, float16, int8 and int4 (for quantize's "
             "--target-bytes / --target-latency-ms)",
        description=(
            "Each Conv2D / DepthwiseConv2D / Dense layer is rebuilt alone with its weights, written as a .tflite at "
            "float32, float16, int8 and (CONV_2D, FULLY_CONNECTED) int4, timed with tflite_bench in alternating "
            "rounds (here, or on a phone with --android) and its stored bytes read from the file. The JSON it "
            "writes is what `tfmc quantize --cost-table FILE` reads."
        ),
    )
    add_model_argument(p, ".keras / .h5 file or SavedModel folder, with a fixed input size")
    p.add_argument("--out", required=True, help="the JSON file to write")
    add_overwrite_argument(p)
    add_timing_arguments(p)
    p.add_argument("--android", action="store_true", help="measure on an Android phone over adb (needs --binary)")
    p.add_argument("--binary", help="benchmark_model executable (for the phone with --android, else for this machine)")
    p.add_argument("--serial", help="Android device serial, when several are attached")
    p.set_defaults(run=run)


def add_timing_arguments(parser):
    """--threads, --runs, --warmup and --rounds of a precision table's timing."""
    parser.add_argument("--threads", type=int, default=1, help="threads (default 1)")
    parser.add_argument("--runs", type=int, default=20, help="timed inferences per file and round (default 20)")
    parser.add_argument("--warmup", type=int, default=3, help="warm-up inferences per file and round (default 3)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per layer (default 3)")


def check_timing_arguments(args):
    from tfmc.cli import check_numbers

    check_numbers(args, threads="count", runs="count", rounds="count", warmup="count0")


def run(args):
    from tflite_bench import BenchError
    from tfmc import io, outputs
    from tfmc.cli import UsageError
    from tfmc.gmpq.costs import build_precision_table
    from tfmc.progress import bar, layer_callback

    check_timing_arguments(args)
    if args.android and not args.binary:
        raise UsageError("--android needs --binary: the benchmark_model executable to push to the phone")
    outputs.claim_file(args.out, "precision table", outputs.is_json(
        lambda v: isinstance(v, dict) and v.get("format") == "tfmc.precision_table"), overwrite=args.overwrite)
    model = io.load_model(args.model, trust_code=args.trust_model_code)
    try:
        with bar("precision table", None, unit="layer") as layers:
            table = build_precision_table(
                model, target="android" if args.android else "host", threads=args.threads, runs=args.runs,
                warmup=args.warmup, rounds=args.rounds, binary=args.binary, serial=args.serial,
                progress=layer_callback(layers))
    except BenchError as exc:  # the benchmark tool, adb or the phone failed: the user's set-up, not a bug
        raise UsageError(str(exc)) from None
    table.to_json(args.out)  # atomic
    print(table.to_markdown())
    print(f"{len(table.layers)} layers -> {args.out}")
    return 0
