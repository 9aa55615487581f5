"""tfmc: compress tf_keras models for mobile.

Importing tfmc sets ``TF_USE_LEGACY_KERAS=1`` before TensorFlow is loaded:
tfmot and tf-agents only work with Keras 2 (``tf_keras``), and TensorFlow reads
the variable once, at its first import. Import tfmc before tensorflow.
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from tfmc.cost import count_macs, count_params, profile  # noqa: E402
from tfmc.graph import ChannelGroup, channel_groups  # noqa: E402
from tfmc.policy import BitPolicy, PrunePolicy  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "BitPolicy",
    "ChannelGroup",
    "PrunePolicy",
    "channel_groups",
    "count_macs",
    "count_params",
    "profile",
]
