"""tfmc.models' reference networks (sizes, prunability, argument checks) and bench/reference.py's recipe-keyed cache."""
import json
import os
import sys

import numpy as np
import pytest

import tfmc
from tfmc import models

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench"))

import reference  # noqa: E402

# Counted once with tfmc.count_macs / count_params at the default arguments.
SIZES = [
    (models.mobilenet_v2_small, "mobilenet_v2_small", 9_991_504, 139_226),
    (models.resnet_small, "resnet_small", 20_943_168, 174_850),
    (lambda: models.keras_mobilenet_v2(alpha=0.35), "mobilenetv2_0.35_32", 1_196_592, 423_018),
]
# A recipe for resnet_small that trains in seconds: a narrow network, 300 digits images (resized to
# the model's 28 x 28 x 1), one epoch.
TINY = {"data": "digits", "train_images": 300, "epochs": 1, "batch_size": 64, "model_kwargs": {"widths": [8, 16, 32]}}


@pytest.mark.parametrize("build, name, macs, params", SIZES)
def test_reference_model_sizes_and_pruning(build, name, macs, params):
    model = build()
    assert model.name == name
    assert (tfmc.count_macs(model), tfmc.count_params(model)) == (macs, params)
    assert [group for group in tfmc.channel_groups(model) if group.prunable]
    pruned = tfmc.prune(model, 0.5)
    assert tfmc.count_macs(pruned) < 0.6 * macs
    x = np.random.default_rng(0).random((2, *model.input_shape[1:]), dtype=np.float32)
    assert pruned(x).shape == (2, 10)


def test_mobilenet_v2_small_is_built_of_inverted_residuals_for_grey_28_pixel_images():
    model = models.mobilenet_v2_small()
    assert model.input_shape == (None, 28, 28, 1) and model.output_shape == (None, 10)
    kinds = {type(layer).__name__ for layer in model.layers}
    assert {"DepthwiseConv2D", "Add", "BatchNormalization", "ReLU"} <= kinds
    assert all(layer.max_value == 6.0 for layer in model.layers if type(layer).__name__ == "ReLU")
    assert 5e6 <= tfmc.count_macs(model) <= 30e6


def test_resnet_small_projects_the_shortcut_only_where_the_shape_changes():
    model = models.resnet_small(widths=(8, 8, 16), blocks_per_stage=2)
    projections = sorted(layer.name for layer in model.layers if layer.name.endswith("_proj"))
    # stage 2 halves the resolution, stage 3 also widens; stage 1 and the second blocks keep the shape.
    assert projections == ["stage2_block1_proj", "stage3_block1_proj"]
    assert sum(type(layer).__name__ == "Add" for layer in model.layers) == 6


def test_builds_are_seeded():
    first, second, other = (models.resnet_small(widths=(8, 16, 32), seed=seed) for seed in (3, 3, 4))
    assert all(np.array_equal(a, b) for a, b in zip(first.get_weights(), second.get_weights()))
    assert not np.array_equal(first.get_weights()[0], other.get_weights()[0])


@pytest.mark.parametrize("alpha", [0.3, 1.1, "0.5", True, None])
def test_keras_mobilenet_v2_rejects_an_alpha_outside_0_35_to_1(alpha):
    with pytest.raises(ValueError, match=r"^alpha must be a number from 0\.35 to 1\.0, got "):
        models.keras_mobilenet_v2(alpha=alpha)


def test_keras_mobilenet_v2_rejects_images_smaller_than_32_or_grey():
    for shape in [(28, 28, 3), (32, 32, 1)]:
        with pytest.raises(ValueError, match=r"needs images of at least 32 x 32 x 3, got input_shape \("):
            models.keras_mobilenet_v2(input_shape=shape)


def test_keras_mobilenet_v2_moving_statistics_use_momentum_0_9_unless_told():
    # Keras' 0.999 leaves inference at chance after a short training from scratch (see the docstring).
    model = models.keras_mobilenet_v2(alpha=0.35)
    assert {layer.momentum for layer in model.layers if isinstance(layer, tfmc.models.L.BatchNormalization)} == {0.9}
    with pytest.raises(ValueError, match=r"^bn_momentum must be in \[0, 1\), got 1\.0$"):
        models.keras_mobilenet_v2(bn_momentum=1.0)


