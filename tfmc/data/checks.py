"""Checks that data are usable and fit a model: shapes, empty splits, non-finite pixels, labels."""
import numpy as np

from tfmc.errors import DataError


def _source(name):
    return "" if name is None else f"data {name!r}: "


def check_fits(dataset, model, *, classes=False):
    """Raise DataError unless the dataset is usable and its images fit the model's input.

    Every split is checked first (``check_dataset``); then the image shape
    against the model's input and, with ``classes``, the labels against its
    outputs.

    Args:
      dataset: a Dataset.
      model: a tf_keras model with one input.
      classes: also require that the model's last output axis has a unit
        for every class of the dataset and every label, and that the
        validation and test splits are not empty (for training and
        evaluation; not needed for calibration images).

    Raises:
      DataError: naming both shapes (or class counts), or what
        ``check_dataset`` found.

    Example:
      >>> model = tfmc.models.digits_cnn((16, 16, 3), 10)
      >>> check_fits(tfmc.data.load("digits", image_size=16), model, classes=True)
      >>> check_fits(tfmc.data.load("digits", image_size=32), model)
      Traceback (most recent call last):
      tfmc.errors.DataError: data 'digits' has images of shape (32, 32, 3), but the model expects (16, 16, 3)
    """
    if len(model.inputs) != 1:
        raise DataError(f"model {model.name!r} has {len(model.inputs)} inputs; tfmc's data feed models with one "
                        "image input")
    check_dataset(dataset, splits=("train", "val", "test") if classes else ("train",))
    expected = tuple(model.inputs[0].shape.as_list()[1:])
    got = dataset.input_shape
    if len(expected) != len(got) or any(e is not None and e != g for e, g in zip(expected, got)):
        raise DataError(f"data {dataset.name!r} has images of shape {got}, but the model expects {expected}")
    if classes:
        units = model.outputs[0].shape[-1]
        if units is not None and units < dataset.num_classes:
            raise DataError(f"data {dataset.name!r} has {dataset.num_classes} classes, but the model outputs {units}")
        if units is not None:
            for split in ("train", "val", "test"):
                check_labels(dataset.name, f"y_{split}", getattr(dataset, f"y_{split}"), units)


def check_finite(name, what, x):
    """Raise DataError if ``x`` holds NaN or infinite values, with their count and the index of the first.

    ``name`` is the data set's name for the message, or None for an array
    given directly (``what`` then names it alone).

    Example:
      >>> check_finite("d.npz", "x", np.array([[0.0, np.nan]]))
      Traceback (most recent call last):
      tfmc.errors.DataError: data 'd.npz': x holds 1 non-finite value (NaN or inf), the first at x[0, 1]
    """
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        return
    bad = ~np.isfinite(x)
    count = int(np.count_nonzero(bad))
    if count:
        first = ", ".join(str(int(i)) for i in np.unravel_index(int(np.argmax(bad)), x.shape))
        plural = "value" if count == 1 else "values"
        raise DataError(f"{_source(name)}{what} holds {count:,} non-finite {plural} (NaN or inf), the first at "
                        f"{what}[{first}]")


def check_labels(name, what, y, classes=None):
    """Raise DataError unless ``y`` holds whole-number labels in [0, classes) (classes None: any label >= 0).

    ``name`` is as for ``check_finite``.

    Example:
      >>> check_labels("d.npz", "y_train", np.array([0, 3, -1]), 10)
      Traceback (most recent call last):
      tfmc.errors.DataError: data 'd.npz': y_train holds 1 label outside [0, 10), the first y_train[2] = -1
    """
    y = np.asarray(y)
    if y.ndim != 1:
        raise DataError(f"{_source(name)}{what} must be one label per image, got shape {y.shape}")
    if not len(y):
        return
    if np.issubdtype(y.dtype, np.floating):
        fractional = ~np.isfinite(y) | (y != np.round(y))
        if fractional.any():
            first = int(np.argmax(fractional))
            raise DataError(f"{_source(name)}{what} must hold whole-number class labels; {what}[{first}] = {y[first]}")
    outside = (y < 0) if classes is None else ((y < 0) | (y >= classes))
    count = int(np.count_nonzero(outside))
    if count:
        first = int(np.argmax(outside))
        which = "negative " if classes is None else ""
        where = "" if classes is None else f" outside [0, {classes})"
        plural = "label" if count == 1 else "labels"
        raise DataError(f"{_source(name)}{what} holds {count:,} {which}{plural}{where}, the first "
                        f"{what}[{first}] = {int(y[first])}")


def check_dataset(dataset, splits=("train", "val", "test")):
    """Raise DataError unless every split is N x H x W x C finite images with N valid labels, and ``splits`` are not empty.

    Checks, in order: shapes (images 4-D, one label per image, the same
    image shape in every split), empty splits among ``splits``, non-finite
    pixels (count and first index) and labels (whole numbers in
    [0, num_classes)).

    Example:
      >>> d = tfmc.data.load("digits", image_size=8)
      >>> check_dataset(d)
      >>> d.x_val, d.y_val = d.x_val[:0], d.y_val[:0]
      >>> check_dataset(d)
      Traceback (most recent call last):
      tfmc.errors.DataError: data 'digits': the val split is empty (1527 images in all); give more images or a source with that split
    """
    name = dataset.name
    for split in ("train", "val", "test"):
        x, y = np.asarray(getattr(dataset, f"x_{split}")), np.asarray(getattr(dataset, f"y_{split}"))
        if x.ndim != 4 or len(x) != len(y):
            raise DataError(f"data {name!r}: split {split} has images of shape {x.shape} and labels of shape "
                            f"{y.shape}; expected N x H x W x C images and N labels")
        if len(x) and x.shape[1:] != np.shape(dataset.x_train)[1:]:
            raise DataError(f"data {name!r}: split {split} has images of shape {x.shape[1:]}, but train "
                            f"{np.shape(dataset.x_train)[1:]}")
        if split in splits and not len(x):
            total = sum(len(getattr(dataset, f"y_{s}")) for s in ("train", "val", "test"))
            raise DataError(f"data {name!r}: the {split} split is empty ({total} images in all); give more images "
                            "or a source with that split")
    for split in ("train", "val", "test"):
        check_finite(name, f"x_{split}", getattr(dataset, f"x_{split}"))
        check_labels(name, f"y_{split}", getattr(dataset, f"y_{split}"), dataset.num_classes)
