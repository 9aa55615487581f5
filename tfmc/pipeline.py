"""The main job end to end: train, AMC-prune, fine-tune, GMPQ, QAT, export, time and report."""
import dataclasses
import os
import shutil
import sys
import time

import numpy as np


@dataclasses.dataclass
class DemoConfig:
    """Lengths of each stage of the demo. ``DemoConfig.quick()`` is the short run.

    ``train_images`` and ``reward_images`` cap the training split and the
    validation split that AMC scores its policies on (None: all of them);
    the test split is always used whole. ``precisions`` are those the
    per-layer precision table measures (None: all of
    ``tfmc.gmpq.costs.PRECISIONS``; float32 and int8 are required).
    """

    image_size: int = 32
    train_epochs: int = 20
    train_learning_rate: float = 3e-3
    train_images: int = None
    reward_images: int = None
    amc_target_macs: float = 0.5
    amc_warmup: int = 100  # the paper's warm-up and episode counts
    amc_episodes: int = 300
    calib_images: int = 256
    finetune_epochs: int = 5
    gmpq_target_bops: float = 0.6
    gmpq_fraction: float = 0.1
    gmpq_epochs: int = 25  # the paper's CIFAR-10 search length
    qat_epochs: int = 5
    bench_rounds: int = 5
    bench_runs: int = 50
    threads: int = 2
    precisions: tuple = None

    @classmethod
    def quick(cls):
        return cls(train_epochs=6, amc_warmup=8, amc_episodes=8, calib_images=128, finetune_epochs=2,
                   gmpq_epochs=4, qat_epochs=1, bench_rounds=3, bench_runs=20)


@dataclasses.dataclass(frozen=True)
class DemoData:
    """What the demo runs on: a dataset of ``tfmc.data``, the model it trains, and the stage lengths."""

    describe: str  # the data as the progress line and the report name them
    model: str  # a builder of tfmc.models: (input_shape, classes, seed) -> model
    config: DemoConfig
    quick: DemoConfig


# The datasets ``tfmc demo --data`` accepts.
DEMO_DATA = {
    "digits": DemoData(
        describe="scikit-learn digits, upsampled to {size}x{size}x3, split 70/15/15",
        model="digits_cnn", config=DemoConfig(), quick=DemoConfig.quick()),
    # Fashion-MNIST at its own 28x28x1 with the MobileNetV2-style reference model; an epoch over its 55,000
    # training images takes about a minute here, so the reward set and the search's share are kept small.
    "fashion_mnist": DemoData(
        describe="Fashion-MNIST 28x28x1, the official test set, 5,000 stratified validation images",
        model="mobilenet_v2_small",
        config=DemoConfig(image_size=28, train_epochs=10, train_learning_rate=2e-3, reward_images=2000,
                          amc_warmup=50, amc_episodes=150, finetune_epochs=2, gmpq_fraction=0.02, qat_epochs=2),
        quick=DemoConfig(image_size=28, train_epochs=2, train_learning_rate=2e-3, train_images=10000,
                         reward_images=1000, amc_warmup=8, amc_episodes=8, calib_images=128, finetune_epochs=1,
                         gmpq_fraction=0.02, gmpq_epochs=4, qat_epochs=1, bench_rounds=3, bench_runs=20)),
}


class _Progress:
    """One line per stage on stderr, with the time since the start."""

    def __init__(self, stages, stream=None):
        self.stages, self.index, self.start = stages, 0, time.monotonic()
        self.stream = stream or sys.stderr

    def step(self, text):
        self.index += 1
        print(f"[{self.index}/{self.stages}] {time.monotonic() - self.start:6.1f} s  {text}", file=self.stream, flush=True)

    def note(self, text):
        print(f"         {text}", file=self.stream, flush=True)


# Everything a demo run writes in its --out. The run replaces the whole folder, so an existing one is
# accepted only if it holds these entries and nothing else.
DEMO_OUTPUTS = frozenset({"report.md", "report.html", "original.keras", "pruned.keras", "pruned_qat.keras",
                          "bit_policy.json", "precision_table.json", "amc", "tflite", "figures"})


