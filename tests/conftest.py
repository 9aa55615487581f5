"""Test set-up: tfmc first (it selects Keras 2), quiet TensorFlow, deterministic seeds."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tfmc  # noqa: E402,F401  must precede any tensorflow import

from tfmc._keras import tf  # noqa: E402

# Two logical CPUs, so MirroredStrategy can be tested here; this must happen
# before TensorFlow initialises its devices, hence at conftest import.
_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(_cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)
