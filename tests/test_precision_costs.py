"""Precision tables (per-layer bytes and ms at each precision LiteRT runs), budgets in bytes / ms, and the reasons given."""
import json

import pytest

import tfmc  # noqa: F401
from tfmc import gmpq
from tfmc.errors import BudgetError
from tfmc.gmpq import explain
from tfmc.gmpq.costs import PrecisionTable, precision_of
from tfmc.gmpq.search import FLOAT_BITS, resolve_cost_target, round_to_table
from tiny_models import chain_cnn, depthwise_cnn


def _layer(kind, ms, size):
    precisions = ("float32", "float16", "int8", "int4")[:len(ms)]
    return {"kind": kind, "ms": dict(zip(precisions, ms)), "bytes": dict(zip(precisions, size))}


# A table of chain_cnn with round numbers: int4 CONV_2D 4x slower than int8 (as measured here), int4
# FULLY_CONNECTED faster; bytes are params x bits / 8 plus 32-bit biases.
CHAIN_TABLE = PrecisionTable({
    "conv1": _layer("conv", (1.0, 1.0, 0.5, 2.0), (1792, 896, 496, 280)),
    "conv2": _layer("conv", (2.0, 2.0, 1.0, 4.0), (13920, 6960, 3552, 1824)),
    "conv3": _layer("conv", (2.0, 2.0, 1.0, 4.0), (27776, 13888, 7040, 3584)),
    "fc1": _layer("dense", (0.5, 0.5, 0.25, 0.125), (2640, 1320, 720, 400)),
    "logits": _layer("dense", (0.25, 0.25, 0.125, 0.0625), (840, 420, 240, 140)),
}, rest_bytes=2000, metadata={"target": "host"})
INT8_MS = 0.5 + 1.0 + 1.0 + 0.25 + 0.125  # 2.875
INT8_BYTES = 2000 + 496 + 3552 + 7040 + 720 + 240  # 14,048


def test_the_op_of_each_kind_is_read_from_the_layer_registry():
    from tfmc.gmpq.costs import OPS

    assert OPS == {"conv": "CONV_2D", "dense": "FULLY_CONNECTED", "depthwise": "DEPTHWISE_CONV_2D"}


def test_precision_of_follows_what_litert_stores():
    assert [precision_of("conv", b) for b in (2, 4, 5, 8, 12, FLOAT_BITS)] == [
        "int4", "int4", "int8", "int8", "float32", "float32"]
    assert precision_of("depthwise", 4) == "int8" and precision_of("dense", 3) == "int4"


def test_table_costs_sum_the_layers_at_their_precisions():
    # float layers (left out) cost float32; bytes add the rest of the file
    assert CHAIN_TABLE.cost("ms", {n: 8 for n in CHAIN_TABLE.layers}) == INT8_MS
    assert CHAIN_TABLE.cost("bytes", {"conv2": 8, "conv3": 8, "fc1": 4}) == 2000 + 1792 + 3552 + 7040 + 400 + 840
    assert CHAIN_TABLE.layer_cost("ms", "logits", 3) == 0.0625
    assert PrecisionTable.from_config(json.loads(json.dumps(CHAIN_TABLE.get_config()))) == CHAIN_TABLE


def test_litert_space_offers_int4_only_on_dense_and_float_anywhere():
    budget = gmpq.space_budget(chain_cnn(), "litert", measure="bytes", table=CHAIN_TABLE)
    assert budget.candidates == {"conv1": ((8, FLOAT_BITS), (8,)), "conv2": ((8, FLOAT_BITS), (8,)),
                                 "conv3": ((8, FLOAT_BITS), (8,)), "fc1": ((4, 8, FLOAT_BITS), (8,)),
                                 "logits": ((4, 8, FLOAT_BITS), (8,))}
    assert budget.int8_cost == INT8_BYTES and budget.notes == []
    # under a latency budget float stays only where it is measured clearly faster than int8
    budget = gmpq.space_budget(chain_cnn(), "litert", measure="ms", table=CHAIN_TABLE)
    assert budget.candidates == {"conv1": ((8,), (8,)), "conv2": ((8,), (8,)), "conv3": ((8,), (8,)),
                                 "fc1": ((4, 8), (8,)), "logits": ((4, 8), (8,))}
    assert budget.int8_cost == INT8_MS and budget.min_cost == INT8_MS - 0.125 - 0.0625
    assert len(budget.notes) == 5
    assert budget.notes[0] == ("conv1: float dropped under a latency budget (float32 CONV_2D not measured clearly "
                               "faster than int8: 1000.0 vs 500.0 us)")
    assert budget.notes[1].startswith("conv2: float dropped under a latency budget (a float layer between int8")
    assert budget.notes[-1] == ("logits: float dropped under a latency budget (float32 FULLY_CONNECTED not measured "
                                "clearly faster than int8: 250.0 vs 125.0 us)")
    # under a latency budget an end layer measured clearly faster in float keeps float; a middle layer does
    # not (its DEQUANTIZE / QUANTIZE are not in the table)
    layers = CHAIN_TABLE.get_config()["layers"]
    layers["conv1"]["ms"]["float32"] = 0.4  # int8: 0.5
    layers["conv2"]["ms"]["float32"] = 0.8  # int8: 1.0
    faster = PrecisionTable(layers, rest_bytes=2000, metadata={"target": "host"})
    budget = gmpq.space_budget(chain_cnn(), "litert", measure="ms", table=faster)
    assert budget.candidates["conv1"] == ((8, FLOAT_BITS), (8,)) and budget.candidates["conv2"] == ((8,), (8,))
    assert budget.min_cost == INT8_MS - 0.1 - 0.125 - 0.0625
    assert ("conv2: float dropped under a latency budget (a float layer between int8 layers adds a DEQUANTIZE "
            "and a QUANTIZE that the table does not time)") in budget.notes


