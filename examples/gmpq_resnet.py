"""Mixed-precision quantization of a small ResNet with GMPQ, QAT and LiteRT export.

What it does, in order:

1. Loads the data (``--data``; the built-in scikit-learn digits by default)
   at ``--image-size``.
2. Builds a small ResNet in this script: a stem convolution, then
   ``--stages`` stages of ``--blocks`` basic residual blocks (two 3x3
   convolutions with BatchNorm, joined to the block's input by an ``Add``;
   a strided 1x1 projection where the shape changes), global average
   pooling and a Dense classifier producing logits. The first stage has
   ``--width`` channels and each later stage doubles it. It trains the
   model for ``--train-epochs``.
3. Searches a bit width per Conv2D / Dense layer with GMPQ
   (``tfmc.gmpq.search``): a differentiable supernet that keeps the float
   model's Grad-CAM attribution, learning on ``--search-fraction`` of the
   training images, under ``--target-bops`` (a fraction of the model's
   8-bit BOPs). ``--space litert`` searches what LiteRT executes (weights 4
   or 8 bits, activations 8); ``--space gmpq`` is the paper's space (2, 3, 4
   or 6 bits for weights and activations), simulated only.
4. Quantization-aware training with those widths (``tfmc.quantize``, then
   ``tfmc.train.fit(..., copy=False)``) for ``--qat-epochs``.
5. Exports three .tflite files with ``tfmc.export.to_tflite``, each checked
   in LiteRT: the float model (float32), the QAT model (mode "qat") and the
   float model quantized after training from the policy (mode "mixed": int4
   weights where the policy asks for 4 bits or fewer, int8 elsewhere, int8
   activations calibrated on training images). Widths LiteRT cannot run are
   rounded up and the export notes say so; a QAT model with activations
   below 8 bits (space gmpq) cannot be converted at all, which the table
   reports instead of a file.
6. Prints test accuracy (Keras and the .tflite itself), BOPs, packed weight
   size and .tflite size for each.

Output folder (``--out``):
  float.keras, qat.keras                the float and the QAT model
  bit_policy.json                       the searched BitPolicy (editable; ``tfmc export --bits``)
  float_float32.tflite, qat_qat.tflite, float_mixed.tflite
  summary.md, results.json              the table printed at the end, and its numbers

Commands:
  python examples/gmpq_resnet.py --quick --out gmpq_quick           # well under a minute on 2 CPU cores
  python examples/gmpq_resnet.py --target-bops 1.0 --search-fraction 0.1 --out gmpq_run
  python examples/gmpq_resnet.py --space gmpq --target-bops 0.3 --out gmpq_paper_space
  python examples/gmpq_resnet.py --data tfds:cifar10 --data-dir /data/tfds --width 32 --blocks 2 \\
      --train-epochs 30 --out gmpq_cifar

Bad input prints one line and exits with code 2.
"""
import argparse
import os
import sys

import _common

SPACES = ("litert", "gmpq")


def build_parser():
    parser = argparse.ArgumentParser(
        prog="gmpq_resnet.py", description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--data", default="digits",
                        help="digits, tfds:NAME[:SPLIT] (prepared in --data-dir), a folder of class sub-folders "
                             "of images, or an .npz with arrays x and y")
    parser.add_argument("--data-dir", default=None, help="where tfds:NAME data are prepared (nothing is downloaded)")
    parser.add_argument("--image-size", type=int, default=None,
                        help="side of the square input images (default 32; 16 with --quick)")
    parser.add_argument("--width", type=int, default=None,
                        help="channels of the first stage; each later stage doubles them")
    parser.add_argument("--stages", type=int, default=3, help="resolution stages (each after the first halves the size)")
    parser.add_argument("--blocks", type=int, default=None,
                        help="residual blocks per stage (default 2; 1 with --quick)")
    parser.add_argument("--train-epochs", type=_common.count, default=None,
                        help="epochs of float training (default 15; 3 with --quick)")
    parser.add_argument("--space", choices=SPACES, default="litert",
                        help="bit-width search space: litert (what LiteRT runs fast: int8, int4 on Dense) or gmpq (the paper's 2-6 bits)")
    parser.add_argument("--target-bops", type=_common.positive_float, default=1.0,
                        help="BOPs budget: a fraction of the model's 8-bit BOPs (<= 1) or absolute BOPs (> 1)")
    parser.add_argument("--search-fraction", type=float, default=0.1,
                        help="share of the training images the search learns on, in (0, 1]")
    parser.add_argument("--search-epochs", type=_common.count, default=None,
                        help="GMPQ search epochs (default 25; 2 with --quick)")
    parser.add_argument("--attribution-weight", type=float, default=20.0,
                        help="lambda, the weight of the attribution loss (0 switches it off)")
    parser.add_argument("--qat-epochs", type=_common.count, default=None,
                        help="epochs of quantization-aware training (default 3; 1 with --quick)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the data split, training and the search")
    parser.add_argument("--quick", action="store_true",
                        help="a short run for trying the script out: 16x16 input, a tiny ResNet, 2 search epochs, "
                             "1 QAT epoch")
    parser.add_argument("--out", default="gmpq_resnet_out", help="output folder (created if missing)")
    return parser


