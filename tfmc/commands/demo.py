"""`tfmc demo`: the whole pipeline on the built-in digits data or on Fashion-MNIST (no download)."""


def register(sub):
    from tfmc import data
    from tfmc.pipeline import DEMO_DATA

    p = sub.add_parser(
        "demo",
        help="train a small CNN on digits, AMC-prune, GMPQ-quantize, export, time and report",
        description="Runs the whole tfmc pipeline on scikit-learn's digits (ships offline), or with "
                    "--data fashion_mnist on Fashion-MNIST with the MobileNetV2-style reference model, and writes "
                    "report.html / report.md with the .tflite files into --out.",
    )
    data.add_data_arguments(p, "the dataset (digits: about 2 minutes on 2 cores; fashion_mnist: about 40)",
                            default="digits", choices=list(DEMO_DATA))
    p.add_argument("--quick", action="store_true", help="short run (digits: about 3 minutes on 2 cores; fashion_mnist: about 5)")
    p.add_argument("--out", default="demo_out", help="output folder (default demo_out)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--strategy", default="default", help="tf.distribute strategy: default, mirrored or multiworker")
    p.set_defaults(run=run)


def run(args):
    from tfmc.cli import UsageError
    from tfmc.pipeline import run_demo
    from tfmc.train import STRATEGIES

    if args.strategy not in STRATEGIES:
        raise UsageError(f"unknown --strategy {args.strategy!r}; expected one of {', '.join(STRATEGIES)}")
    run_demo(args.out, data=args.data, data_dir=args.data_dir, quick=args.quick, seed=args.seed,
             strategy=args.strategy)
    return 0