def test_a_latency_budget_below_all_int8_gives_the_smallest_achievable():
    budget = gmpq.space_budget(chain_cnn(), "litert", measure="ms", table=CHAIN_TABLE)
    with pytest.raises(BudgetError, match=r"the latency budget of 2\.0000 ms is below the smallest achievable "
                                          r"2\.6875 ms \(the fastest precision of each layer; all-int8: 2\.8750 ms\)"):
        resolve_cost_target(2.0, budget)
    # a budget above all-int8 is capped there: never slower than uniform int8
    assert resolve_cost_target(100.0, budget) == INT8_MS
    assert "capped at the all-int8 2.8750 ms" in budget.notes[-1]


def test_a_size_budget_below_the_all_int4_size_is_an_error():
    budget = gmpq.space_budget(chain_cnn(), "litert", measure="bytes", table=CHAIN_TABLE)
    smallest = INT8_BYTES - (720 - 400) - (240 - 140)  # fc1 and logits int4, the convs int8
    with pytest.raises(BudgetError, match=rf"the size budget of 12,000 bytes is below the smallest achievable "
                                          rf"{smallest:,} bytes"):
        resolve_cost_target(12000, budget)
    assert resolve_cost_target(100000, budget) == 100000


def test_int4_where_litert_has_no_fast_kernel_is_said_and_rounded():
    model = depthwise_cnn()
    table = PrecisionTable({"stem": _layer("conv", (1.0, 1.0, 0.5, 2.0), (1, 1, 1, 1)),
                            "dw": _layer("depthwise", (1.0, 1.0, 0.5), (1, 1, 1)),
                            "pw": _layer("conv", (1.0, 1.0, 0.5, 2.0), (1, 1, 1, 1)),
                            "logits": _layer("dense", (1.0, 1.0, 0.5, 0.25), (1, 1, 1, 1))},
                           metadata={"target": "host"})
    budget = gmpq.space_budget(model, "gmpq", {"dw": (4, 8)}, measure="ms", table=table)
    assert budget.candidates["dw"] == ((8,), (8,))
    assert "dw: 4-bit weights -> 8 (DEPTHWISE_CONV_2D has no int4 kernel in LiteRT)" in budget.notes
    assert budget.candidates["pw"] == ((8,), (8,))  # gmpq's 2, 3, 4 and 6 bits, all int8 on this target
    assert "pw: 4-bit weights -> 8 (int4 CONV_2D measured slower than int8 on host: 2000.0 vs 500.0 us)" in budget.notes
    assert "pw: 6-bit weights -> 8 (CONV_2D stores 6-bit weights as int8)" in budget.notes
    assert budget.candidates["logits"] == ((4, 8), (8,))  # 2, 3, 4 -> int4; 6 -> int8
    _, notes = round_to_table({"logits": ((2, 3, 4), (2, 4))}, table)
    assert notes == ["logits: 2-bit weights -> 4 (FULLY_CONNECTED stores 2-bit weights as int4)",
                     "logits: 3-bit weights -> 4 (FULLY_CONNECTED stores 3-bit weights as int4)",
                     "logits: activations [2, 4] -> 8 bits (LiteRT integer kernels take 8-bit activations)"]


def test_each_exported_layer_says_why_it_holds_its_precision():
    from tfmc.export import LayerExport
    from tfmc.policy import BitPolicy

    policy = BitPolicy({"conv2": (8, 8), "fc1": (4, 8), "conv3": (8, 8)},
                       metadata={"method": "gmpq", "float_layers": ["logits"], "measure": "bytes",
                                 "rounded": ["conv3: 4-bit weights -> 8 (int4 CONV_2D measured slower than int8)"]})
    exported = [LayerExport("conv1", ["CONV_2D"], ["int8"], ["int8"]),
                LayerExport("conv2", ["CONV_2D"], ["int8"], ["int8"], (8, 8)),
                LayerExport("conv3", ["CONV_2D"], ["int8"], ["int8"], (8, 8)),
                LayerExport("fc1", ["FULLY_CONNECTED"], ["int4"], ["int8"], (4, 8)),
                LayerExport("logits", ["FULLY_CONNECTED"], ["float32"], ["float32"])]
    rows = explain.layer_precisions(chain_cnn(), policy, exported)
    assert [(r.name, r.weights, r.why) for r in rows] == [
        ("conv1", "int8", "float requested, but the export stored int8 weights"),
        ("conv2", "int8", "the only fast choice: an int4 CONV_2D runs LiteRT's reference kernel, slower than int8"),
        ("conv3", "int8", "the only fast choice: an int4 CONV_2D runs LiteRT's reference kernel, slower than int8; "
                          "4-bit weights -> 8 (int4 CONV_2D measured slower than int8)"),
        ("fc1", "int4", "searched: 4-bit weights stored int4; FULLY_CONNECTED has a fast int4 kernel (XNNPACK)"),
        ("logits", "float32", "kept float by the search, within the size budget")]
    assert explain.to_markdown(rows).splitlines()[2] == (
        "| conv1 | CONV_2D | int8 | float requested, but the export stored int8 weights |")
