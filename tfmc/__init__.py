"""tfmc: compress tf_keras models for mobile.

Importing tfmc sets ``TF_USE_LEGACY_KERAS=1`` before TensorFlow is loaded:
tfmot and tf-agents only work with Keras 2 (``tf_keras``), and TensorFlow reads
the variable once, at its first import.
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

__version__ = "0.1.0"
