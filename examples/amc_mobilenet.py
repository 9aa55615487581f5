"""Prune a Keras MobileNet / MobileNetV2 with AMC, fine-tune it, export both models and time them.

What it does, in order:

1. Loads the data (``--data``; the built-in scikit-learn digits by default),
   resized to ``--image-size`` with 3 channels (Keras applications need at
   least 32 x 32 RGB).
2. Builds ``keras.applications.MobileNet`` or ``MobileNetV2`` with
   ``--alpha`` and one output per class. With ``--weights FILE`` the weights
   are read from that file (it must fit the same architecture, input size
   and class count); otherwise the model starts from random weights
   (``weights=None``: nothing is downloaded) and is trained for
   ``--train-epochs`` first.
3. Searches per-layer keep ratios with AMC (``tfmc.amc.search``, a DDPG
   agent under a hard MACs budget, ``--target-macs`` of the original),
   rewarded by accuracy on the validation split after least-squares
   reconstruction.
4. Applies the best policy with ``tfmc.prune`` (channels physically removed,
   the layers after them refitted by least squares on ``--calib-images``
   training images) and fine-tunes the result for ``--finetune-epochs``.
5. Prints original vs pruned test accuracy, MACs and parameters, saves
   ``original.keras`` and ``pruned.keras``, exports both as float32 .tflite
   (``tfmc.export.to_tflite``, checked in LiteRT) and times them on this
   machine with ``tflite_bench`` (``tfmc.pipeline.time_alternating``:
   the two files take turns, ``--bench-rounds`` rounds, median latency).

``--quick`` is a smoke run: one epoch from random weights leaves the model
near chance on the test split, so its accuracies say nothing; the MACs,
parameters, file sizes and latencies are real. MobileNetV2 (``--arch
mobilenet_v2 --quick``) has twice the layers and takes about twice as long.

Output folder (``--out``):
  original.keras, pruned.keras         the two Keras models
  original_float32.tflite, pruned_float32.tflite
  amc/                                 the search: best_policy.json, history.csv, plots, checkpoints
  summary.md, results.json             the table printed at the end, and its numbers

Commands:
  python examples/amc_mobilenet.py --quick --out amc_quick           # under a minute on 2 CPU cores (mobilenet)
  python examples/amc_mobilenet.py --arch mobilenet_v2 --alpha 0.5 --image-size 64 --out amc_v2
  python examples/amc_mobilenet.py --arch mobilenet --alpha 0.5 --data tfds:cifar10 --data-dir /data/tfds \\
      --image-size 32 --target-macs 0.5 --out amc_cifar
  python examples/amc_mobilenet.py --data photos/ --weights mobilenet_v2_photos.h5 --image-size 96 --out amc_photos

A second run into the same ``--out`` refuses to overwrite the AMC search
kept in ``--out/amc``; add ``--resume`` to continue it (a larger
``--episodes`` extends it). Bad input prints one line and exits with code 2.
"""
import argparse
import os
import sys

import _common

ARCHES = ("mobilenet", "mobilenet_v2")


def build_parser():
    parser = argparse.ArgumentParser(
        prog="amc_mobilenet.py", description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--arch", choices=ARCHES, default="mobilenet",
                        help="keras.applications architecture to build")
    parser.add_argument("--alpha", type=_common.positive_float, default=None,
                        help="width multiplier of the architecture (default 1.0; 0.35 for mobilenet_v2 and "
                             "0.25 for mobilenet with --quick)")
    parser.add_argument("--weights", default=None,
                        help="a weights file (.h5 / .weights.h5) for the same architecture, input size and class "
                             "count; without it the model starts from random weights and is trained first")
    parser.add_argument("--data", default="digits",
                        help="digits, tfds:NAME[:SPLIT] (prepared in --data-dir), a folder of class sub-folders "
                             "of images, or an .npz with arrays x and y")
    parser.add_argument("--data-dir", default=None, help="where tfds:NAME data are prepared (nothing is downloaded)")
    parser.add_argument("--image-size", type=int, default=None,
                        help="side of the square input images, at least 32 (default 64; 32 with --quick)")
    parser.add_argument("--target-macs", type=_common.fraction, default=0.5,
                        help="MACs budget of the pruned model, as a fraction of the original's")
    parser.add_argument("--warmup", type=_common.count, default=None,
                        help="AMC episodes of random exploration (default 20; 3 with --quick)")
    parser.add_argument("--episodes", type=_common.count, default=None,
                        help="AMC learning episodes after the warm-up (default 40; 3 with --quick)")
    parser.add_argument("--train-epochs", type=_common.count, default=None,
                        help="epochs of training before the search (default 8, or 0 with --weights; "
                             "1 with --quick)")
    parser.add_argument("--finetune-epochs", type=_common.count, default=None,
                        help="epochs of fine-tuning after pruning (default 3; 1 with --quick)")
    parser.add_argument("--calib-images", type=int, default=None,
                        help="training images for the least-squares reconstruction (default 256; 128 with --quick)")
    parser.add_argument("--learning-rate", type=_common.positive_float, default=2e-3,
                        help="Adam learning rate of the training before the search (fine-tuning uses a fifth)")
    parser.add_argument("--threads", type=int, default=2, help="LiteRT threads for timing")
    parser.add_argument("--bench-rounds", type=int, default=None,
                        help="alternating timing rounds (default 5; 2 with --quick)")
    parser.add_argument("--bench-runs", type=int, default=None,
                        help="timed inferences per model and round (default 50; 10 with --quick)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the data split, training and the search")
    parser.add_argument("--resume", action="store_true", help="continue the AMC search already in --out/amc")
    parser.add_argument("--quick", action="store_true",
                        help="a short run for trying the script out: 32x32 input, small alpha, 3+3 episodes, "
                             "1 epoch of training and fine-tuning")
    parser.add_argument("--out", default="amc_mobilenet_out", help="output folder (created if missing)")
    return parser


