"""GMPQ searches under size / latency budgets and the precision-table / quantize commands (end to end)."""
import numpy as np
import pytest

import tfmc  # noqa: F401
from tfmc import cli, gmpq, io
from tfmc.gmpq.costs import PrecisionTable
from test_precision_costs import CHAIN_TABLE, INT8_BYTES, INT8_MS
from tiny_models import chain_cnn, images


@pytest.fixture(scope="module")
def search_data():
    rng = np.random.default_rng(0)
    return images(32), rng.integers(0, 10, 32)


def test_a_search_meets_a_size_budget_exactly_where_only_int4_dense_fits(search_data):
    model = chain_cnn()
    target = INT8_BYTES - 420  # only both dense layers at int4 (-320, -100) fit
    result = gmpq.search(model, search_data, target_bytes=target, table=CHAIN_TABLE, search_fraction=1.0, epochs=1,
                         batch_size=16, verbose=False)
    assert {n: (b.weight_bits, b.activation_bits) for n, b in result.policy.items()} == {
        "conv1": (8, 8), "conv2": (8, 8), "conv3": (8, 8), "fc1": (4, 8), "logits": (4, 8)}
    assert result.measure == "bytes" and result.achieved == target == result.target
    assert result.policy.metadata["achieved"] == target and result.policy.metadata["float_layers"] == []


def test_a_search_under_a_latency_budget_is_never_slower_than_int8(search_data):
    model = chain_cnn()
    result = gmpq.search(model, search_data, target_ms=INT8_MS - 0.125, table=CHAIN_TABLE, search_fraction=1.0,
                         epochs=1, batch_size=16, verbose=False)
    assert result.policy["fc1"].weight_bits == 4  # the only saving of 0.125 ms
    assert all(result.policy[n].weight_bits == 8 for n in ("conv1", "conv2", "conv3"))
    assert result.achieved == CHAIN_TABLE.cost("ms", {n: b.weight_bits for n, b in result.policy.items()})
    assert result.achieved <= INT8_MS - 0.125
    relaxed = gmpq.search(model, search_data, target_ms=50.0, table=CHAIN_TABLE, search_fraction=1.0, epochs=1,
                          batch_size=16, verbose=False)
    assert relaxed.target == INT8_MS and relaxed.achieved <= INT8_MS  # float conv1 / logits would be slower
    assert any("capped at the all-int8" in note for note in relaxed.policy.metadata["rounded"])


def _cli(capsys, *argv):
    code = cli.main([*map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def chain_path(tmp_path_factory):
    return io.save_model(chain_cnn(), tmp_path_factory.mktemp("m") / "chain.keras")


def test_precision_table_command_measures_every_layer_and_reads_bytes_from_the_files(chain_path, tmp_path, capsys):
    out = tmp_path / "costs.json"
    code, stdout, _ = _cli(capsys, "precision-table", chain_path, "--out", out, "--runs", 2, "--rounds", 1,
                           "--warmup", 0)
    assert code == 0 and "5 layers ->" in stdout
    table = PrecisionTable.from_json(out)
    assert list(table.layers) == ["conv1", "conv2", "conv3", "fc1", "logits"]
    # conv1: 3x3x3x16 weights + 16 biases: float32 4 bytes each; int8 / int4 weights with int32 biases
    assert table.layers["conv1"]["bytes"] == {"float32": 1792, "float16": 896, "int8": 496, "int4": 280}
    assert all(set(e["ms"]) == {"float32", "float16", "int8", "int4"} and min(e["ms"].values()) > 0
               for e in table.layers.values())
    assert table.rest_bytes == table.metadata["float32_tflite_bytes"] - sum(
        e["bytes"]["float32"] for e in table.layers.values())


def test_quantize_under_a_latency_budget_below_int8_names_the_smallest(chain_path, tmp_path, capsys):
    costs = CHAIN_TABLE.to_json(tmp_path / "costs.json")
    code, _, err = _cli(capsys, "quantize", chain_path, "--target-latency-ms", 1.5, "--cost-table", costs,
                        "--data", "digits", "--out", tmp_path / "o")
    assert code == 2 and "below the smallest achievable 2.6875 ms" in err


def test_quantize_writes_the_deployable_tflite_with_measured_rows(chain_path, tmp_path, capsys):
    from tfmc import data
    from tfmc.pipeline import tflite_accuracy

    costs = CHAIN_TABLE.to_json(tmp_path / "costs.json")
    out = tmp_path / "out"
    code, stdout, err = _cli(capsys, "quantize", chain_path, "--target-bytes", INT8_BYTES - 420, "--cost-table",
                             costs, "--data", "digits", "--out", out, "--search-epochs", 1, "--search-fraction",
                             0.05, "--qat-epochs", 0, "--runs", 2, "--rounds", 1)
    assert code == 0, err
    assert "13,628 bytes of a 13,628 bytes budget (all-int8: 14,048 bytes)" in err
    summary = (out / "summary.md").read_text()
    dataset = data.load_for_model("digits", chain_cnn(), classes=True)
    accuracy = tflite_accuracy(str(out / "model.tflite"), dataset.x_test, dataset.y_test)
    row = next(line for line in summary.splitlines() if line.startswith("| model.tflite (QAT) |"))
    assert row.startswith(f"| model.tflite (QAT) | {accuracy:.4f} | {(out / 'model.tflite').stat().st_size:,} | ")
    assert "| uniform int8 (post-training) |" in summary and "| float32 |" in summary
    assert ("| fc1 | FULLY_CONNECTED | int4 | searched: 4-bit weights stored int4; FULLY_CONNECTED has a fast int4 "
            "kernel (XNNPACK) |") in summary
    assert "| conv2 | CONV_2D | int8 | the only fast choice" in summary
