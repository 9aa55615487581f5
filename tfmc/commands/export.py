"""`tfmc export MODEL --mode MODE --out FILE.tflite`: convert to a checked .tflite and say what each layer became."""


def register(sub):
    from tfmc import data
    from tfmc.cli import add_model_argument, add_overwrite_argument
    from tfmc.export import IO_DTYPES, MODES

    p = sub.add_parser(
        "export",
        help="convert to .tflite (float32, float16, dynamic, int8, qat, mixed int4/int8) and check it in LiteRT",
        description=(
            "Writes FILE.tflite atomically after loading it in LiteRT and comparing its top-1 output with the "
            "Keras model. int8 needs --data (calibration); mixed needs --bits (a BitPolicy JSON) and, with --data, "
            "quantizes activations to int8 too. Prints a table of what each layer became."
        ),
    )
    add_model_argument(p, ".keras / .h5 file or SavedModel folder (for --mode qat: a tfmc quantize output)")
    p.add_argument("--mode", required=True, choices=MODES, help="what to store: " + ", ".join(MODES))
    p.add_argument("--out", required=True, help="output .tflite file")
    add_overwrite_argument(p)
    p.add_argument("--bits", help="BitPolicy JSON (mode mixed; for qat, the request to compare against)")
    data.add_data_arguments(p, "calibration / check data")
    p.add_argument("--calib-images", type=int, default=200, help="images from --data used to calibrate (default 200)")
    p.add_argument("--io", choices=IO_DTYPES, help="model input/output type for int8, qat, mixed (default float32; "
                   "mixed with --data is int8)")
    p.set_defaults(run=run)
    return p


def run(args):
    from tfmc import data, io, outputs
    from tfmc.cli import UsageError
    from tfmc.export import to_tflite
    from tfmc.policy import BitPolicy
    from tfmc.quant import qat_custom_objects

    if not args.out.endswith(".tflite"):
        raise UsageError(f"--out {args.out!r} must end in .tflite")
    if args.calib_images < 1:
        raise UsageError(f"--calib-images must be at least 1, got {args.calib_images}")
    outputs.claim_file(args.out, ".tflite", outputs.is_tflite_file, overwrite=args.overwrite)
    policy = None
    if args.bits:
        try:
            policy = BitPolicy.from_json(args.bits)
        except (OSError, ValueError, KeyError) as exc:
            raise UsageError(f"--bits {args.bits}: not a valid BitPolicy JSON ({exc})") from None
    model = io.load_model(args.model, custom_objects=qat_custom_objects(), trust_code=args.trust_model_code)
    representative = None
    if args.data:
        dataset = data.load_for_model(args.data, model, data_dir=args.data_dir)
        representative = dataset.x_train[: args.calib_images]
    io_dtype = args.io
    if io_dtype is None and args.mode == "mixed" and representative is not None:
        io_dtype = "int8"
    result = to_tflite(model, args.out, mode=args.mode, policy=policy, representative_data=representative,
                       io_dtype=io_dtype)
    print(result.to_markdown())
    return 0
