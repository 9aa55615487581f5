"""The docstring examples run: every example of the modules below gives the output it shows (doctest)."""
import argparse
import doctest
import importlib
import os

import numpy as np
import pytest

import tfmc
from tfmc._keras import keras, tf

# Modules whose docstrings hold examples that run here, in a few seconds each.
MODULES = [
    "tfmc.data.arguments", "tfmc.data.augment", "tfmc.data.checks", "tfmc.data.idx",
    "tfmc.data.images", "tfmc.data.pipeline", "tfmc.data.specs", "tfmc.data.split", "tfmc.data.sources.digits",
    "tfmc.data.sources.fashion_mnist", "tfmc.data.sources.folder", "tfmc.data.sources.mnist_5k",
    "tfmc.data.sources.npz", "tfmc.cli", "tfmc.export.bits", "tfmc.model_files", "tfmc.models", "tfmc.outputs",
    "tfmc.policy", "tfmc.progress", "tfmc.report", "tflite_bench.parse",
]
# Modules whose examples read Fashion-MNIST's files (make test installs them; skipped without them).
NEEDS_FASHION_MNIST = {"tfmc.data.idx", "tfmc.data.sources.fashion_mnist"}


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name, tmp_path):
    if name in NEEDS_FASHION_MNIST and not os.path.isdir(tfmc.data.FASHION_MNIST_DIR):
        pytest.skip("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
    module = importlib.import_module(name)
    globs = dict(vars(module), np=np, tf=tf, keras=keras, tfmc=tfmc, os=os, argparse=argparse,
                 tmp_dir=str(tmp_path))
    tests = doctest.DocTestFinder(exclude_empty=True).find(module, name, globs=globs)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in tests:
        runner.run(test, out=lambda text: pytest.fail(f"{name}: a docstring example failed\n{text}", pytrace=False))
    assert runner.failures == 0
    assert sum(len(test.examples) for test in tests) > 0, f"{name} has no docstring examples; take it off MODULES"
