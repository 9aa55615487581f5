"""`tfmc latency-table MODEL --out FILE`: measure the per-layer latency table an AMC latency budget reads."""


def register(sub):
    from tfmc.cli import add_model_argument, add_overwrite_argument

    p = sub.add_parser(
        "latency-table",
        help="time every conv / depthwise / dense layer on a grid of channel counts (for prune --target-latency-ms)",
        description=(
            "Each conv / depthwise / dense / separable layer is rebuilt alone with the channel counts of each grid "
            "point, converted to a float .tflite and timed with tflite_bench (here, or on a phone with --android). "
            "The JSON it writes is what `tfmc prune --target-latency-ms MS --latency-table FILE` reads."
        ),
    )
    add_model_argument(p, ".keras / .h5 file or SavedModel folder, with a fixed input size")
    p.add_argument("--out", required=True, help="the JSON file to write")
    add_overwrite_argument(p)
    p.add_argument("--grid", default="0.25,0.5,0.75,1.0",
                   help="keep fractions of each layer's channels to measure, comma-separated "
                        "(default 0.25,0.5,0.75,1.0)")
    p.add_argument("--threads", type=int, default=1, help="threads (default 1)")
    p.add_argument("--runs", type=int, default=20, help="timed inferences per point (default 20)")
    p.add_argument("--warmup", type=int, default=3, help="warm-up inferences per point (default 3)")
    p.add_argument("--android", action="store_true", help="measure on an Android phone over adb (needs --binary)")
    p.add_argument("--binary", help="benchmark_model executable (for the phone with --android, else for this machine)")
    p.add_argument("--serial", help="Android device serial, when several are attached")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def _grid(text):
    from tfmc.cli import UsageError

    try:
        grid = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise UsageError(f"--grid {text!r}: expected comma-separated fractions such as 0.25,0.5,1.0") from None
    if not grid or any(not 0.0 < v <= 1.0 for v in grid):
        raise UsageError(f"--grid {text!r}: every fraction must be in (0, 1]")
    return tuple(sorted(set(grid)))


def run(args):
    from tqdm.auto import tqdm

    from tflite_bench import BenchError
    from tflite_bench.lut import build_latency_table
    from tfmc import io, outputs
    from tfmc.cli import UsageError

    grid = _grid(args.grid)
    for name in ("threads", "runs"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.warmup < 0:
        raise UsageError(f"--warmup must be >= 0, got {args.warmup}")
    if args.android and not args.binary:
        raise UsageError("--android needs --binary: the benchmark_model executable to push to the phone")
    outputs.claim_file(args.out, "latency table", outputs.is_json(
        lambda v: isinstance(v, dict) and v.get("format") == "tflite_bench.latency_table"), overwrite=args.overwrite)
    model = io.load_model(args.model, trust_code=args.trust_model_code)
    bar = tqdm(desc="latency table", unit="layer", disable=args.no_progress, dynamic_ncols=True)
    seen = set()

    def progress(layer, done, total):
        if layer not in seen:
            seen.add(layer)
            bar.update(1)
        bar.set_postfix(layer=layer, point=f"{done}/{total}")

    try:
        table = build_latency_table(model, grid=grid, target="android" if args.android else "host",
                                    threads=args.threads, runs=args.runs, warmup=args.warmup, binary=args.binary,
                                    serial=args.serial, progress=progress)
    except BenchError as exc:  # the benchmark tool, adb or the phone failed: the user's set-up, not a bug
        raise UsageError(str(exc)) from None
    finally:
        bar.close()
    table.to_json(args.out)  # atomic; creates the folder
    print(f"{len(table.layers)} layers, {table.full_ms():.4f} ms for the whole model (sum of the layers at full "
          f"width) -> {args.out}")
    return 0
