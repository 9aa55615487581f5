"""tflite_bench: the benchmark_model parser, the host runner, the local-binary path, the CLI and latency tables."""
import json
import os

import numpy as np
import pytest

import tfmc  # noqa: F401  selects Keras 2 before TensorFlow loads
import tflite_bench
from tflite_bench import BenchError, parse
from tflite_bench.cli import main
from tflite_bench.lut import LatencyTable, build_latency_table, channel_grid

# The three formats of shared/specs/tflite-bench.md, verbatim.
SAMPLE_A = """count=50 first=32891 curr=33978 min=32641 max=34005 avg=33209.4 std=450

Inference timings in us: Init: 855, First inference: 49060, Warmup (avg): 34825.1, Inference (avg): 33209.4
Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at your discretion.
Peak memory footprint (MB): init=0 overall=12.8672
"""
SAMPLE_B = """Inference timings in us: Init: 16242, First inference: 360262, Warmup (avg): 304586, Inference (avg): 249684
Peak memory footprint (MB): init=4.92969 overall=138.809
"""
SAMPLE_C = "... tflite  : Average inference timings in us: Warmup: 91471, Init: 4108, Inference: 80660.1\n"
# A current build: INFO: prefixes, a warm-up and a timed count= line with percentiles, scientific
# notation, the delta and monitored memory lines and the delegate line.
SAMPLE_NEW = """INFO: Replacing 61 out of 64 node(s) with delegate (TfLiteXNNPackDelegate) node, yielding 2 partitions for the whole graph.
INFO: count=3 first=3.1e+06 curr=2.9e+06 min=2.9e+06 max=3.1e+06 avg=2.96667e+06 std=94280
INFO: count=20 first=2950340 curr=2951000 min=2.9e+06 max=3.00001e+06 avg=2.95034e+06 std=1200 p5=2.91e+06 median=2.95e+06 p95=2.99e+06
INFO: Inference timings in us: Init: 1.2e+04, First inference: 3.1e+06, Warmup (avg): 2.96667e+06, Inference (avg): 2.95034e+06
INFO: Memory footprint delta from the start of the tool (MB): init=3.5 overall=41.25
INFO: Overall peak memory footprint (MB) via periodic monitoring: 45.75
"""


def test_parse_sample_a():
    r = parse(SAMPLE_A)
    assert (r.init_us, r.first_us, r.warmup_mean_us, r.mean_us, r.std_us) == (855, 49060, 34825.1, 33209.4, 450)
    assert (r.count, r.min_us, r.max_us, r.median_us) == (50, 32641, 34005, None)
    assert (r.memory_init_mb, r.memory_overall_mb, r.peak_memory_mb) == (0, 12.8672, 12.8672)
    assert r.typical_us == 33209.4 and r.raw == SAMPLE_A and r.source == "parsed"


def test_parse_sample_b():
    r = parse(SAMPLE_B)
    assert (r.init_us, r.first_us, r.warmup_mean_us, r.mean_us) == (16242, 360262, 304586, 249684)
    assert (r.peak_memory_mb, r.memory_init_mb, r.count, r.std_us) == (138.809, 4.92969, None, None)


def test_parse_sample_c_old_format():
    r = parse(SAMPLE_C)
    assert (r.warmup_mean_us, r.init_us, r.mean_us, r.first_us) == (91471, 4108, 80660.1, None)


def test_parse_new_format_with_info_prefix_percentiles_memory_and_delegate():
    r = parse(SAMPLE_NEW)
    # the last count= line is the timed runs, not the warm-up
    assert (r.count, r.mean_us, r.median_us, r.p5_us, r.p95_us, r.std_us) == (20, 2.95034e6, 2.95e6, 2.91e6, 2.99e6, 1200)
    assert (r.init_us, r.first_us, r.warmup_mean_us) == (1.2e4, 3.1e6, 2.96667e6)
    assert (r.memory_init_mb, r.memory_overall_mb, r.peak_memory_mb) == (3.5, 41.25, 45.75)
    assert (r.delegate, r.delegated_nodes, r.total_nodes) == ("TfLiteXNNPackDelegate", 61, 64)
    assert r.delegate_coverage == pytest.approx(61 / 64)
    assert r.typical_us == 2.95e6


