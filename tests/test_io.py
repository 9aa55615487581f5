"""tfmc.io.load_model reads a .keras archive into the model tf_keras' own loader builds."""
import zipfile

import numpy as np
import pytest

import tfmc
from tfmc import io
from tfmc._keras import keras

L = keras.layers


def _nested_model():
    """BatchNorm statistics, a shared layer, a nested model and a tfmc layer: every kind of state the loader walks."""
    inner_in = keras.Input((6, 6, 4))
    inner = keras.Model(inner_in, L.BatchNormalization(name="inner_bn")(L.Conv2D(4, 3, padding="same")(inner_in)),
                        name="inner")
    inp = keras.Input((6, 6, 3))
    x = L.ReLU()(L.BatchNormalization(name="stem_bn")(L.Conv2D(8, 3, padding="same", name="stem")(inp)))
    x = L.Conv2D(4, 1, name="mid")(x)
    shared = L.Conv2D(4, 1, name="shared")
    x = shared(inner(shared(x)))
    x = L.GlobalAveragePooling2D()(x)
    model = keras.Model(inp, L.Dense(3, name="fc")(x), name="nested")
    keras.utils.set_random_seed(0)
    for weight in model.weights:  # non-default values everywhere, BatchNorm's moving statistics included
        weight.assign(np.random.default_rng(len(weight.name)).normal(size=weight.shape).astype(np.float32) ** 2)
    return model


def test_a_keras_archive_loads_to_what_tf_keras_loads(tmp_path):
    model = tfmc.prune(_nested_model(), 0.5)  # tfmc's pruned layers inside
    path = io.save_model(model, tmp_path / "m.keras")
    assert set(zipfile.ZipFile(path).namelist()) == {"metadata.json", "config.json", "model.weights.h5"}
    ours = io.load_model(path)
    with keras.utils.custom_object_scope(tfmc._keras.custom_objects()):
        theirs = keras.models.load_model(path, compile=False)
    assert [w.name for w in ours.weights] == [w.name for w in theirs.weights]
    for a, b, original in zip(ours.get_weights(), theirs.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, original)
    assert ours.get_config() == theirs.get_config()
    x = np.random.default_rng(1).normal(size=(2, 6, 6, 3)).astype(np.float32)
    np.testing.assert_array_equal(ours(x, training=False).numpy(), model(x, training=False).numpy())
    assert ours.optimizer is None  # loaded uncompiled, like keras.models.load_model(compile=False)


def test_an_archive_with_assets_is_left_to_tf_keras(tmp_path):
    inp = keras.Input((1,), dtype="string")
    lookup = L.StringLookup(name="lookup")
    lookup.adapt(["cat", "dog", "dog", "fish", "fish", "fish"])  # an adapted vocabulary is saved as an asset
    model = keras.Model(inp, L.Embedding(4, 2, name="embed")(lookup(inp)), name="words")
    path = io.save_model(model, tmp_path / "words.keras")
    assert any(name.startswith("assets/") for name in zipfile.ZipFile(path).namelist())
    loaded = io.load_model(path)
    assert loaded.get_layer("lookup").get_vocabulary() == ["[UNK]", "fish", "dog", "cat"]
    np.testing.assert_array_equal(loaded.get_layer("embed").get_weights()[0], model.get_layer("embed").get_weights()[0])


def test_a_damaged_weights_file_is_a_load_error(tmp_path):
    path = io.save_model(_nested_model(), tmp_path / "m.keras")
    broken = tmp_path / "broken.keras"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(broken, "w") as dst:
        for name in src.namelist():
            dst.writestr(name, src.read(name) if name != "model.weights.h5" else b"not hdf5")
    with pytest.raises(tfmc.errors.ModelLoadError, match=r"could not load .*broken\.keras' as a tf_keras model"):
        io.load_model(broken)