def _prepare_output(out_dir):
    """A staging folder beside ``out_dir``; refuse to replace a folder that is not wholly an earlier demo's.

    Raises:
      OutputError: ``out_dir`` is a file or not writable, or holds anything
        besides a demo's outputs (DEMO_OUTPUTS, with its report.md).
    """
    from tfmc import outputs
    from tfmc.errors import OutputError

    out_dir = os.path.abspath(out_dir)
    if os.path.exists(out_dir):
        if not os.path.isdir(out_dir):
            raise OutputError(f"--out {out_dir!r} exists and is not a folder")
        entries = set(os.listdir(out_dir))
        foreign = sorted(entries - DEMO_OUTPUTS) or sorted(entries if "report.md" not in entries else ())
        if foreign:
            listed = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
            raise OutputError(f"--out {out_dir!r} holds files that are not a tfmc demo's ({listed}); the demo "
                              "replaces its whole --out: choose an empty or new folder")
    outputs.check_writable(out_dir)
    outputs.remove_stale_staging(out_dir)
    return out_dir, outputs.staging_folder(out_dir)


def _demo_command(data, quick):
    """The command that repeats this demo, as the report quotes it."""
    flags = ([] if data == "digits" else [f"--data {data}"]) + (["--quick"] if quick else [])
    return "make demo" + (f" DEMO_ARGS='{' '.join(flags)}'" if flags else "")


def tflite_accuracy(path, x, y, threads=2):
    """Top-1 accuracy of a .tflite classifier on (x, y), one sample at a time."""
    from tflite_bench.host import load_interpreter
    from tfmc.export.check import tflite_outputs

    outputs = tflite_outputs(load_interpreter(path, threads=threads), x)
    return float(np.mean(np.argmax(outputs, axis=-1) == y))


def time_alternating(paths, *, threads, rounds, runs, warmup=5):
    """{path: median latency in ms} of each .tflite, timed by ``tflite_bench.alternate``."""
    import tflite_bench

    per_model = tflite_bench.alternate(paths, rounds=rounds, threads=threads, runs=runs, warmup=warmup)
    return {p: tflite_bench.median_of_rounds_us(r) / 1e3 for p, r in zip(paths, per_model)}


