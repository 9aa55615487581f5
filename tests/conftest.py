"""Test set-up: tfmc first (it selects Keras 2), quiet TensorFlow, deterministic seeds."""
import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tfmc  # noqa: E402,F401  must precede any tensorflow import

from tfmc._keras import tf  # noqa: E402

# Two logical CPUs, so MirroredStrategy can be tested here; this must happen
# before TensorFlow initialises its devices, hence at conftest import.
_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(_cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)


@pytest.fixture(scope="session")
def mirrored():
    """One MirroredStrategy over the two logical CPUs, shared by every test that needs one.

    Two MirroredStrategy objects in one process number their collective ops
    from the same start, and TensorFlow's collective executor remembers each
    instance's tensor shape, so a second strategy's first all-reduce fails
    ("Shape mismatch in the collective instance 100").
    """
    cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
    strategy = tf.distribute.MirroredStrategy(cpus[:2])
    assert strategy.num_replicas_in_sync == 2
    return strategy


# Test files that run whole trainings, searches, conversions or the demo. `make test` runs everything;
# `make test-fast` (the unit loop) leaves these out.
END_TO_END = {
    "test_amc.py", "test_amc_cli.py", "test_amc_searches.py", "test_cli_quiet.py", "test_examples.py", "test_export.py",
    "test_gmpq.py", "test_gmpq_run.py", "test_gmpq_transfer.py", "test_gradual_prune.py", "test_models.py",
    "test_pipeline.py", "test_precision_search.py", "test_quant.py", "test_quant_cli.py",
    "test_quant_tflite.py", "test_real_data.py",
}


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: an end-to-end test file, or a test that starts a TensorFlow process "
                                       "(left out by make test-fast)")


# The costliest files first (measured with --durations=0), so that `-n 2 --dist loadfile --no-loadscope-reorder`
# hands them out while the cheap files can still fill the other worker, instead of one worker finishing a long
# file alone at the end. Only the order changes; a file not listed runs after these, in collection order.
COSTLIEST_FIRST = (
    "test_examples.py", "test_quant_tflite.py", "test_pipeline.py", "test_precision_search.py", "test_gmpq_run.py",
    "test_quant_cli.py", "test_amc.py", "test_amc_cli.py", "test_gmpq.py", "test_gradual_prune.py", "test_quant.py",
    "test_amc_searches.py", "test_real_data.py", "test_prune.py",
)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.path.name in END_TO_END:
            item.add_marker(pytest.mark.slow)
    rank = {name: i for i, name in enumerate(COSTLIEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: tests keep their order in a file
