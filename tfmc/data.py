"""Datasets by name: the built-in digits, .npz files (more sources land with the demo issue).

Every loader returns a ``Dataset`` of float32 images in [0, 1] (NHWC) and
integer labels, split deterministically into train / val / test.
"""
import dataclasses
import os

import numpy as np


@dataclasses.dataclass
class Dataset:
    """Arrays of one dataset, split three ways. ``x_*`` NHWC float32 in [0, 1], ``y_*`` int64."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int

    @property
    def input_shape(self):
        return tuple(self.x_train.shape[1:])


class DataError(ValueError):
    """The data spec cannot be read or does not fit."""


def _split(name, x, y, seed, val_fraction=0.15, test_fraction=0.15):
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x))
    x, y = x[order], y[order]
    n_test = int(round(len(x) * test_fraction))
    n_val = int(round(len(x) * val_fraction))
    n_train = len(x) - n_val - n_test
    return Dataset(
        name=name,
        x_train=x[:n_train], y_train=y[:n_train],
        x_val=x[n_train:n_train + n_val], y_val=y[n_train:n_train + n_val],
        x_test=x[n_train + n_val:], y_test=y[n_train + n_val:],
        num_classes=int(y.max()) + 1,
    )


def digits(size=32, channels=3, seed=0):
    """scikit-learn's 1797 8x8 handwritten digits (ships offline), upsampled.

    Pixels are scaled from 0..16 to [0, 1], upsampled to ``size`` x ``size``
    by nearest-neighbour repetition when ``size`` is a multiple of 8 (else
    bilinear) and repeated to ``channels`` channels; split 70/15/15 with
    ``seed``.
    """
    from sklearn.datasets import load_digits

    raw = load_digits()
    x = (raw.images.astype(np.float32) / 16.0)[..., None]
    if size != 8:
        if size % 8 == 0:
            x = np.repeat(np.repeat(x, size // 8, axis=1), size // 8, axis=2)
        else:
            import tensorflow as tf

            x = tf.image.resize(x, (size, size)).numpy()
    x = np.repeat(x, channels, axis=-1).astype(np.float32)
    return _split("digits", x, raw.target.astype(np.int64), seed)


def from_npz(path, seed=0):
    """An .npz holding ``x`` (N x H x W x C, or N x H x W) and ``y`` (N integer labels)."""
    if not os.path.exists(path):
        raise DataError(f"{path!r} does not exist")
    with np.load(path) as f:
        missing = {"x", "y"} - set(f.files)
        if missing:
            raise DataError(f"{path!r} must hold arrays 'x' and 'y'; missing {sorted(missing)} (has {f.files})")
        x, y = f["x"], f["y"]
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or len(x) != len(y):
        raise DataError(f"{path!r}: expected x of shape N x H x W x C and N labels, got x {x.shape}, y {y.shape}")
    x = x.astype(np.float32)
    if x.max() > 1.0:
        x = x / 255.0
    return _split(os.path.basename(path), x, y.astype(np.int64).reshape(-1), seed)


def load(spec, *, image_size=None, seed=0):
    """Load a dataset by its command-line name: ``digits`` or a path to an .npz.

    Raises:
      DataError: the name is unknown or the file does not fit.
    """
    if spec == "digits":
        return digits(size=image_size or 32, seed=seed)
    if spec.endswith(".npz"):
        return from_npz(spec, seed=seed)
    raise DataError(f"unknown dataset {spec!r}; expected 'digits' or a path to an .npz with x and y")


def check_fits(dataset, model):
    """Raise DataError unless the dataset's images fit the model's input."""
    expected = tuple(model.inputs[0].shape.as_list()[1:])
    got = dataset.input_shape
    if len(expected) != len(got) or any(e is not None and e != g for e, g in zip(expected, got)):
        raise DataError(f"data {dataset.name!r} has images of shape {got}, but the model expects {expected}")
