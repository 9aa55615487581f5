"""Every command that reads data takes --data / --data-dir through one helper and fits the images to the model."""
import argparse
import os

import pytest

import tiny_models
from tfmc import amc, cli, data, io  # noqa: F401  amc first: tf-agents prints a Gym notice on import


def _subparsers():
    parser = cli.build_parser()
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


def test_the_commands_that_read_data_take_the_helpers_arguments():
    reference = {a.dest: a for a in data.add_data_arguments(argparse.ArgumentParser())._actions}
    commands = _subparsers()
    reading = sorted(name for name, p in commands.items() if any("--data" in a.option_strings for a in p._actions))
    assert reading == ["demo", "export", "prune", "quantize"]
    for name in reading:
        actions = {a.dest: a for a in commands[name]._actions}
        assert actions["data_dir"].option_strings == ["--data-dir"]
        assert actions["data_dir"].help == reference["data_dir"].help, name
        assert actions["data"].help.endswith(reference["data"].help.split(": ", 1)[1]) or name == "demo", name
    assert commands["demo"]._option_string_actions["--data"].choices == ["digits", "fashion_mnist"]


@pytest.fixture(scope="module")
def grey_models(tmp_path_factory):
    """A 12 x 12 x 1 model with ten outputs and one with three; digits are 8 x 8 x 3 with ten classes."""
    folder = tmp_path_factory.mktemp("models")
    return (io.save_model(tiny_models.chain_cnn(input_shape=(12, 12, 1)), folder / "ten.keras"),
            io.save_model(tiny_models.chain_cnn(input_shape=(12, 12, 1), classes=3), folder / "three.keras"))


def test_prune_and_export_read_digits_at_the_models_size_and_channels(grey_models, tmp_path):
    ten, _ = grey_models
    assert cli.main(["prune", ten, "--ratios", "0.5", "--data", "digits", "--out", str(tmp_path / "p.keras")]) == 0
    assert io.load_model(str(tmp_path / "p.keras")).input_shape == (None, 12, 12, 1)
    assert cli.main(["export", ten, "--mode", "int8", "--data", "digits", "--calib-images", "20",
                     "--out", str(tmp_path / "m.tflite")]) == 0
    from tflite_bench.host import load_interpreter

    assert load_interpreter(str(tmp_path / "m.tflite"), threads=1).get_input_details()[0]["shape"].tolist() == [1, 12, 12, 1]


@pytest.mark.parametrize("argv", [
    ["prune", "{model}", "--target-macs", "0.5", "--data", "digits", "--out", "{out}"],
    ["prune", "{model}", "--ratios", "0.5", "--gradual-epochs", "1", "--data", "digits", "--out", "{out}.keras"],
    ["quantize", "{model}", "--target-bops", "0.6", "--data", "digits", "--out", "{out}"],
])
def test_training_commands_resize_and_convert_before_they_check_the_classes(grey_models, tmp_path, capsys, argv):
    # The class count is checked after the shape: this message means the 8 x 8 x 3 digits were loaded at 12 x 12 x 1.
    _, three = grey_models
    argv = [a.format(model=three, out=tmp_path / "out") for a in argv]
    assert cli.main(argv) == 2
    assert capsys.readouterr().err.strip() == (f"tfmc {argv[0]}: error: data 'digits' has 10 classes, but the model "
                                               "outputs 3")
    assert os.listdir(tmp_path) == []
