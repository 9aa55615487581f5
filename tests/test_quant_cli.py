"""`tfmc quantize`: applying a bit policy, a short search, and its input errors."""
import json

import pytest

import tfmc  # noqa: F401
from tfmc import cli, io
from tfmc._keras import keras, tf
from tfmc.policy import BitPolicy
from tiny_models import chain_cnn

L = keras.layers


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return io.save_model(chain_cnn(), tmp_path_factory.mktemp("m") / "chain.keras")


def _run(capsys, *argv):
    code = cli.main(["quantize", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_bits_file_is_applied_and_outputs_written(model_path, tmp_path, capsys):
    bits = BitPolicy({"conv1": (8, 8), "conv2": (4, 8)}).to_json(tmp_path / "bits.json")
    out = tmp_path / "out"
    code, stdout, _ = _run(capsys, model_path, "--bits", bits, "--data", "digits", "--out", out, "--qat-epochs", 0)
    assert code == 0
    assert {p.name for p in out.iterdir()} >= {"policy.json", "bits.png", "qat.keras", "summary.md", "attribution.png",
                                              "model.tflite"}
    assert BitPolicy.from_json(out / "policy.json") == BitPolicy({"conv1": (8, 8), "conv2": (4, 8)})
    assert "| model.tflite (QAT) |" in stdout and "packed size (params x bits / 8)" in stdout
    # the user's 4-bit conv2 is what they asked for: stored int4, on LiteRT's reference kernel
    assert ("| conv2 | CONV_2D | int4 | asked by the policy: 4-bit weights stored int4; an int4 CONV_2D runs LiteRT's "
            "reference kernel, slower than int8 |") in stdout
    assert "| conv3 | CONV_2D | float32 | not in the policy: stays float |" in stdout


def test_a_search_writes_a_policy_within_the_target(model_path, tmp_path, capsys):
    out = tmp_path / "out"
    code, _, err = _run(capsys, model_path, "--target-bops", 1.0, "--data", "digits", "--out", out,
                        "--search-epochs", 1, "--search-fraction", 0.05, "--qat-epochs", 0)
    assert code == 0 and "GMPQ search: 100%|" in err and "gmpq epoch" not in err  # one bar, no per-epoch lines
    policy = json.loads((out / "policy.json").read_text())
    assert policy["metadata"]["achieved_bops"] <= policy["metadata"]["target_bops"]
    assert len(json.loads((out / "history.json").read_text())) == 1


def test_a_search_folder_is_resumed_only_when_asked_and_only_with_the_same_inputs(model_path, tmp_path, capsys):
    out = tmp_path / "out"
    common = ("--target-bops", 1.0, "--data", "digits", "--out", out, "--search-fraction", 0.05, "--qat-epochs", 0)
    code, _, err = _run(capsys, model_path, *common, "--search-epochs", 1)
    assert code == 0, err
    assert json.loads((out / "search" / "checkpoint.json").read_text())["epochs_done"] == 1
    code, _, err = _run(capsys, model_path, *common, "--search-epochs", 2)
    assert code == 2 and "already holds a GMPQ search (1 epochs done); resume it (resume=True, --resume)" in err
    code, _, err = _run(capsys, model_path, *common, "--search-epochs", 2, "--resume", "--lambda", 5)
    assert code == 2 and "holds a different GMPQ search (it differs in: attribution_weight); refusing" in err
    code, _, err = _run(capsys, model_path, *common, "--search-epochs", 2, "--resume")
    # the search's bar starts at the checkpoint: epoch 1 of 2 done, so only the second epoch is trained
    assert code == 0 and "GMPQ search:  50%|" in err and "GMPQ search:   0%|" not in err
    assert len(json.loads((out / "history.json").read_text())) == 2
    assert (out / "search" / "history.jsonl").read_text().count("\n") == 2


def test_keep_ends_holds_stem_and_classifier(model_path, tmp_path, capsys):
    out = tmp_path / "out"
    code, _, err = _run(capsys, model_path, "--target-bops", 0.4, "--space", "gmpq", "--keep-ends", 8, "--data",
                        "digits", "--out", out, "--search-epochs", 1, "--search-fraction", 0.05, "--qat-epochs", 0,
                        "--random-shift", 2)
    assert code == 0, err
    policy = BitPolicy.from_json(out / "policy.json")
    ends = [(policy.layers[n].weight_bits, policy.layers[n].activation_bits) for n in ("conv1", "logits")]
    assert ends == [(8, 8), (8, 8)]
    metadata = json.loads((out / "policy.json").read_text())["metadata"]
    assert metadata["achieved_bops"] <= metadata["target_bops"] and metadata["random_shift"] == 2


def test_a_negative_random_shift_is_a_usage_error(model_path, tmp_path, capsys):
    code, _, err = _run(capsys, model_path, "--target-bops", 1.0, "--data", "digits", "--out", tmp_path / "o",
                        "--random-shift", -1)
    assert code == 2 and "random_shift must be a whole number of pixels >= 0, got -1" in err


def test_bits_outside_the_range_are_a_usage_error(model_path, tmp_path, capsys):
    path = tmp_path / "bits.json"
    path.write_text(json.dumps({"kind": "bits", "layers": {"conv1": {"weight_bits": 1, "activation_bits": 8}}}))
    code, _, err = _run(capsys, model_path, "--bits", path, "--data", "digits", "--out", tmp_path / "o")
    assert code == 2
    assert "error: --bits" in err and "layer 'conv1': weight_bits must be in 2..16, got 1" in err


def test_unknown_layer_names_are_a_usage_error(model_path, tmp_path, capsys):
    bits = BitPolicy({"conv7": (4, 8)}).to_json(tmp_path / "bits.json")
    code, _, err = _run(capsys, model_path, "--bits", bits, "--data", "digits", "--out", tmp_path / "o")
    assert code == 2 and "names layers not in model 'chain': ['conv7']" in err


def test_a_target_below_the_minimum_names_the_minimum(model_path, tmp_path, capsys):
    code, _, err = _run(capsys, model_path, "--target-bops", 0.4, "--data", "digits", "--out", tmp_path / "o")
    assert code == 2
    # litert minimum: the convs' 442,368 MACs x 8 x 8 bits + the dense layers' 840 MACs x 4 x 8 = 28,338,432
    assert "is below the minimum 28,338,432 BOPs (0.999 of 8-bit) that the smallest candidates of space 'litert' allow" in err


def test_a_model_without_conv_layers_cannot_be_searched(tmp_path, capsys):
    inp = keras.Input((16, 16, 3))
    model = keras.Model(inp, L.Dense(10, name="fc")(L.Flatten()(inp)), name="flat")
    path = io.save_model(model, tmp_path / "flat.keras")
    code, _, err = _run(capsys, path, "--target-bops", 0.6, "--data", "digits", "--out", tmp_path / "o")
    assert code == 2 and "GMPQ attribution needs a convolutional layer" in err and "model 'flat' has none" in err