def test_parse_unknown_text_quotes_it():
    with pytest.raises(BenchError, match=r"no benchmark_model timings found in the text: 'ERROR: Could not open model.tflite'"):
        parse("ERROR: Could not open model.tflite\n")


def test_parse_unreadable_timing_item_quotes_the_line():
    line = "Inference timings in us: Init: 855, Bogus: 12, Inference (avg): 33209.4"
    with pytest.raises(BenchError, match=r"could not read 'Bogus: 12' in the timing line"):
        parse(line)


def test_parse_result_json_round_trip():
    data = json.loads(parse(SAMPLE_A).to_json(include_raw=False))
    assert data["mean_us"] == 33209.4 and "raw" not in data and data["delegate_coverage"] is None


@pytest.fixture(scope="module")
def tiny_tflite(tmp_path_factory):
    from tfmc._keras import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv")(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(10, name="fc")(x)
    model = keras.Model(inp, out, name="tiny")
    path = str(tmp_path_factory.mktemp("bench") / "tiny.tflite")
    tfmc.export.to_tflite(model, path, mode="float32")
    return model, path


def test_host_runner_returns_sane_positive_timings(tiny_tflite):
    _, path = tiny_tflite
    r = tflite_bench.run(path, threads=1, runs=30, warmup=3)
    assert r.source == "host" and r.count == 30 and len(r.samples_us) == 30
    assert all(v > 0 for v in (r.init_us, r.first_us, r.warmup_mean_us, r.mean_us, r.median_us, r.p5_us))
    assert r.min_us <= r.p5_us <= r.median_us <= r.p95_us <= r.max_us
    assert r.median_us == pytest.approx(float(np.median(r.samples_us)))
    # its summary is in benchmark_model's format and parses back to the same figures
    assert parse(r.raw).median_us == pytest.approx(r.median_us, abs=0.05)


def test_host_runner_without_xnnpack_runs_too(tiny_tflite):
    r = tflite_bench.run(tiny_tflite[1], runs=3, warmup=0, use_xnnpack=False)
    assert r.count == 3 and r.warmup_mean_us is None and r.median_us > 0


@pytest.mark.parametrize("kwargs,message", [
    (dict(runs=0), r"runs must be an integer >= 1, got 0"),
    (dict(target="ios"), r"target must be one of \('host', 'android'\), got 'ios'"),
    (dict(target="android"), r"target 'android' needs binary=PATH"),
    (dict(serial="X"), r"serial and taskset apply to target 'android' only"),
    (dict(use_gpu=True), r"use_gpu, use_nnapi and extra_args need a benchmark_model binary"),
])
def test_run_rejects_bad_arguments(tiny_tflite, kwargs, message):
    with pytest.raises(BenchError, match=message):
        tflite_bench.run(tiny_tflite[1], **kwargs)


def test_missing_model_is_named(tmp_path):
    with pytest.raises(BenchError, match=r"model file '.*nope.tflite' does not exist \(expected a .tflite file\)"):
        tflite_bench.run(str(tmp_path / "nope.tflite"))


def test_local_binary_errors(tiny_tflite, tmp_path):
    path = tiny_tflite[1]
    with pytest.raises(BenchError, match=r"benchmark_model binary '.*missing' does not exist"):
        tflite_bench.run(path, binary=str(tmp_path / "missing"))
    plain = tmp_path / "benchmark_model"
    plain.write_text("not a program")
    with pytest.raises(BenchError, match=r"is not executable \(chmod \+x it\)"):
        tflite_bench.run(path, binary=str(plain))
    # real programs standing where benchmark_model would: one fails, one prints the flags it got
    with pytest.raises(BenchError, match=r"benchmark_model '/bin/false' failed \(exit status 1\): \(no output\)"):
        tflite_bench.run(path, binary="/bin/false")
    expected = f"--graph={os.path.abspath(path)} --num_threads=2 --num_runs=7 --warmup_runs=1"
    with pytest.raises(BenchError, match=r"printed no timings we could read: .*" + expected.replace(".", r"\.")):
        tflite_bench.run(path, binary="/bin/echo", threads=2, runs=7, warmup=1)


