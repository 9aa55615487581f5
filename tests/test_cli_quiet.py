"""The tfmc console script hides TensorFlow's native log lines unless --verbose is given."""
import os
import subprocess
import sys

import pytest

import tiny_models

EXE = os.path.join(os.path.dirname(sys.executable), "tfmc")
NATIVE = ("I0000", "W0000", "absl::InitializeLog")


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("quiet") / "chain.keras"
    tiny_models.chain_cnn(input_shape=(16, 16, 3)).save(path)
    return str(path)


def _run(*argv):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run([EXE, *argv], capture_output=True, text=True, timeout=180, env=env)


def test_tensorflow_log_lines_are_hidden_and_tfmc_errors_still_show(model_path, tmp_path):
    quiet = _run("profile", model_path)
    assert quiet.returncode == 0, quiet.stderr
    assert "| conv1 | Conv2D |" in quiet.stdout
    assert not [line for line in quiet.stderr.splitlines() if line.startswith(NATIVE)], quiet.stderr
    bad = _run("prune", model_path, "--ratios", "1.5", "--out", str(tmp_path / "x.keras"))
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1] == (
        "tfmc prune: error: keep ratio for 'every group' must be in (0, 1], got 1.5")
    assert not [line for line in bad.stderr.splitlines() if line.startswith(NATIVE)], bad.stderr


def test_verbose_shows_them_after_the_subcommand_too(model_path):
    loud = _run("profile", model_path, "--verbose")
    assert loud.returncode == 0, loud.stderr
    assert [line for line in loud.stderr.splitlines() if line.startswith(NATIVE)]
