"""Test set-up: tfmc first (it selects Keras 2), quiet TensorFlow, deterministic seeds."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tfmc  # noqa: E402,F401  must precede any tensorflow import
