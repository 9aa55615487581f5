"""`tfmc profile` and `tfmc prune --ratios` on saved models."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import tiny_models
import tfmc
from tfmc import cli
from tfmc._keras import keras


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "chain.keras"
    model = tiny_models.chain_cnn(input_shape=(32, 32, 3))
    model.save(path)
    return path, model


def test_profile_prints_the_table(saved_model, capsys):
    path, model = saved_model
    assert cli.main(["profile", str(path), "--groups"]) == 0
    out = capsys.readouterr().out
    assert f"| **total** | | | {tfmc.count_macs(model):,} |" in out
    assert "| logits | 10 | no: reaches model output of layer 'logits' |" in out


def test_prune_with_float_ratio_writes_a_smaller_model(saved_model, tmp_path, capsys):
    path, model = saved_model
    out_file = tmp_path / "small.keras"
    assert cli.main(["prune", str(path), "--ratios", "0.5", "--out", str(out_file)]) == 0
    small = keras.models.load_model(out_file)
    assert small.get_layer("conv1").filters == 8
    assert tfmc.count_macs(small) < tfmc.count_macs(model)
    assert "saved " + str(out_file) in capsys.readouterr().out


def test_prune_with_policy_file_and_calibration_into_folder(saved_model, tmp_path):
    path, model = saved_model
    policy = tfmc.PrunePolicy({"conv2": 0.5, "conv3": 0.25}, round_to=8).to_json(tmp_path / "policy.json")
    out_dir = tmp_path / "run"
    assert cli.main(["prune", str(path), "--ratios", str(policy), "--data", "digits", "--calib-images", "64", "--out", str(out_dir)]) == 0
    assert sorted(os.listdir(out_dir)) == ["policy.json", "pruned.keras", "summary.md"]
    small = keras.models.load_model(out_dir / "pruned.keras")
    assert (small.get_layer("conv2").filters, small.get_layer("conv3").filters) == (16, 8)
    saved = json.loads((out_dir / "policy.json").read_text())
    assert saved["metadata"]["kept_channels"] == {"conv2": 16, "conv3": 8}
    assert saved["metadata"]["macs"] == tfmc.count_macs(small)


def test_bad_input_is_one_line_and_exit_code_2(saved_model, tmp_path, capsys):
    path, _ = saved_model
    assert cli.main(["prune", str(path), "--ratios", "1.5", "--out", str(tmp_path / "x.keras")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "tfmc prune: error: keep ratio for 'every group' must be in (0, 1], got 1.5"
    assert not (tmp_path / "x.keras").exists()
    assert cli.main(["prune", str(tmp_path / "missing.keras"), "--ratios", "0.5", "--out", str(tmp_path / "y.keras")]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.slow  # starts a Python process that imports TensorFlow: make test runs it, make test-fast does not
def test_console_script_runs(saved_model):
    path, _ = saved_model
    exe = os.path.join(os.path.dirname(sys.executable), "tfmc")
    result = subprocess.run([exe, "profile", str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "| conv1 | Conv2D |" in result.stdout