def run_demo(out_dir="demo_out", *, data="digits", data_dir=None, quick=False, config=None, seed=0, strategy=None,
             stream=None):
    """Run the whole pipeline on the built-in digits data (or Fashion-MNIST) and write the report.

    Stages: train the data's model (``DEMO_DATA``); AMC search to half the MACs; apply the
    policy with least-squares reconstruction and fine-tune; measure a per-layer
    precision table on this host (tfmc.gmpq.costs) and run the GMPQ search in
    the LiteRT space on a tenth of the training data under the all-int8
    latency; quantization-aware training;
    export float32, int8 and mixed int4/int8 .tflite files; time them with the
    LiteRT interpreter; write report.md and report.html. Everything is built in
    a staging folder that replaces ``out_dir`` only when the run succeeds.

    Args:
      out_dir: output folder (new, empty, or an earlier demo's).
      data: a name of ``DEMO_DATA``: 'digits' (the default, embedded) or
        'fashion_mnist' (the MobileNetV2-style reference model on
        Fashion-MNIST; about 40 minutes on 2 cores, --quick about 5).
      data_dir: where the Fashion-MNIST files are (None: Debian's location).
      quick: the data's short configuration (digits: about 3 minutes on 2 cores).
      config: a DemoConfig, overriding ``quick``.
      seed: seeds data split, training and searches.
      strategy: tf.distribute strategy (or its name) for training steps.

    Returns:
      The results dict given to ``tfmc.report.write_report``, with paths made
      relative to ``out_dir``.

    Raises:
      UsageError: ``data`` is not a name of ``DEMO_DATA``.
      OutputError: ``out_dir`` holds files that are not a demo's (see ``_prepare_output``).
    """
    import tfmc
    from tfmc import amc, bops, export, gmpq, io, models, report, train
    from tfmc.errors import UsageError
    from tfmc.gmpq import explain
    from tfmc.gmpq import plots as gmpq_plots
    from tfmc.gmpq.costs import PRECISIONS, build_precision_table
    from tfmc.progress import bar as progress_bar
    from tfmc.progress import layer_callback

    if data not in DEMO_DATA:
        raise UsageError(f"the demo runs on {' or '.join(DEMO_DATA)}, not {data!r}")
    setup = DEMO_DATA[data]
    config = config or (setup.quick if quick else setup.config)
    strategy = train.make_strategy(strategy)
    out_dir, staging = _prepare_output(out_dir)
    progress = _Progress(9, stream)
    try:
        described = setup.describe.format(size=config.image_size)
        progress.step(f"data: {described}")
        dataset = tfmc.data.load(data, image_size=config.image_size, seed=seed, data_dir=data_dir)
        x_calib = dataset.x_train[: config.calib_images]
        x_fit, y_fit = dataset.x_train[: config.train_images], dataset.y_train[: config.train_images]
        reward = dataset.x_val[: config.reward_images], dataset.y_val[: config.reward_images]

        progress.step(f"training {setup.model} on {len(x_fit):,} images for {config.train_epochs} epochs")
        build = getattr(models, setup.model)
        original, _ = train.fit(build(dataset.input_shape, dataset.num_classes, seed=seed),
                                x_fit, y_fit, epochs=config.train_epochs, learning_rate=config.train_learning_rate,
                                validation=(dataset.x_val, dataset.y_val), strategy=strategy, seed=seed,
                                progress="training")
        io.save_model(original, os.path.join(staging, "original.keras"))
        progress.note(f"test accuracy {train.accuracy(original, dataset.x_test, dataset.y_test):.4f}")

        progress.step(f"AMC search to {config.amc_target_macs:.0%} of the MACs "
                      f"({config.amc_warmup} warm-up + {config.amc_episodes} episodes)")
        search = amc.search(original, reward, target_macs=config.amc_target_macs,
                            calib_data=x_calib, episodes=config.amc_episodes, warmup=config.amc_warmup,
                            out_dir=os.path.join(staging, "amc"), seed=seed, method="ddpg")  # the paper's agent
        progress.note(f"best reward-set accuracy {search.best_accuracy:.4f} at episode {search.best_episode}")

        progress.step(f"applying the policy with reconstruction, fine-tuning {config.finetune_epochs} epochs")
        reconstructed = tfmc.prune(original, search.policy, calib_data=x_calib)
        accuracy_reconstructed = train.accuracy(reconstructed, dataset.x_test, dataset.y_test)
        pruned, _ = train.fit(reconstructed, x_fit, y_fit, epochs=config.finetune_epochs,
                              learning_rate=1e-3, validation=(dataset.x_val, dataset.y_val), strategy=strategy,
                              seed=seed, progress="fine-tuning")
        io.save_model(pruned, os.path.join(staging, "pruned.keras"))
        progress.note(f"test accuracy {accuracy_reconstructed:.4f} before fine-tuning, "
                      f"{train.accuracy(pruned, dataset.x_test, dataset.y_test):.4f} after")

        progress.step(f"GMPQ search (LiteRT space) on {config.gmpq_fraction:.0%} of the training data, "
                      "latency budget: the all-int8 latency measured per layer on this host")
        with progress_bar("precision table", None, unit="layer") as layers:
            table = build_precision_table(pruned, precisions=config.precisions or PRECISIONS, threads=config.threads,
                                          runs=config.bench_runs, rounds=config.bench_rounds,
                                          progress=layer_callback(layers))
        table.to_json(os.path.join(staging, "precision_table.json"))
        int8_ms = gmpq.space_budget(pruned, "litert", measure="ms", table=table).int8_cost
        bits = gmpq.search(pruned, dataset, target_ms=int8_ms, table=table, space="litert",
                           search_fraction=config.gmpq_fraction, epochs=config.gmpq_epochs, seed=seed,
                           strategy=strategy, verbose=False, progress="GMPQ search")
        bits.policy.to_json(os.path.join(staging, "bit_policy.json"))
        progress.note(f"search {bits.search_seconds:.1f} s on {bits.samples} images; {bits.achieved:.4f} ms "
                      f"(sum of the layers in the table) of a {bits.target:.4f} ms budget")

        progress.step(f"quantization-aware training, {config.qat_epochs} epochs")
        with strategy.scope():  # variables trained under a strategy must be created in its scope
            qat = tfmc.quantize(pruned, bits.policy)
        train.fit(qat, x_fit, y_fit, epochs=config.qat_epochs, learning_rate=2e-4,
                  validation=(dataset.x_val, dataset.y_val), strategy=strategy, seed=seed, copy=False,
                  progress="QAT")
        io.save_model(qat, os.path.join(staging, "pruned_qat.keras"))

        progress.step("exporting .tflite files (each checked in LiteRT)")
        rep = dataset.x_train[:200]
        exports = [
            ("original, float32", original, "float32", None, None),
            ("AMC-pruned, float32", pruned, "float32", None, None),
            ("AMC-pruned, int8", pruned, "int8", None, rep),
            ("AMC-pruned + GMPQ bits, QAT", qat, "qat", bits.policy, None),
            ("AMC-pruned + GMPQ bits, mixed int4/int8 PTQ", pruned, "mixed", bits.policy, rep),
        ]
        exported = []
        for label, model, mode, policy, representative in exports:
            path = os.path.join(staging, "tflite", label.split(",")[0].split(" ")[0].lower().replace("-", "_")
                                + f"_{mode}.tflite")
            result = export.to_tflite(model, path, mode=mode, policy=policy, representative_data=representative)
            exported.append((label, model, mode, result))
            if mode == "qat":
                qat_export = result
            progress.note(f"{os.path.basename(path)}: {result.size_bytes:,} bytes; {result.agreement}")

        progress.step(f"timing with the LiteRT interpreter ({config.threads} threads, "
                      f"{config.bench_rounds} alternating rounds of {config.bench_runs} runs)")
        latency = time_alternating([r.path for *_, r in exported], threads=config.threads,
                                   rounds=config.bench_rounds, runs=config.bench_runs)

        progress.step("writing the report")
        int8_policy = bops.uniform_policy(pruned, 8, 8)
        bops_of = {"float32": lambda m: tfmc.count_bops(m), "int8": lambda m: tfmc.count_bops(m, int8_policy),
                   "qat": lambda m: tfmc.count_bops(pruned, bits.policy),
                   "mixed": lambda m: tfmc.count_bops(pruned, bits.policy)}
        rows = []
        for label, model, mode, result in exported:
            base = original if model is original else pruned
            rows.append({
                "model": label,
                "accuracy": tflite_accuracy(result.path, dataset.x_test, dataset.y_test, config.threads),
                "macs": tfmc.count_macs(base),
                "params": tfmc.count_params(base),
                "bops": bops_of[mode](base),
                "tflite_bytes": result.size_bytes,
                "latency_ms": latency[result.path],
            })
        figures_dir = os.path.join(staging, "figures")
        figures = [
            {"title": "AMC: keep ratio per channel group", "path": os.path.join(staging, "amc", "keep_ratios.png")},
            {"title": "AMC: reward per episode", "path": os.path.join(staging, "amc", "rewards.png")},
            {"title": "GMPQ: bits per layer",
             "path": gmpq_plots.plot_bits(bits.policy, os.path.join(figures_dir, "bits.png"))},
        ]
        try:
            figures.append({"title": "Grad-CAM attribution: float vs quantized",
                            "path": gmpq_plots.attribution_figure(pruned, qat, dataset.x_test[:4],
                                                                  os.path.join(figures_dir, "attribution.png"))})
        except ValueError as exc:
            progress.note(f"no attribution figure: {exc}")
        figures.append({"title": "Host latency (ms)", "path": report.plot_bars(
            os.path.join(figures_dir, "latency.png"), [r["model"] for r in rows], [r["latency_ms"] for r in rows],
            "LiteRT latency on this machine", "ms")})
        results = {
            "title": f"tfmc demo: {setup.model} on {data}, pruned with AMC and quantized with GMPQ",
            "dataset": f"{described}: {len(x_fit)} train / {len(reward[0])} val (AMC's reward set) / "
                       f"{len(dataset.x_test)} test",
            "rows": rows,
            "layers": {"title": "Which layers of the QAT .tflite became int4, int8 or float, and why",
                       "rows": [{"layer": r.name, "op": r.op, "weights": r.weights, "why": r.why}
                                for r in explain.layer_precisions(pruned, bits.policy, qat_export.layers)]},
            "figures": figures,
            "notes": [
                "Accuracy is measured on the test split by the exported .tflite file itself.",
                f"AMC: {config.amc_warmup} warm-up + {config.amc_episodes} episodes, reward = accuracy on the "
                f"validation split after least-squares reconstruction, no fine-tuning; best episode "
                f"{search.best_episode} reached {search.best_accuracy:.4f}.",
                f"Pruned model before fine-tuning (reconstruction only): test accuracy {accuracy_reconstructed:.4f}.",
                f"GMPQ: {bits.samples} search images, {bits.search_seconds:.1f} s, in the LiteRT space (int8 "
                "weights on CONV_2D and DEPTHWISE_CONV_2D, int4 or int8 on FULLY_CONNECTED, float allowed for the "
                "first and last layers) under a latency budget of the all-int8 latency, from per-layer costs "
                f"measured on this host (precision_table.json); the policy's estimate is {bits.achieved:.4f} ms "
                f"against {bits.int8_cost:.4f} ms all-int8, at {bits.achieved_bops / bits.int8_bops:.3f} of the "
                "pruned model's 8-bit BOPs.",
                "BOPs count float layers as 32 x 32 bits. Latency: LiteRT interpreter with XNNPACK, "
                f"{config.threads} threads, median of {config.bench_rounds} alternating rounds.",
            ] + [f"Export {label}: rounded {result.changed}" for label, _, _, result in exported if result.changed],
            "commands": [_demo_command(data, quick)],
        }
        report.write_report(staging, results)
        io.replace_dir(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    print(f"report: {os.path.join(out_dir, 'report.html')}", file=stream or sys.stderr)
    return results
