"""GMPQ's cross-dataset protocol: search the bit policy on a small proxy set, train and score it on the target.

Wang et al., "Generalizable Mixed-Precision Quantization via Attribution Rank
Preservation", ICCV 2021, Sec. 4.1: the policy is searched on a small
dataset (CIFAR-10, or a few ImageNet images), then the network with that
policy is trained with quantization-aware training on the large target
dataset and evaluated on the target's test set. The claim is that the cheap
proxy search finds a policy as good as a search on the target itself.
"""
import dataclasses
import os
import tempfile
import time

from tfmc.data import seeded_subset
from tfmc.errors import UsageError
from tfmc.gmpq.search import search

# What ``accuracy`` was read from.
SCORED_TFLITE = "tflite"  # the exported .tflite in LiteRT
SCORED_KERAS = "keras"  # the fake-quantized Keras model: a policy with activations below 8 bits has no .tflite


@dataclasses.dataclass
class Deployed:
    """A policy trained with QAT on the target's training data and scored on its test split.

    Attributes:
      accuracy: top-1 on the target's test split.
      scored_on: SCORED_TFLITE (the .tflite in LiteRT) or SCORED_KERAS (the QAT model, when the
        policy cannot be exported: activations below 8 bits).
      tflite_bytes: size of the .tflite (None when scored on Keras).
      qat_images: target training images QAT read.
      qat_seconds: wall time of QAT.
    """

    accuracy: float
    scored_on: str
    tflite_bytes: int
    qat_images: int
    qat_seconds: float


@dataclasses.dataclass
class TransferResult:
    """A proxy search and its policy deployed on the target.

    Attributes:
      policy: the searched BitPolicy.
      search_seconds: wall time of the search.
      search_images: images the search read (its samples x epochs): its cost in data.
      deployed: the Deployed scores of the policy on the target.
    """

    policy: object
    search_seconds: float
    search_images: int
    deployed: Deployed


def deploy(model, policy, target, *, qat_epochs=1, qat_images=None, learning_rate=1e-3, batch_size=64, seed=0,
           tflite_path=None, threads=1):
    """Train ``policy`` on ``model`` with QAT on the target's training split, then score it on its test split.

    The score is the exported .tflite's (LiteRT, mode "qat" with the policy);
    a policy LiteRT cannot run (activations below 8 bits, the paper's
    simulated space) is scored as the fake-quantized Keras model, and
    ``scored_on`` says which.

    Args:
      model: the trained float model (not changed).
      policy: a BitPolicy.
      target: a tfmc.data.Dataset at the model's input shape.
      qat_epochs, learning_rate, batch_size: QAT (tfmc.train.fit: Adam, cosine decay).
      qat_images: QAT on a seeded subset of this many training images (None: all of them).
      seed: the subset, QAT's initial state and shuffling.
      tflite_path: where to keep the .tflite (default: a temporary file).
      threads: LiteRT threads for scoring.

    Returns:
      A Deployed.
    """
    from tfmc import export
    from tfmc._keras import keras
    from tfmc.pipeline import tflite_accuracy
    from tfmc.quant import quantize
    from tfmc.train import accuracy, fit

    if qat_epochs < 0 or (qat_images is not None and qat_images < 1):
        raise UsageError(f"qat_epochs must be >= 0 and qat_images >= 1, got {qat_epochs!r} and {qat_images!r}")
    x, y = target.x_train, target.y_train
    if qat_images is not None and qat_images < len(x):
        x, y = seeded_subset(x, y, qat_images, seed)
    keras.utils.set_random_seed(seed)
    tick = time.perf_counter()
    qat = quantize(model, policy)
    if qat_epochs:
        fit(qat, x, y, epochs=qat_epochs, learning_rate=learning_rate, batch_size=batch_size, copy=False, seed=seed)
    seconds = time.perf_counter() - tick
    if any(bits.activation_bits < 8 for _, bits in policy.items()):  # LiteRT's integer kernels read 8-bit inputs
        return Deployed(float(accuracy(qat, target.x_test, target.y_test)), SCORED_KERAS, None, len(x), seconds)
    with tempfile.TemporaryDirectory(prefix="tfmc_deploy_") as scratch:
        path = tflite_path or os.path.join(scratch, "model.tflite")
        export.to_tflite(qat, path, mode="qat", policy=policy)
        return Deployed(float(tflite_accuracy(path, target.x_test, target.y_test, threads)), SCORED_TFLITE,
                        os.path.getsize(path), len(x), seconds)


def transfer(model, proxy, target, *, search_options=None, seed=0, **deploy_options):
    """Search a policy on ``proxy``, then train and score it on ``target`` (the paper's protocol).

    Args:
      model: the float model trained on the target (not changed).
      proxy: the search data: a tfmc.data.Dataset (its training split) or (x, y) arrays at the
        model's input shape (tfmc.data.load_for_model adapts size and channels). Its labels are
        read by the search's cross-entropy through the model's own classifier.
      target: the tfmc.data.Dataset QAT trains on (training split) and the score reads (test split).
      search_options: keyword arguments of tfmc.gmpq.search (budget, space, epochs, lambda, ...).
      seed: the search's seed and QAT's.
      **deploy_options: keyword arguments of ``deploy``.

    Returns:
      A TransferResult.

    Example:
      >>> proxy = tfmc.data.load_for_model("mnist_5k", model)
      >>> target = tfmc.data.load_for_model("fashion_mnist", model)
      >>> found = transfer(model, proxy, target, search_options={"target_bops": 0.3, "space": "gmpq"})
      >>> found.deployed.accuracy  # doctest: +SKIP
    """
    options = dict(search_options or {})
    result = search(model, proxy, seed=seed, **options)
    deployed = deploy(model, result.policy, target, seed=seed, **deploy_options)
    return TransferResult(result.policy, result.search_seconds, result.samples * result.epochs_done, deployed)