def _fill_defaults(args):
    """Replace the None defaults by the full or --quick values."""
    quick = args.quick
    defaults = {
        "alpha": (0.35 if args.arch == "mobilenet_v2" else 0.25) if quick else 1.0,
        "image_size": 32 if quick else 64,
        "warmup": 3 if quick else 20,
        "episodes": 3 if quick else 40,
        "train_epochs": 1 if quick else (0 if args.weights else 8),
        "finetune_epochs": 1 if quick else 3,
        "calib_images": 128 if quick else 256,
        "bench_rounds": 2 if quick else 5,
        "bench_runs": 10 if quick else 50,
    }
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.image_size < 32:
        raise _common.UsageError(f"--image-size must be at least 32 for keras.applications, got {args.image_size}")
    if args.weights is not None and not os.path.isfile(args.weights):
        raise _common.UsageError(f"--weights {args.weights!r} is not a file")
    for name in ("calib_images", "threads", "bench_rounds", "bench_runs"):
        if getattr(args, name) < 1:
            raise _common.UsageError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    return args


def build_model(arch, alpha, image_size, classes, weights):
    """The keras.applications model, random or from ``weights``; never downloads."""
    from tfmc._keras import keras

    constructor = {"mobilenet": keras.applications.MobileNet, "mobilenet_v2": keras.applications.MobileNetV2}[arch]
    try:
        model = constructor(input_shape=(image_size, image_size, 3), alpha=alpha, weights=None, classes=classes)
    except ValueError as exc:
        raise _common.UsageError(f"cannot build {arch} with alpha {alpha}: {exc}") from None
    # keras.applications sets BatchNormalization momentum to 0.999, meant for
    # ImageNet's long runs: after the few hundred steps of a small dataset
    # the moving statistics would still be mostly their initial values and
    # the model would score near chance in inference mode. 0.9 lets them
    # follow the training data; it changes nothing else (and nothing at
    # inference), so weights files for the original architecture still fit.
    config = model.get_config()
    for layer in config["layers"]:
        if layer["class_name"] == "BatchNormalization":
            layer["config"]["momentum"] = 0.9
    model = keras.Model.from_config(config)
    if weights:
        try:
            model.load_weights(weights)
        except Exception as exc:  # h5py / keras raise many kinds here
            raise _common.UsageError(
                f"--weights {weights!r} does not fit {arch} alpha {alpha} at {image_size}x{image_size} with "
                f"{classes} classes: {str(exc).splitlines()[0]}") from None
    return model


