"""scikit-learn's 8x8 handwritten digits, the dataset that ships offline with scikit-learn."""
import numpy as np

from tfmc.data.images import fit_images, size_pair
from tfmc.data.split import assemble
from tfmc.errors import DataError


def digits(size=32, channels=3, seed=0):
    """scikit-learn's 1797 8x8 handwritten digits (ships offline), upsampled.

    Pixels are scaled from 0..16 to [0, 1], upsampled to ``size`` x ``size``
    by nearest-neighbour repetition when ``size`` is a multiple of 8 (else
    bilinear) and repeated to ``channels`` channels; split 70/15/15 with
    ``seed``.

    Example:
      >>> data = digits(size=16, channels=1)
      >>> data.input_shape, data.num_classes, len(data.x_train)
      ((16, 16, 1), 10, 1257)
    """
    from sklearn.datasets import load_digits

    raw = load_digits()
    x = (raw.images.astype(np.float32) / 16.0)[..., None]
    if size != 8:
        if size % 8 == 0:
            x = np.repeat(np.repeat(x, size // 8, axis=1), size // 8, axis=2)
        else:
            x = fit_images(x, (size, size), None)
    x = np.repeat(x, channels, axis=-1).astype(np.float32)
    return assemble("digits", {"train": (x, raw.target.astype(np.int64))}, seed)


def load_named(image_size, channels, seed, data_dir):
    """``digits`` as the ``NAMED`` registry calls it: square sizes only, 32 x 32 x 3 by default."""
    size = size_pair(image_size)
    if size is not None and size[0] != size[1]:
        raise DataError(f"digits are square; got image_size {image_size}")
    return digits(size=size[0] if size else 32, channels=channels or 3, seed=seed)
