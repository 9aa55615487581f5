"""The error family and the exit codes of the command line: the user's mistakes exit 2, tfmc's bugs exit 1."""
import os
import subprocess
import sys

import pytest

import tiny_models
import tfmc
from tfmc import cli, io


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return io.save_model(tiny_models.chain_cnn(input_shape=(32, 32, 3)), tmp_path_factory.mktemp("m") / "chain.keras")


def test_every_family_member_is_a_tfmc_error_and_a_value_error():
    members = [tfmc.UsageError, tfmc.DataError, tfmc.ModelLoadError, tfmc.PolicyError, tfmc.BudgetError,
               tfmc.ExportError, tfmc.OutputError]
    for cls in members:
        assert issubclass(cls, tfmc.TfmcError) and issubclass(cls, ValueError), cls
    assert issubclass(tfmc.TfmcError, ValueError)


def test_the_old_import_paths_name_the_same_classes():
    from tfmc.data import DataError
    from tfmc.export import ExportError
    from tfmc.io import ModelLoadError

    assert (DataError, ModelLoadError, ExportError, cli.UsageError) == (
        tfmc.DataError, tfmc.ModelLoadError, tfmc.ExportError, tfmc.UsageError)


def test_library_checks_raise_the_family_class_of_their_kind(model_path):
    model = io.load_model(model_path)
    with pytest.raises(tfmc.PolicyError, match=r"^keep ratio for 'every group' must be in \(0, 1\], got 1.5$"):
        tfmc.prune(model, 1.5)
    with pytest.raises(tfmc.PolicyError, match=r"^unknown channel group 'conv9'; prunable groups are: "):
        tfmc.prune(model, {"conv9": 0.5})
    with pytest.raises(tfmc.BudgetError, match=r"^target_macs must be in \(0, 1\) \(a fraction of the original\), "
                                               r"got 1.5$"):
        tfmc.amc.search(model, (tiny_models.images(4, (32, 32, 3)), [0, 1, 2, 3]), target_macs=1.5)
    with pytest.raises(tfmc.UsageError, match=r"^unknown strategy 'tpu'; expected one of default, mirrored"):
        tfmc.train.make_strategy("tpu")


def test_a_user_mistake_is_one_line_and_exit_code_2(model_path, tmp_path, capsys):
    cases = [
        (["prune", model_path, "--ratios", "0.5", "--out", str(tmp_path / "a.keras")] + ["--round-to", "0"],
         "tfmc prune: error: round_to must be a positive integer, got 0"),
        (["prune", model_path, "--ratios", str(tmp_path), "--out", str(tmp_path / "b.keras")],
         f"tfmc prune: error: --ratios {tmp_path}: not a valid PrunePolicy JSON ([Errno 21] Is a directory: "
         f"'{tmp_path}')"),
        (["profile", str(tmp_path / "missing.keras")],
         f"tfmc profile: error: model path '{tmp_path / 'missing.keras'}' does not exist (expected a .keras/.h5 "
         "file or a SavedModel folder)"),
        (["export", model_path, "--mode", "int8", "--out", str(tmp_path / "c.tflite")],
         "tfmc export: error: mode 'int8' needs representative_data (a few hundred typical inputs) to calibrate "
         "activations"),
    ]
    for argv, message in cases:
        assert cli.main(argv) == 2, argv
        assert capsys.readouterr().err.strip() == message
    assert os.listdir(tmp_path) == []


def test_a_bug_inside_tfmc_propagates_instead_of_becoming_a_usage_error(model_path, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise KeyError("internal bookkeeping")

    monkeypatch.setattr(io, "load_model", broken)
    with pytest.raises(KeyError, match="internal bookkeeping"):
        cli.main(["profile", model_path])


def test_a_plain_value_error_from_inside_is_a_bug_too(model_path, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise ValueError("shapes (3,) and (4,) not aligned")

    monkeypatch.setattr(sys.modules["tfmc.prune"], "prune", broken)
    with pytest.raises(ValueError, match=r"shapes \(3,\) and \(4,\) not aligned"):
        cli.main(["prune", model_path, "--ratios", "0.5", "--out", str(tmp_path / "p.keras")])
    assert not (tmp_path / "p.keras").exists()


@pytest.mark.slow  # starts a Python process that imports TensorFlow: make test runs it, make test-fast does not
def test_the_console_script_exits_1_with_a_traceback_for_a_bug(model_path):
    script = ("import sys, tfmc\nfrom tfmc import cli, io\n"
              "def broken(*a, **k):\n    raise KeyError('internal bookkeeping')\n"
              "io.load_model = broken\nsys.exit(cli.main(['profile', sys.argv[1]]))\n")
    result = subprocess.run([sys.executable, "-c", script, model_path], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert result.stderr.strip().endswith("KeyError: 'internal bookkeeping'")