def _fill_defaults(args):
    quick = args.quick
    defaults = {"image_size": 16 if quick else 32, "width": 16, "blocks": 1 if quick else 2,
                "train_epochs": 3 if quick else 15, "search_epochs": 2 if quick else 25,
                "qat_epochs": 1 if quick else 3}
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    for name in ("image_size", "width", "stages", "blocks"):
        if getattr(args, name) < 1:
            raise _common.UsageError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.image_size < 2 ** (args.stages - 1):
        raise _common.UsageError(f"--image-size {args.image_size} is too small for {args.stages} stages "
                                 f"(each after the first halves it); use at least {2 ** (args.stages - 1)}")
    if not 0 < args.search_fraction <= 1:
        raise _common.UsageError(f"--search-fraction must be in (0, 1], got {args.search_fraction}")
    return args


def small_resnet(input_shape, classes, *, width=16, stages=3, blocks=2, seed=0):
    """A ResNet of basic blocks (conv-BN-ReLU-conv-BN + shortcut, Add, ReLU) that ends in logits.

    BatchNorm momentum is 0.9 so the moving statistics catch up within the
    few hundred steps a small dataset gives.
    """
    from tfmc._keras import keras

    layers = keras.layers
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(input_shape, name="image")
    x = layers.Conv2D(width, 3, padding="same", use_bias=False, name="stem")(inputs)
    x = layers.BatchNormalization(momentum=0.9, name="stem_bn")(x)
    x = layers.ReLU(name="stem_relu")(x)
    channels = width
    for stage in range(stages):
        for block in range(blocks):
            name = f"s{stage + 1}b{block + 1}"
            stride = 2 if stage > 0 and block == 0 else 1
            out_channels = width * 2 ** stage
            shortcut = x
            y = layers.Conv2D(out_channels, 3, strides=stride, padding="same", use_bias=False, name=f"{name}_conv1")(x)
            y = layers.BatchNormalization(momentum=0.9, name=f"{name}_bn1")(y)
            y = layers.ReLU(name=f"{name}_relu1")(y)
            y = layers.Conv2D(out_channels, 3, padding="same", use_bias=False, name=f"{name}_conv2")(y)
            y = layers.BatchNormalization(momentum=0.9, name=f"{name}_bn2")(y)
            if stride != 1 or out_channels != channels:
                shortcut = layers.Conv2D(out_channels, 1, strides=stride, use_bias=False, name=f"{name}_proj")(x)
                shortcut = layers.BatchNormalization(momentum=0.9, name=f"{name}_proj_bn")(shortcut)
            x = layers.Add(name=f"{name}_add")([y, shortcut])
            x = layers.ReLU(name=f"{name}_relu")(x)
            channels = out_channels
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = layers.Dense(classes, name="logits")(x)
    return keras.Model(inputs, outputs, name="small_resnet")


