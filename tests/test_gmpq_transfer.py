"""GMPQ's cross-dataset protocol on a tiny model: a search on one dataset, QAT on another, scored on its test split."""
import os

import numpy as np

from tfmc import bops, data, gmpq
from tfmc._keras import keras
from tfmc.gmpq import cross_dataset
from tfmc.pipeline import tflite_accuracy
from tfmc.policy import BitPolicy
from tfmc.quant import quantize
from tfmc.train import accuracy

L = keras.layers


def small_cnn():
    keras.utils.set_random_seed(0)
    inp = keras.Input((10, 10, 1))
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(inp)
    x = L.Conv2D(12, 3, strides=2, padding="same", activation="relu", name="conv2")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inp, L.Dense(10, name="logits")(x), name="small")


def test_a_policy_searched_on_mnist_is_trained_and_scored_on_digits(tmp_path):
    model = small_cnn()
    proxy = data.load_for_model("mnist_5k", model)  # 28x28 digits resized to the model's 10x10x1
    target = data.load_for_model("digits", model)  # another dataset: QAT and the score read only this one
    before = target.x_train.copy()
    path = str(tmp_path / "policy.tflite")
    found = cross_dataset.transfer(
        model, (proxy.x_train[:64], proxy.y_train[:64]), target,
        search_options=dict(target_bops=1.0, space="litert", search_fraction=1.0, epochs=2, batch_size=16,
                            verbose=False),
        seed=1, qat_epochs=1, qat_images=200, tflite_path=path)
    assert found.search_images == 64 * 2  # the search read the proxy's images only, twice
    assert found.policy.metadata["search_samples"] == 64
    assert bops.count_bops(model, found.policy) <= bops.count_bops(model, bops.uniform_policy(model, 8, 8))
    deployed = found.deployed
    assert deployed.scored_on == cross_dataset.SCORED_TFLITE and deployed.qat_images == 200
    assert deployed.tflite_bytes == os.path.getsize(path)
    # the score is the kept .tflite's accuracy on every image of the target's test split
    assert deployed.accuracy == tflite_accuracy(path, target.x_test, target.y_test, 1)
    np.testing.assert_array_equal(before, target.x_train)


def test_a_policy_with_activations_below_8_bits_is_scored_as_the_keras_qat_model():
    model = small_cnn()
    target = data.load_for_model("digits", model)
    policy = BitPolicy({"conv1": (4, 4), "conv2": (4, 4), "logits": (8, 8)})
    found = gmpq.deploy(model, policy, target, qat_epochs=0, seed=2)
    assert found.scored_on == cross_dataset.SCORED_KERAS and found.tflite_bytes is None
    assert found.qat_images == len(target.x_train)  # qat_images None: all of them
    # without QAT epochs the score is that of the fake-quantized model as tfmc.quantize builds it
    assert found.accuracy == accuracy(quantize(model, policy), target.x_test, target.y_test)
