"""The demo pipeline end to end, in its smallest configuration."""
import json
import os

import pytest

import tfmc
from tfmc import cli
from tfmc._keras import keras
from tfmc.pipeline import DemoConfig, run_demo

# The precision table leaves out float16, which the litert space never offers (a quarter of its conversions).
TINY = DemoConfig(image_size=16, train_epochs=2, amc_warmup=2, amc_episodes=1, calib_images=64, finetune_epochs=1,
                  gmpq_epochs=1, qat_epochs=1, bench_rounds=1, bench_runs=3, precisions=("float32", "int8", "int4"))


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "out"
    return out, run_demo(str(out), config=TINY, seed=0)


def test_demo_writes_models_tflite_files_and_report(demo):
    out, results = demo
    assert {"report.html", "report.md", "original.keras", "pruned.keras", "pruned_qat.keras", "bit_policy.json"} <= set(os.listdir(out))
    assert sorted(os.listdir(out / "tflite")) == [
        "amc_pruned_float32.tflite", "amc_pruned_int8.tflite", "amc_pruned_mixed.tflite", "amc_pruned_qat.tflite",
        "original_float32.tflite",
    ]
    # nothing of the staging folder is left beside the output
    assert [name for name in os.listdir(out.parent) if name != "out"] == []
    assert [row["model"] for row in results["rows"]] == [
        "original, float32", "AMC-pruned, float32", "AMC-pruned, int8", "AMC-pruned + GMPQ bits, QAT",
        "AMC-pruned + GMPQ bits, mixed int4/int8 PTQ",
    ]


def test_demo_pruned_model_meets_the_macs_budget(demo):
    out, results = demo
    original = keras.models.load_model(out / "original.keras")
    pruned = keras.models.load_model(out / "pruned.keras")
    assert tfmc.count_macs(pruned) <= 0.5 * tfmc.count_macs(original)
    rows = results["rows"]
    assert rows[1]["macs"] == tfmc.count_macs(pruned) and rows[0]["macs"] == tfmc.count_macs(original)
    assert rows[2]["tflite_bytes"] < rows[1]["tflite_bytes"] < rows[0]["tflite_bytes"]
    assert all(row["latency_ms"] > 0 for row in rows)
    # the float32 files classify the test split as their Keras models do (one image of 270 may flip on a near tie)
    test = tfmc.data.load("digits", image_size=TINY.image_size, seed=0)
    assert len(test.x_test) == 270
    for row, model in zip(rows[:2], (original, pruned)):
        assert abs(row["accuracy"] - tfmc.train.accuracy(model, test.x_test, test.y_test)) <= 1 / 270, row["model"]
    for row in rows:  # every accuracy is a count of the 270 test images
        assert row["accuracy"] * 270 == pytest.approx(round(row["accuracy"] * 270), abs=1e-6), row["model"]
    policy = json.loads((out / "bit_policy.json").read_text())
    assert rows[3]["bops"] == tfmc.count_bops(pruned, tfmc.BitPolicy.from_config(policy))


def test_demo_report_lists_every_row(demo):
    out, results = demo
    text = (out / "report.md").read_text()
    for row in results["rows"]:
        assert f"| {row['model']} | {100 * row['accuracy']:.2f}% |" in text


def test_demo_refuses_a_foreign_output_folder(tmp_path, capsys):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.txt").write_text("keep me")
    assert cli.main(["demo", "--quick", "--out", str(foreign)]) == 2
    assert "holds files that are not a tfmc demo's" in capsys.readouterr().err
    assert os.listdir(foreign) == ["thesis.txt"] and sorted(os.listdir(tmp_path)) == ["mine"]


def test_demo_unknown_strategy_is_one_line(tmp_path, capsys):
    assert cli.main(["demo", "--strategy", "tpu", "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.strip() == (
        "tfmc demo: error: unknown --strategy 'tpu'; expected one of default, mirrored, multiworker"
    )
    assert not (tmp_path / "o").exists()


def test_demo_data_must_be_a_known_name(tmp_path, capsys):
    with pytest.raises(ValueError, match=r"^the demo runs on digits or fashion_mnist, not 'cifar10'$"):
        run_demo(str(tmp_path / "o"), data="cifar10", config=TINY)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["demo", "--data", "cifar10", "--out", str(tmp_path / "o")])
    assert exit_info.value.code == 2
    assert "argument --data: invalid choice: 'cifar10' (choose from 'digits', 'fashion_mnist')" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_demo_quantizes_only_to_what_litert_runs_fast_and_says_why(demo):
    out, results = demo
    layers = results["layers"]["rows"]
    assert {r["layer"] for r in layers} == {layer.name for layer in keras.models.load_model(out / "pruned.keras").layers
                                            if type(layer).__name__ in ("Conv2D", "DepthwiseConv2D", "Dense")}
    # int4 only where XNNPACK has an int4 kernel; every layer gives a reason
    assert {r["op"] for r in layers if r["weights"] == "int4"} <= {"FULLY_CONNECTED"}
    assert all(r["weights"] in ("int4", "int8", "float32") and r["why"] for r in layers)
    assert "## Which layers of the QAT .tflite became int4, int8 or float, and why" in (out / "report.md").read_text()
    policy = json.loads((out / "bit_policy.json").read_text())["metadata"]
    assert policy["measure"] == "ms" and policy["achieved"] <= policy["int8_cost"]
    # the table measures the config's precisions (int4 only on CONV_2D and FULLY_CONNECTED, LiteRT's int4 ops)
    table = json.loads((out / "precision_table.json").read_text())["layers"]
    assert {kind: {tuple(sorted(e["ms"])) for e in table.values() if e["kind"] == kind} for kind in ("conv", "depthwise",
                                                                                               "dense")} == {
        "conv": {("float32", "int4", "int8")}, "depthwise": {("float32", "int8")}, "dense": {("float32", "int4", "int8")}}
