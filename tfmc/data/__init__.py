"""Datasets by name: digits, Fashion-MNIST, MNIST 5k, prepared tfds datasets, image folders and .npz files.

Every source returns a ``Dataset`` of float32 images in [0, 1] (NHWC) and
integer labels, split deterministically into train / val / test: a source's
own validation and test splits are kept, and whatever is missing is carved
out of its training images by a permutation drawn from ``seed``.
``as_tf_dataset`` turns any of the arrays into the one tf.data pipeline the
training code uses.

The package, module by module:

- ``types``: the ``Dataset``.
- ``sources``: one module per source (``digits``, ``fashion_mnist``,
  ``mnist_5k``, ``npz``, ``folder`` on Keras' directory reader, ``tfds``).
- ``specs``: ``load`` and ``load_for_model`` by command-line spec, and the
  ``NAMED`` registry that ``register_dataset`` extends.
- ``split``, ``idx``, ``images``: splitting, the IDX format, resizing and
  channel conversion.
- ``checks``: the checks every loaded dataset passes before it is used.
- ``pipeline``, ``augment``: tf.data in and out, random shifts.
- ``arguments``: --data / --data-dir for every command.
"""
from tfmc.data.arguments import add_data_arguments
from tfmc.data.augment import random_shift
from tfmc.data.checks import check_dataset, check_finite, check_fits, check_labels
from tfmc.data.idx import read_idx
from tfmc.data.pipeline import as_arrays, as_tf_dataset, is_tf_dataset
from tfmc.data.sources.digits import digits
from tfmc.data.sources.fashion_mnist import (
    FASHION_MNIST_CLASSES, FASHION_MNIST_DIR, FASHION_MNIST_FILES, fashion_mnist)
from tfmc.data.sources.folder import IMAGE_EXTENSIONS, from_folder
from tfmc.data.sources.mnist_5k import mnist_5k
from tfmc.data.sources.npz import from_npz
from tfmc.data.sources.tfds import from_tfds
from tfmc.data.specs import NAMED, accepted_specs, load, load_for_model, register_dataset
from tfmc.data.split import seeded_subset, stratified_split
from tfmc.data.types import Dataset
from tfmc.errors import DataError

__all__ = [
    "FASHION_MNIST_CLASSES", "FASHION_MNIST_DIR", "FASHION_MNIST_FILES", "IMAGE_EXTENSIONS", "NAMED", "DataError",
    "Dataset", "accepted_specs", "add_data_arguments", "as_arrays", "as_tf_dataset", "check_dataset", "check_finite",
    "check_fits", "check_labels", "digits", "fashion_mnist", "from_folder", "from_npz", "from_tfds", "is_tf_dataset",
    "load", "load_for_model", "mnist_5k", "random_shift", "read_idx", "register_dataset", "seeded_subset",
    "stratified_split",
]
