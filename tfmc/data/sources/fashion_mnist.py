"""Fashion-MNIST from its four IDX files, by default where Debian's dataset-fashion-mnist installs them."""
import os

from tfmc.data.idx import find_idx_file, read_idx_pair
from tfmc.data.images import fit_images, size_pair
from tfmc.data.split import stratified_split
from tfmc.data.types import Dataset
from tfmc.errors import DataError

# Where Debian's package dataset-fashion-mnist puts the four IDX files.
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
# The standard file names (Keras, TFDS and the Debian package use the same
# ones); each may also be present without the .gz suffix.
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


def fashion_mnist(data_dir=None, *, image_size=None, channels=None, val_size=5000, seed=0):
    """Fashion-MNIST (Xiao et al. 2017): 60,000 training and 10,000 test images, 28x28 grey, 10 classes.

    Reads the four standard IDX files (gzipped or not) from ``data_dir``, by
    default where Debian's package ``dataset-fashion-mnist`` installs them
    (/usr/share/datasets/fashion-mnist); Keras and TFDS download the same
    files, so a copy from elsewhere works too. Nothing is downloaded.

    Splits: test is the official 10,000-image test set, untouched; val is a
    class-stratified random ``val_size`` images of the training set (500 of
    each class by default), drawn with ``seed``; train is the rest (55,000).

    Args:
      data_dir: the folder with the four files; None for the Debian location.
      image_size: int or (height, width) to resize to; None keeps 28x28.
      channels: 1 or 3 (grey repeated); None keeps 1.
      val_size: images held out of the training set for validation.
      seed: seeds the validation split.

    Returns:
      A Dataset with the ten class names.

    Raises:
      DataError: files are missing (the message says how to get them) or
        damaged (wrong magic number, wrong length, bad gzip).

    Example:
      >>> d = fashion_mnist()
      >>> len(d.x_train), len(d.x_val), len(d.x_test), d.input_shape, d.class_names[:2]
      (55000, 5000, 10000, (28, 28, 1), ('T-shirt/top', 'Trouser'))
    """
    folder = FASHION_MNIST_DIR if data_dir is None else os.path.expanduser(os.fspath(data_dir))
    wanted = [name for pair in FASHION_MNIST_FILES.values() for name in pair]
    found = {name: find_idx_file(folder, name) for name in wanted}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        where = "not installed" if data_dir is None and not os.path.isdir(folder) else f"missing from {folder!r}"
        raise DataError(
            f"Fashion-MNIST is {where} ({', '.join(missing)}): install Debian's package "
            f"(apt-get install dataset-fashion-mnist, into {FASHION_MNIST_DIR}), or put the four files "
            f"{', '.join(wanted)} in a folder and pass it as data_dir / --data-dir"
        )
    classes = len(FASHION_MNIST_CLASSES)
    parts = {split: read_idx_pair(found[images], found[labels], classes)
             for split, (images, labels) in FASHION_MNIST_FILES.items()}
    (x, y), (x_test, y_test) = parts["train"], parts["test"]
    kept, held = stratified_split(y, val_size, seed)
    size = size_pair(image_size)
    return Dataset(
        name="fashion_mnist",
        x_train=fit_images(x[kept], size, channels), y_train=y[kept],
        x_val=fit_images(x[held], size, channels), y_val=y[held],
        x_test=fit_images(x_test, size, channels), y_test=y_test,
        num_classes=classes, class_names=FASHION_MNIST_CLASSES,
    )


def load_named(image_size, channels, seed, data_dir):
    """``fashion_mnist`` as the ``NAMED`` registry calls it."""
    return fashion_mnist(data_dir, image_size=image_size, channels=channels, seed=seed)