def test_recipe_checks_its_fields():
    assert reference.recipe_for("resnet_small", {"epochs": 2})["epochs"] == 2
    assert reference.recipe_for("resnet_small")["epochs"] == reference.RECIPES["resnet_small"]["epochs"]
    changed = reference.recipe_for("keras_mobilenet_v2")
    changed["model_kwargs"]["alpha"] = 1.0
    assert reference.recipe_for("keras_mobilenet_v2")["model_kwargs"] == {"alpha": 0.35}
    with pytest.raises(ValueError, match=r"unknown reference model 'vgg'; expected one of mobilenet_v2_small, "):
        reference.recipe_for("vgg")
    with pytest.raises(ValueError, match=r"unknown recipe fields \['epoch'\]; the fields are data, "):
        reference.recipe_for("resnet_small", {"epoch": 2})
    with pytest.raises(ValueError, match=r"recipe field 'optimizer' must be 'adam' .*got 'sgd'"):
        reference.recipe_for("resnet_small", {"optimizer": "sgd"})


def test_reference_model_trains_once_then_loads_from_the_cache_keyed_by_recipe(tmp_path, monkeypatch):
    model, info = reference.reference_model("resnet_small", cache_dir=tmp_path, recipe=TINY, verbose=0)
    assert not info["cached"] and info["train_images"] == 300 and info["recipe"]["epochs"] == 1
    p = info["test_accuracy"]
    assert info["test_standard_error"] == pytest.approx(np.sqrt(p * (1 - p) / info["test_images"]))
    assert (info["macs"], info["params"]) == (2_364_864, 20_146)
    assert info["train_seconds"] > 0
    entries = sorted(os.listdir(tmp_path))
    stem = f"resnet_small-{info['cache_key']}"
    assert entries == [f"{stem}.json", f"{stem}.keras"]  # no temporaries left behind
    with open(tmp_path / f"{stem}.json") as f:
        assert json.load(f) == {k: v for k, v in info.items() if k != "cached"}

    def no_training(*args, **kwargs):
        raise AssertionError("a cached reference model was trained again")

    monkeypatch.setattr(reference.train, "fit", no_training)
    loaded, loaded_info = reference.reference_model("resnet_small", cache_dir=tmp_path, recipe=TINY, verbose=0)
    assert loaded_info["cached"]
    assert {k: v for k, v in loaded_info.items() if k != "cached"} == {k: v for k, v in info.items() if k != "cached"}
    assert len(loaded.get_weights()) == len(model.get_weights())
    assert all(np.array_equal(a, b) for a, b in zip(loaded.get_weights(), model.get_weights()))

    # Any change to the recipe or to the architecture gives another entry, so nothing stale is loaded.
    tiny = reference.recipe_for("resnet_small", TINY)
    keys = {
        reference.cache_key("resnet_small", reference.recipe_for("resnet_small", dict(TINY, learning_rate=1e-3)),
                            models.resnet_small(widths=(8, 16, 32))),
        reference.cache_key("resnet_small", reference.recipe_for("resnet_small", dict(TINY, seed=1)),
                            models.resnet_small(widths=(8, 16, 32))),
        reference.cache_key("resnet_small", tiny, models.resnet_small(widths=(8, 8, 16))),
        reference.cache_key("mobilenet_v2_small", dict(tiny, model_kwargs={}), models.mobilenet_v2_small()),
    }
    assert len(keys) == 4 and info["cache_key"] not in keys
    assert reference.cache_key("resnet_small", tiny, models.resnet_small(widths=(8, 16, 32))) == info["cache_key"]
    assert reference.cache_paths("resnet_small", info["cache_key"], tmp_path) == (
        str(tmp_path / f"{stem}.keras"), str(tmp_path / f"{stem}.json"))


def test_reference_command_without_the_data_files_exits_2_with_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["reference.py", "resnet_small", "--data-dir", str(tmp_path / "none"),
                                      "--cache-dir", str(tmp_path / "cache")])
    with pytest.raises(SystemExit) as exit_info:
        reference.main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("reference.py: error: ") and "Fashion-MNIST" in err and err.count("\n") == 1
    assert not os.path.exists(tmp_path / "cache")
