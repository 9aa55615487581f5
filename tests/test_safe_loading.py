"""tfmc.io.load_model refuses models that carry code, without running it, in every format and under any name."""
import os
import shutil

import numpy as np
import pytest

import tfmc
from tfmc import cli, io, model_files
from tfmc._keras import keras

L = keras.layers
HINT = "if you trust the file's source, load it with trust_code=True (Python) or --trust-model-code (command line)"


def _lambda_model(marker):
    """A model whose Lambda layer appends to ``marker`` whenever its Python code runs."""
    inp = keras.Input((8, 8, 3))
    x = L.Conv2D(4, 3, name="conv")(inp)
    x = L.Lambda(lambda t, path=str(marker): (open(path, "a").write("ran\n"), t * 2.0)[1], name="doubler")(x)
    return keras.Model(inp, L.Dense(2, name="fc")(L.Flatten()(x)), name="with_lambda")


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """The Lambda model in each format, and the marker its code writes (removed after saving)."""
    root = tmp_path_factory.mktemp("lambda")
    marker = root / "marker.txt"
    model = _lambda_model(marker)
    paths = {"h5": root / "m.h5", "keras": root / "m.keras", "savedmodel": root / "m_savedmodel"}
    for path in paths.values():
        model.save(path)
    shutil.copy(paths["h5"], root / "renamed.keras")  # HDF5 content under a .keras name
    paths["renamed"] = root / "renamed.keras"
    if marker.exists():
        marker.unlink()  # building and saving the model ran the Lambda; loading must not
    return paths, marker


@pytest.mark.parametrize("kind", ["h5", "savedmodel", "keras", "renamed"])
def test_a_lambda_layer_is_refused_without_running_it(saved, kind):
    paths, marker = saved
    path = paths[kind]
    with pytest.raises(tfmc.ModelLoadError) as err:
        io.load_model(path)
    assert str(err.value) == f"{str(path)!r} was not loaded: layer 'doubler' (Lambda) holds Python code that would run; {HINT}"
    assert not marker.exists()


@pytest.mark.parametrize("kind", ["h5", "savedmodel"])
def test_trust_code_loads_the_lambda_model(saved, kind):
    paths, marker = saved
    model = io.load_model(paths[kind], trust_code=True)
    assert model.get_layer("doubler").__class__.__name__ == "Lambda"
    model(np.zeros((1, 8, 8, 3), np.float32))
    assert marker.exists()  # the opt-in really runs the file's code
    marker.unlink()


def test_the_command_line_refuses_with_one_line_and_takes_the_opt_in(saved, capsys):
    paths, marker = saved
    assert cli.main(["profile", str(paths["h5"])]) == 2
    assert capsys.readouterr().err.strip() == (
        f"tfmc profile: error: {str(paths['h5'])!r} was not loaded: layer 'doubler' (Lambda) holds Python code that "
        f"would run; {HINT}")
    assert not marker.exists()
    assert cli.main(["profile", str(paths["h5"]), "--trust-model-code"]) == 0
    assert "| doubler | Lambda |" in capsys.readouterr().out
    marker.unlink(missing_ok=True)


def test_the_format_is_judged_by_content(tmp_path):
    import tiny_models

    model = tiny_models.chain_cnn()
    zipped = io.save_model(model, tmp_path / "chain.keras")
    os.rename(zipped, tmp_path / "chain.bin")
    h5 = io.save_model(model, tmp_path / "chain.h5")
    os.rename(h5, tmp_path / "chain_h5.keras")
    assert model_files.model_format(tmp_path / "chain.bin") == "keras"
    assert model_files.model_format(tmp_path / "chain_h5.keras") == "h5"
    for name in ("chain.bin", "chain_h5.keras"):
        loaded = io.load_model(tmp_path / name)
        np.testing.assert_array_equal(loaded.get_layer("conv1").get_weights()[0], model.get_layer("conv1").get_weights()[0])
    (tmp_path / "noise.keras").write_bytes(b"\x00\x01not a model")
    with pytest.raises(tfmc.ModelLoadError, match=r"^'.*noise.keras' is neither a .keras \(zip\) nor an HDF5 file "
                                                  r"\(it starts with b'\\x00\\x01no'\); expected a .keras/.h5 file or "
                                                  r"a SavedModel folder$"):
        io.load_model(tmp_path / "noise.keras")


class Scale(L.Layer):
    """A custom layer that is not registered with Keras."""

    def call(self, x):
        return x * 3.0


def test_an_unregistered_custom_layer_is_refused_and_loads_when_given(tmp_path):
    inp = keras.Input((4,))
    model = keras.Model(inp, L.Dense(2, name="fc")(Scale(name="scale")(inp)))
    path = tmp_path / "custom.h5"
    model.save(path)
    with pytest.raises(tfmc.ModelLoadError) as err:
        io.load_model(path)
    assert str(err.value) == (f"{str(path)!r} was not loaded: layer 'scale' (Scale) is of a class that is neither "
                              f"Keras' nor registered; {HINT}")
    assert isinstance(io.load_model(path, custom_objects={"Scale": Scale}).get_layer("scale"), Scale)


def test_a_subclassed_savedmodel_is_one_clear_error(tmp_path, capsys):
    class Net(keras.Model):
        def __init__(self):
            super().__init__(name="net")
            self.fc = L.Dense(2)

        def call(self, x):
            return self.fc(x)

    net = Net()
    net(np.zeros((1, 4), np.float32))
    net.save(tmp_path / "net")
    assert cli.main(["profile", str(tmp_path / "net")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"tfmc profile: error: {str(tmp_path / 'net')!r} was not loaded: layer 'net' (Net) is of a class that is "
        f"neither Keras' nor registered; {HINT}")
    with pytest.raises(tfmc.ModelLoadError, match=r"is a subclassed .*; tfmc needs a functional or Sequential model"):
        io.load_model(tmp_path / "net", trust_code=True)


def test_unusable_models_are_one_line_and_exit_2(tmp_path, capsys):
    with pytest.warns(UserWarning, match="has not yet been built"):
        keras.Sequential([L.Dense(2)], name="shapeless").save(tmp_path / "seq.keras")
    assert cli.main(["profile", str(tmp_path / "seq.keras")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"tfmc profile: error: {str(tmp_path / 'seq.keras')!r}: Sequential model 'shapeless' has no known input shape; "
        "build it with an Input layer or input_shape=... so its graph can be analysed")
    a, b = keras.Input((8, 8, 1)), keras.Input((8, 8, 1))
    two = keras.Model([a, b], L.Dense(10)(L.Flatten()(L.Add()([L.Conv2D(8, 3)(a), L.Conv2D(8, 3)(b)]))), name="two")
    path = io.save_model(two, tmp_path / "two.keras")
    assert cli.main(["prune", path, "--ratios", "0.5", "--data", "digits", "--out", str(tmp_path / "p.keras")]) == 2
    assert capsys.readouterr().err.strip() == (
        "tfmc prune: error: model 'two' has 2 inputs; tfmc's data feed models with one image input")
    assert not (tmp_path / "p.keras").exists()