def main(argv=None):
    args = _fill_defaults(build_parser().parse_args(argv))
    import tfmc
    from tfmc import bops, export, gmpq, io, train
    from tfmc.pipeline import tflite_accuracy

    log = _common.timed_logger()

    out = _common.make_out_dir(args.out)
    dataset = _common.load_dataset(args, log)
    model = small_resnet(dataset.input_shape, dataset.num_classes, width=args.width, stages=args.stages,
                         blocks=args.blocks, seed=args.seed)
    log(f"small ResNet ({args.stages} stages x {args.blocks} blocks, width {args.width}): "
        f"{tfmc.count_macs(model):,} MACs, {tfmc.count_params(model):,} params; training {args.train_epochs} epoch(s)")
    if args.train_epochs:
        model, _ = train.fit(model, dataset.x_train, dataset.y_train, epochs=args.train_epochs, learning_rate=3e-3,
                             validation=(dataset.x_val, dataset.y_val), seed=args.seed)
    io.save_model(model, os.path.join(out, "float.keras"))
    accuracy_float = train.accuracy(model, dataset.x_test, dataset.y_test)
    log(f"float test accuracy {accuracy_float:.4f}")

    log(f"GMPQ search ({args.space} space) on {args.search_fraction:.0%} of the training images, "
        f"{args.search_epochs} epoch(s), target {args.target_bops:g}")
    try:
        found = gmpq.search(model, dataset, target_bops=args.target_bops, space=args.space,
                            search_fraction=args.search_fraction, epochs=args.search_epochs,
                            attribution_weight=args.attribution_weight, seed=args.seed, verbose=True)
    except ValueError as exc:  # a target below the smallest candidates, a bad fraction
        raise _common.UsageError(str(exc)) from None
    policy = found.policy
    policy.to_json(os.path.join(out, "bit_policy.json"))
    log(f"search took {found.search_seconds:.1f} s: {found.achieved_bops:,} BOPs of a {found.target_bops:,} target "
        f"({found.achieved_bops / found.int8_bops:.3f} of 8-bit)")
    for name, bits in policy.items():
        print(f"  {name:16s} weights {bits.weight_bits:2d} bits, activations {bits.activation_bits:2d} bits",
              file=sys.stderr)

    log(f"quantization-aware training, {args.qat_epochs} epoch(s)")
    qat = tfmc.quantize(model, policy)
    if args.qat_epochs:
        train.fit(qat, dataset.x_train, dataset.y_train, epochs=args.qat_epochs, learning_rate=2e-4,
                  validation=(dataset.x_val, dataset.y_val), seed=args.seed, copy=False)
    io.save_model(qat, os.path.join(out, "qat.keras"))
    accuracy_qat = train.accuracy(qat, dataset.x_test, dataset.y_test)
    log(f"QAT test accuracy {accuracy_qat:.4f}; exporting .tflite files (each checked in LiteRT)")

    representative = dataset.x_train[:200]
    bops_int8 = tfmc.count_bops(model, bops.uniform_policy(model, 8, 8))
    entries = [
        ("float", model, "float32", None, None, accuracy_float, tfmc.count_bops(model), bops.packed_size_bytes(model)),
        ("QAT", qat, "qat", policy, None, accuracy_qat, tfmc.count_bops(model, policy),
         bops.packed_size_bytes(model, policy)),
        ("mixed PTQ", model, "mixed", policy, representative, accuracy_float, tfmc.count_bops(model, policy),
         bops.packed_size_bytes(model, policy)),
    ]
    results = {"data": dataset.name, "space": args.space, "target_bops": found.target_bops,
               "achieved_bops": found.achieved_bops, "int8_bops": bops_int8,
               "search_seconds": found.search_seconds, "policy": {name: bits.as_dict() for name, bits in policy.items()},
               "models": {}}
    rows = []
    for label, keras_model, mode, export_policy, rep, keras_accuracy, model_bops, packed in entries:
        path = os.path.join(out, f"{'qat' if mode == 'qat' else 'float'}_{mode}.tflite")
        figures = {"mode": mode, "keras_accuracy": keras_accuracy, "bops": model_bops, "packed_bytes": packed,
                   "tflite_path": None, "tflite_bytes": None, "tflite_accuracy": None, "export_error": None,
                   "changed": {}}
        try:
            exported = export.to_tflite(keras_model, path, mode=mode, policy=export_policy, representative_data=rep)
        except export.ExportError as exc:
            figures["export_error"] = str(exc)
            log(f"{label}: not exported: {exc}")
        else:
            figures.update(tflite_path=exported.path, tflite_bytes=exported.size_bytes, changed=exported.changed,
                           tflite_accuracy=tflite_accuracy(exported.path, dataset.x_test, dataset.y_test))
            log(f"{os.path.basename(path)}: {exported.size_bytes:,} bytes; {exported.agreement}")
            for layer, notes in exported.changed.items():
                log(f"  {layer}: {'; '.join(notes)}")
        results["models"][label] = figures
        rows.append((label, mode, f"{keras_accuracy:.4f}",
                     "-" if figures["tflite_accuracy"] is None else f"{figures['tflite_accuracy']:.4f}",
                     f"{model_bops:,}", f"{model_bops / bops_int8:.3f}", f"{packed:,}",
                     "not exported" if figures["tflite_bytes"] is None else f"{figures['tflite_bytes']:,}"))
    table = _common.markdown_table(
        ("model", "export mode", "test acc (Keras)", "test acc (.tflite)", "BOPs", "BOPs / 8-bit", "packed bytes",
         ".tflite bytes"), rows)
    _common.write_results(out, results, table)
    print(table)
    print(f"\nBOPs count float layers at 32 x 32 bits; packed bytes = parameters x their bits / 8. Files in {out}")
    log("done")
    return 0


if __name__ == "__main__":
    sys.exit(_common.run_main("gmpq_resnet.py", main))