def main(argv=None):
    args = _fill_defaults(build_parser().parse_args(argv))
    import tfmc
    from tfmc import amc, data, export, io, train
    from tfmc.pipeline import tflite_accuracy, time_alternating

    log = _common.timed_logger()

    out = _common.make_out_dir(args.out)
    dataset = _common.load_dataset(args, log, channels=3)
    model = build_model(args.arch, args.alpha, args.image_size, dataset.num_classes, args.weights)
    data.check_fits(dataset, model, classes=True)
    log(f"{model.name} alpha {args.alpha}: {tfmc.count_macs(model):,} MACs, {tfmc.count_params(model):,} params")

    if args.train_epochs:
        log(f"training for {args.train_epochs} epoch(s)")
        model, _ = train.fit(model, dataset.x_train, dataset.y_train, epochs=args.train_epochs,
                             learning_rate=args.learning_rate, validation=(dataset.x_val, dataset.y_val),
                             seed=args.seed)
    io.save_model(model, os.path.join(out, "original.keras"))
    accuracy_original = train.accuracy(model, dataset.x_test, dataset.y_test)
    log(f"original test accuracy {accuracy_original:.4f}")

    calib = dataset.x_train[: args.calib_images]
    log(f"AMC search to {args.target_macs:.0%} of the MACs ({args.warmup} warm-up + {args.episodes} episodes)")
    try:
        search = amc.search(model, (dataset.x_val, dataset.y_val), target_macs=args.target_macs, calib_data=calib,
                            episodes=args.episodes, warmup=args.warmup, out_dir=os.path.join(out, "amc"),
                            resume=args.resume, seed=args.seed, method="ddpg")
    except ValueError as exc:  # infeasible budget, no prunable group, a folder holding another search
        raise _common.UsageError(str(exc)) from None
    log(f"best policy: episode {search.best_episode}, validation accuracy {search.best_accuracy:.4f}")

    reconstructed = tfmc.prune(model, search.policy, calib_data=calib)
    accuracy_reconstructed = train.accuracy(reconstructed, dataset.x_test, dataset.y_test)
    log(f"pruned with reconstruction: test accuracy {accuracy_reconstructed:.4f}; "
        f"fine-tuning {args.finetune_epochs} epoch(s)")
    pruned = reconstructed
    if args.finetune_epochs:
        pruned, _ = train.fit(reconstructed, dataset.x_train, dataset.y_train, epochs=args.finetune_epochs,
                              learning_rate=args.learning_rate / 5, validation=(dataset.x_val, dataset.y_val),
                              seed=args.seed)
    io.save_model(pruned, os.path.join(out, "pruned.keras"))

    log("exporting float32 .tflite files (each checked in LiteRT)")
    exported = {}
    for label, keras_model in (("original", model), ("pruned", pruned)):
        exported[label] = export.to_tflite(keras_model, os.path.join(out, f"{label}_float32.tflite"), mode="float32",
                                           representative_data=dataset.x_val[:16])
    log(f"timing with tflite_bench on this machine ({args.threads} threads, {args.bench_rounds} rounds of "
        f"{args.bench_runs} runs)")
    latency = time_alternating([r.path for r in exported.values()], threads=args.threads, rounds=args.bench_rounds,
                               runs=args.bench_runs)

    rows, results = [], {"arch": args.arch, "alpha": args.alpha, "image_size": args.image_size,
                         "data": dataset.name, "target_macs": args.target_macs,
                         "best_episode": search.best_episode, "best_val_accuracy": search.best_accuracy,
                         "reconstructed_accuracy": accuracy_reconstructed, "models": {}}
    for label, keras_model in (("original", model), ("pruned", pruned)):
        result = exported[label]
        figures = {
            "keras_accuracy": train.accuracy(keras_model, dataset.x_test, dataset.y_test) if label == "pruned"
            else accuracy_original,
            "tflite_accuracy": tflite_accuracy(result.path, dataset.x_test, dataset.y_test, args.threads),
            "macs": tfmc.count_macs(keras_model),
            "params": tfmc.count_params(keras_model),
            "tflite_bytes": result.size_bytes,
            "latency_ms": latency[result.path],
            "keras_path": os.path.join(out, f"{label}.keras"),
            "tflite_path": result.path,
        }
        results["models"][label] = figures
    base = results["models"]["original"]
    for label, figures in results["models"].items():
        rows.append((label, f"{figures['keras_accuracy']:.4f}", f"{figures['tflite_accuracy']:.4f}",
                     f"{figures['macs']:,}", f"{figures['macs'] / base['macs']:.3f}", f"{figures['params']:,}",
                     f"{figures['tflite_bytes']:,}", f"{figures['latency_ms']:.3f}",
                     f"{base['latency_ms'] / figures['latency_ms']:.2f}x"))
    table = _common.markdown_table(
        ("model", "test acc (Keras)", "test acc (.tflite)", "MACs", "MACs ratio", "params", ".tflite bytes",
         "latency ms", "speedup"), rows)
    _common.write_results(out, results, table)
    print(table)
    print(f"\nAMC best episode {search.best_episode} (validation accuracy {search.best_accuracy:.4f}); "
          f"pruned before fine-tuning: test accuracy {accuracy_reconstructed:.4f}. Files in {out}")
    log("done")
    return 0


if __name__ == "__main__":
    sys.exit(_common.run_main("amc_mobilenet.py", main))
