"""The scripts in examples/ run end to end with --quick, each in its own process, and write what they say.

The runs add the scripts' own flags for even shorter stages (fewer AMC episodes and timing runs, one GMPQ
search epoch) to keep ``make test`` short; the inputs they refuse are checked in this process through the
scripts' ``main`` and ``_common.run_main``, as ``python examples/NAME.py`` calls them.
"""
import importlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import tfmc
from tfmc import io
from tfmc.quant import qat_custom_objects

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")


# A guard against a hung script, not a speed test: with other work on the two cores the --quick scripts took over
# 300 s (they take about a minute alone), and a timeout must not turn a loaded machine into a failure.
def run_script(name, *args, cwd, env=None, timeout=1200):
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    environment.update(env or {})
    return subprocess.run([sys.executable, os.path.join(EXAMPLES, name), *args], cwd=cwd, env=environment,
                          capture_output=True, text=True, timeout=timeout)


def run_in_process(name, *args):
    """Exit code of ``python examples/NAME ARGS`` (its ``main`` through ``_common.run_main``), run in this process."""
    sys.path.insert(0, EXAMPLES)
    try:
        module, common = importlib.import_module(name[:-3]), importlib.import_module("_common")
    finally:
        sys.path.remove(EXAMPLES)
    return common.run_main(name, module.main, list(args))


def check_ok(completed):
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed


def load_tflite(path):
    from tflite_bench.host import load_interpreter

    interpreter = load_interpreter(path, threads=1)
    detail = interpreter.get_input_details()[0]
    interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
    interpreter.invoke()
    return interpreter


def table_rows(stdout):
    """First cell of every body row of the Markdown table printed on stdout."""
    lines = [line for line in stdout.splitlines() if line.startswith("| ") and not line.startswith("|---")]
    return [line.split("|")[1].strip() for line in lines[1:]]


@pytest.fixture(scope="module")
def amc_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("amc_example")
    out = tmp / "out"
    return out, check_ok(run_script("amc_mobilenet.py", "--quick", "--warmup", "2", "--episodes", "1", "--calib-images",
                                    "64", "--bench-rounds", "1", "--bench-runs", "3", "--out", str(out), cwd=tmp))


def test_amc_example_prunes_mobilenet_within_the_budget(amc_run):
    out, completed = amc_run
    assert table_rows(completed.stdout) == ["original", "pruned"]
    original = io.load_model(out / "original.keras")
    pruned = io.load_model(out / "pruned.keras")
    assert original.name.startswith("mobilenet")
    assert tfmc.count_macs(pruned) <= 0.5 * tfmc.count_macs(original)
    assert tfmc.count_params(pruned) < tfmc.count_params(original)
    results = json.loads((out / "results.json").read_text())
    assert results["models"]["pruned"]["macs"] == tfmc.count_macs(pruned)
    assert results["models"]["original"]["macs"] == tfmc.count_macs(original)
    for label in ("original", "pruned"):
        figures = results["models"][label]
        assert figures["latency_ms"] > 0
        # the float32 file classifies the 270 test digits as the Keras model does (one may flip on a near tie)
        assert abs(figures["tflite_accuracy"] - figures["keras_accuracy"]) <= 1 / 270, label
        load_tflite(out / f"{label}_float32.tflite")
    assert os.path.getsize(out / "pruned_float32.tflite") < os.path.getsize(out / "original_float32.tflite")
    assert (out / "amc" / "best_policy.json").exists() and (out / "summary.md").exists()


def test_amc_example_refuses_a_second_search_in_the_same_folder(amc_run, capsys):
    out, _ = amc_run
    assert run_in_process("amc_mobilenet.py", "--quick", "--train-epochs", "0", "--out", str(out)) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("amc_mobilenet.py: error:") and "already holds an AMC search" in last


def test_gmpq_example_quantizes_and_exports_qat_and_mixed(tmp_path):
    out = tmp_path / "out"
    completed = check_ok(run_script("gmpq_resnet.py", "--quick", "--search-epochs", "1", "--out", str(out), cwd=tmp_path))
    assert table_rows(completed.stdout) == ["float", "QAT", "mixed PTQ"]
    model = io.load_model(out / "float.keras")
    assert any(layer.__class__.__name__ == "Add" for layer in model.layers)  # residual
    policy = tfmc.BitPolicy.from_json(out / "bit_policy.json")
    results = json.loads((out / "results.json").read_text())
    assert tfmc.count_bops(model, policy) == results["achieved_bops"] <= results["target_bops"]
    qat = io.load_model(out / "qat.keras", custom_objects=qat_custom_objects())
    assert any(layer.name.startswith("quant_") for layer in qat.layers)
    for label, name in (("float", "float_float32.tflite"), ("QAT", "qat_qat.tflite"), ("mixed PTQ", "float_mixed.tflite")):
        assert results["models"][label]["export_error"] is None
        assert results["models"][label]["tflite_bytes"] == os.path.getsize(out / name)
        load_tflite(out / name)
    assert os.path.getsize(out / "float_mixed.tflite") < os.path.getsize(out / "float_float32.tflite")
    assert results["models"]["float"]["keras_accuracy"] > 0.5  # three epochs learn the digits


def test_android_example_times_on_the_host(tmp_path):
    out = tmp_path / "out"
    completed = check_ok(run_script("android_benchmark.py", "--quick", "--runs", "5", "--out", str(out), cwd=tmp_path))
    assert completed.stdout.startswith("host timing")
    assert table_rows(completed.stdout) == ["model_float32.tflite", "model_int8.tflite"]
    results = json.loads((out / "results.json").read_text())
    assert results["target"] == "host"
    for name in ("model_float32.tflite", "model_int8.tflite"):
        assert results["files"][name]["median_us"] > 0
        load_tflite(out / name)
    assert io.load_model(out / "model.keras").name == "digits_cnn"


def test_android_example_without_adb_fails_with_tflite_benchs_error(tmp_path, monkeypatch, capsys):
    # A PATH that holds the Python interpreter's folder but no adb.
    assert not any(os.path.exists(os.path.join(folder, "adb")) for folder in ("/usr/bin", "/bin"))
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    code = run_in_process("android_benchmark.py", "--quick", "--train-epochs", "0", "--modes", "float32",
                          "--android", "--binary", "/bin/true", "--out", str(tmp_path / "out"))
    stderr = capsys.readouterr().err
    assert code == 2, stderr[-2000:]
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("android_benchmark.py: error: adb not found")
    assert "Android platform-tools" in last


def test_examples_reject_bad_input_in_one_line(tmp_path, capsys):
    assert run_in_process("android_benchmark.py", "--android", "--out", str(tmp_path / "o")) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == \
        "android_benchmark.py: error: --android needs --binary PATH, a benchmark_model built for the phone"
    assert run_in_process("amc_mobilenet.py", "--data", "nowhere.npz", "--out", str(tmp_path / "o")) == 2
    stderr = capsys.readouterr().err
    assert stderr.strip().splitlines()[-1].startswith("amc_mobilenet.py: error:")
    assert "nowhere.npz" in stderr
