"""tfmc: compress tf_keras models for mobile.

Importing tfmc sets ``TF_USE_LEGACY_KERAS=1`` before TensorFlow is loaded:
tfmot and tf-agents only work with Keras 2 (``tf_keras``), and TensorFlow reads
the variable once, at its first import. Import tfmc before tensorflow.

Note: ``tfmc.prune`` is the pruning function; its implementation lives in
the ``tfmc.prune`` package (``from tfmc.prune import surgery`` still works).
The searches, export and ``tfmc.quantize`` (tfmot) load on first use, so ``import tfmc`` stays cheap.
"""
import importlib
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from tfmc.bops import count_bops  # noqa: E402
from tfmc.cost import count_macs, count_params, profile  # noqa: E402
from tfmc.errors import (  # noqa: E402
    BudgetError, DataError, ExportError, ModelLoadError, OutputError, PolicyError, TfmcError, UsageError,
)
from tfmc.graph import ChannelGroup, channel_groups  # noqa: E402
from tfmc.layers import register_layer  # noqa: E402
from tfmc.policy import BitPolicy, PrunePolicy  # noqa: E402
from tfmc.prune import prune  # noqa: E402
from tfmc.prune.gradual import UpdateMasks, prunable, strip  # noqa: E402
from tfmc.prune.schedules import ConstantKeepRatio, PolynomialDecay  # noqa: E402

__version__ = "0.1.0"

_LAZY_MODULES = ("amc", "gmpq", "export", "quant", "data", "report", "models", "train", "pipeline")


def __getattr__(name):
    if name in _LAZY_MODULES:
        return importlib.import_module(f"tfmc.{name}")
    if name == "quantize":  # tfmot is slow to import; load it on first use
        return importlib.import_module("tfmc.quant").quantize
    raise AttributeError(f"module 'tfmc' has no attribute {name!r}")


__all__ = [
    "BitPolicy",
    "BudgetError",
    "ChannelGroup",
    "ConstantKeepRatio",
    "DataError",
    "ExportError",
    "ModelLoadError",
    "OutputError",
    "PolicyError",
    "PolynomialDecay",
    "TfmcError",
    "UsageError",
    "UpdateMasks",
    "PrunePolicy",
    "channel_groups",
    "count_bops",
    "count_macs",
    "count_params",
    "profile",
    "prunable",
    "prune",
    "quantize",
    "register_layer",
    "strip",
]
