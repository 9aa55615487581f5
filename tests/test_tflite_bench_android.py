"""tflite_bench.android end to end, against a STAND-IN `adb` (tests/fixtures/bench_adb_standin.py).

No phone is attached to the test machine, so this is the one place tfmc's
tests use a stand-in: a small script named `adb`, first on PATH, that
answers `devices`, `push` and `shell` like adb, records every call and prints
one of the spec's benchmark_model outputs. Everything else (the model, the
binary file, the parser) is real.
"""
import json
import os
import shutil
import stat
import sys

import pytest

import tflite_bench
from tflite_bench import BenchError
from tflite_bench.cli import main

from test_tflite_bench import SAMPLE_B

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "bench_adb_standin.py")


@pytest.fixture
def standin_adb(tmp_path, monkeypatch):
    """Put the stand-in adb first on PATH; return a helper to configure it and read its log."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    adb = bin_dir / "adb"
    adb.write_text(f"#!{sys.executable}\n" + open(FIXTURE, encoding="utf-8").read())
    adb.chmod(adb.stat().st_mode | stat.S_IXUSR)
    log = tmp_path / "adb.log"
    output = tmp_path / "bench_output.txt"
    output.write_text(SAMPLE_B)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("ADB_STANDIN_LOG", str(log))
    monkeypatch.setenv("ADB_STANDIN_OUTPUT", str(output))
    monkeypatch.setenv("ADB_STANDIN_DEVICES", "PHONE1:device")

    class StandIn:
        def devices(self, text):
            monkeypatch.setenv("ADB_STANDIN_DEVICES", text)

        def prints(self, text, exit_code=0):
            output.write_text(text)
            monkeypatch.setenv("ADB_STANDIN_EXIT", str(exit_code))

        def calls(self):
            return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    return StandIn()


@pytest.fixture
def files(tmp_path):
    model = tmp_path / "net.tflite"
    model.write_bytes(b"TFL3 not run on the host")
    binary = tmp_path / "benchmark_model"
    binary.write_bytes(b"\x7fELF aarch64 build")
    return str(model), str(binary)


def test_android_pushes_runs_parses_and_cleans_up(standin_adb, files):
    model, binary = files
    result = tflite_bench.run(model, target="android", binary=binary, threads=4, runs=50, warmup=1,
                              taskset="f0", use_gpu=True)
    assert result.source == "android"
    assert (result.init_us, result.first_us, result.warmup_mean_us, result.mean_us) == (16242, 360262, 304586, 249684)
    assert result.peak_memory_mb == 138.809
    assert standin_adb.calls() == [
        ["devices"],
        ["-s", "PHONE1", "push", model, "/data/local/tmp/net.tflite"],
        ["-s", "PHONE1", "push", binary, "/data/local/tmp/benchmark_model"],
        ["-s", "PHONE1", "shell", "chmod +x /data/local/tmp/benchmark_model"],
        ["-s", "PHONE1", "shell", "taskset f0 /data/local/tmp/benchmark_model --graph=/data/local/tmp/net.tflite "
                                  "--num_threads=4 --num_runs=50 --warmup_runs=1 --use_gpu=true"],
        ["-s", "PHONE1", "shell", "rm -f /data/local/tmp/net.tflite /data/local/tmp/benchmark_model"],
    ]


def test_serial_picks_one_of_several_devices(standin_adb, files):
    standin_adb.devices("PHONE1:device,PHONE2:device,PHONE3:unauthorized")
    with pytest.raises(BenchError, match=r"several Android devices attached \(PHONE1, PHONE2\); choose one with --serial"):
        tflite_bench.run(files[0], target="android", binary=files[1])
    result = tflite_bench.run(files[0], target="android", binary=files[1], serial="PHONE2", use_nnapi=True)
    assert result.mean_us == 249684
    run_call = standin_adb.calls()[-2]
    assert run_call[:3] == ["-s", "PHONE2", "shell"] and run_call[3].endswith("--use_nnapi=true")
    with pytest.raises(BenchError, match=r"device 'PHONE3' is 'unauthorized', not ready \(adb devices\)"):
        tflite_bench.run(files[0], target="android", binary=files[1], serial="PHONE3")
    with pytest.raises(BenchError, match=r"device 'PHONE9' is not attached; attached: PHONE1, PHONE2"):
        tflite_bench.run(files[0], target="android", binary=files[1], serial="PHONE9")


def test_no_device_attached(standin_adb, files):
    standin_adb.devices("")
    with pytest.raises(BenchError, match=r"no Android device attached; connect one with USB debugging on \(adb devices\)"):
        tflite_bench.run(files[0], target="android", binary=files[1])


def test_a_failed_run_shows_the_tools_message_and_still_cleans_up(standin_adb, files):
    standin_adb.prints("INFO: Loaded model /data/local/tmp/net.tflite\nERROR: Failed to allocate tensors!\n", exit_code=1)
    with pytest.raises(BenchError, match=r"benchmark_model on PHONE1 failed \(exit status 1\): "
                                         r"INFO: Loaded model /data/local/tmp/net.tflite \| ERROR: Failed to allocate tensors!"):
        tflite_bench.run(files[0], target="android", binary=files[1])
    assert standin_adb.calls()[-1][3] == "rm -f /data/local/tmp/net.tflite /data/local/tmp/benchmark_model"


def test_output_without_timings_is_an_error_quoting_it(standin_adb, files):
    standin_adb.prints("STARTING!\nsomething unexpected\n")
    with pytest.raises(BenchError, match=r"printed no timings we could read: no benchmark_model timings found in the "
                                         r"text: 'STARTING!\\nsomething unexpected'"):
        tflite_bench.run(files[0], target="android", binary=files[1])


def test_wrong_binary_path_and_bad_mask(standin_adb, files, tmp_path):
    with pytest.raises(BenchError, match=r"benchmark_model binary '.*bm_missing' does not exist"):
        tflite_bench.run(files[0], target="android", binary=str(tmp_path / "bm_missing"))
    with pytest.raises(BenchError, match=r"taskset mask must be hexadecimal like 'f0', got 'big'"):
        tflite_bench.run(files[0], target="android", binary=files[1], taskset="big")
    assert standin_adb.calls() == []  # nothing reached the device


def test_adb_not_installed(files, tmp_path, monkeypatch):
    empty = tmp_path / "empty_bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert shutil.which("adb") is None
    with pytest.raises(BenchError, match=r"adb not found \('adb' is not on PATH\); install Android platform-tools"):
        tflite_bench.run(files[0], target="android", binary=files[1])


def test_cli_android_json(standin_adb, files, capsys):
    model, binary = files
    assert main([model, "--android", "--binary", binary, "--serial", "PHONE1", "--threads", "2", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["source"] == "android" and data["mean_us"] == 249684 and data["peak_memory_mb"] == 138.809
    assert "--num_threads=2" in standin_adb.calls()[-2][3]