def test_cli_json_and_table(tiny_tflite, capsys):
    path = tiny_tflite[1]
    assert main([path, "--runs", "5", "--warmup", "1", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["count"] == 5 and data["median_us"] > 0 and data["source"] == "host"
    assert main([path, "--runs", "5"]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0] == f"{path} (host, 1 thread(s))"
    assert "  median" in table and "  timed runs" in table


def test_cli_compare_reports_the_ratio_of_medians(tiny_tflite, tmp_path, capsys):
    path = tiny_tflite[1]
    assert main([path, "--compare", path, "--rounds", "3", "--runs", "5", "--warmup", "1", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data["a"]["rounds"]) == 3 and len(data["b"]["rounds"]) == 3
    a = float(np.median([r["median_us"] for r in data["a"]["rounds"]]))
    b = float(np.median([r["median_us"] for r in data["b"]["rounds"]]))
    assert data["ratio"] == pytest.approx(a / b)


def test_cli_errors_exit_2(tiny_tflite, capsys):
    assert main([tiny_tflite[1], "--android"]) == 2
    assert capsys.readouterr().err.strip() == "tflite-bench: error: --android needs --binary PATH (a benchmark_model built for the phone)"


def test_alternate_calls_reverses_the_order_every_other_round():
    called = []
    results = tflite_bench.alternate_calls([lambda: called.append("a") or len(called),
                                            lambda: called.append("b") or len(called)], rounds=3)
    assert called == ["a", "b", "b", "a", "a", "b"]
    assert results == [[1, 4, 5], [2, 3, 6]]
    with pytest.raises(BenchError, match="rounds must be an integer >= 1, got 0"):
        tflite_bench.alternate_calls([], rounds=0)


def test_latency_table_interpolates_bilinearly():
    table = LatencyTable({"c": {"kind": "conv", "in_channels": [4, 8], "out_channels": [8, 16],
                                "ms": [[1.0, 2.0], [3.0, 5.0]]}})
    assert table.latency_ms("c", 4, 8) == 1.0 and table.latency_ms("c", 8, 16) == 5.0
    assert table.latency_ms("c", 6, 12) == pytest.approx((1 + 2 + 3 + 5) / 4)
    assert table.latency_ms("c", 2, 32) == 2.0  # clamped at the grid's edges
    assert table.total_ms({"c": (8, 8)}) == 3.0
    with pytest.raises(KeyError, match=r"no latency measured for layer 'x'; the table has \['c'\]"):
        table.latency_ms("x", 1, 1)
    with pytest.raises(ValueError, match=r"layer 'bad': ms has shape \(1, 1\), expected \(2, 1\)"):
        LatencyTable({"bad": {"in_channels": [1, 2], "out_channels": [3], "ms": [[1.0]]}})


def test_channel_grid():
    assert channel_grid(16, (0.25, 0.5, 0.75, 1.0)) == [4, 8, 12, 16]
    assert channel_grid(3, (0.25, 0.5, 1.0)) == [1, 2, 3]
    with pytest.raises(ValueError, match=r"grid fractions must be in \(0, 1\], got 1.5"):
        channel_grid(8, (1.5,))


def test_build_latency_table_measures_each_layer(tiny_tflite, tmp_path):
    model, _ = tiny_tflite
    table = build_latency_table(model, grid=(0.5, 1.0), runs=3, warmup=1)
    assert sorted(table.layers) == ["conv", "fc"]
    assert table.layers["conv"]["in_channels"] == [2, 3] and table.layers["conv"]["out_channels"] == [8, 16]
    assert table.layers["fc"]["in_channels"] == [8, 16] and table.layers["fc"]["out_channels"] == [5, 10]
    assert all(np.all(entry["ms"] > 0) for entry in table.layers.values())
    assert table.metadata["target"] == "host" and table.metadata["grid"] == [0.5, 1.0]
    path = str(tmp_path / "lut.json")
    table.to_json(path)
    assert LatencyTable.from_json(path) == table
    assert table.full_ms() == pytest.approx(table.latency_ms("conv", 3, 16) + table.latency_ms("fc", 16, 10))
