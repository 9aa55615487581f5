"""Data by their command-line spec: the named datasets' registry, tfds:NAME[:SPLIT], folders and .npz files."""
import os

from tfmc.data.checks import check_fits
from tfmc.data.sources import digits, fashion_mnist, mnist_5k
from tfmc.data.sources.folder import from_folder
from tfmc.data.sources.npz import from_npz
from tfmc.data.sources.tfds import from_tfds
from tfmc.errors import DataError

# Datasets known by name: name -> loader(image_size, channels, seed, data_dir) -> Dataset.
NAMED = {}


def register_dataset(name, loader):
    """Make ``name`` a dataset that ``load``, ``load_for_model`` and every command's --data accept.

    Args:
      name: the spec, a plain word (no colon, no path separator, not ending
        in .npz) so that it cannot be taken for a file or a tfds spec.
      loader: ``loader(image_size, channels, seed, data_dir)`` returning a
        Dataset: ``image_size`` as given to ``load`` (None, an int or
        (height, width); ``tfmc.data.images.size_pair`` reads it),
        ``channels`` None (the source's) or a count, ``data_dir`` None or
        the --data-dir value.

    Returns:
      ``loader``.

    Example:
      >>> def constant(image_size, channels, seed, data_dir):
      ...     height, width = tfmc.data.images.size_pair(image_size) or (4, 4)
      ...     x = np.full((40, height, width, channels or 1), 0.5, np.float32)
      ...     return tfmc.data.split.assemble("constant", {"train": (x, np.arange(40) % 2)}, seed)
      >>> _ = register_dataset("constant", constant)
      >>> load("constant", image_size=8, channels=3).input_shape
      (8, 8, 3)
      >>> del NAMED["constant"]
    """
    if not name or ":" in name or os.sep in name or name.endswith(".npz"):
        raise ValueError(f"dataset name {name!r} must be a plain word (no ':' or '{os.sep}', not ending in .npz)")
    NAMED[name] = loader
    return loader


register_dataset("digits", digits.load_named)
register_dataset("fashion_mnist", fashion_mnist.load_named)
register_dataset("mnist_5k", mnist_5k.load_named)


def accepted_specs():
    """The accepted ``spec`` forms in words, quoted by the error for an unknown one."""
    names = ", ".join(repr(name) for name in NAMED)
    return (f"a dataset name ({names}), 'tfds:NAME[:SPLIT]' (prepared in data_dir / --data-dir), "
            "a folder of class sub-folders of images, or an .npz file with arrays x and y")


def load(spec, *, image_size=None, seed=0, data_dir=None, channels=None):
    """Load a dataset by its command-line name.

    Args:
      spec: a name of ``NAMED`` ('digits', 'fashion_mnist', 'mnist_5k');
        'tfds:NAME[:SPLIT]' (everything after the first colon that follows
        NAME is the tfds split expression); a folder of class sub-folders of
        images; or an .npz file with x and y.
      image_size: int or (height, width) to resize to (digits: the side, 32
        when None); None keeps the source's size.
      seed: seeds the train / val / test split: the same seed gives the same split.
      data_dir: where the files are: the Fashion-MNIST IDX files (None: the
        Debian location) or prepared tfds data.
      channels: 1 or 3. None means 3 for digits and image folders, and the
        stored channels for the others.

    Returns:
      A Dataset.

    Raises:
      DataError: the spec is none of the accepted forms (the message lists
        them), or the named data cannot be read (see the loaders).

    Example:
      >>> load("digits", image_size=32).input_shape
      (32, 32, 3)
      >>> load("mnist_5k", image_size=32, channels=3).input_shape
      (32, 32, 3)
      >>> load("cifar10")
      Traceback (most recent call last):
      tfmc.errors.DataError: unknown data 'cifar10' (no such dataset, folder or file); expected a dataset name ('digits', 'fashion_mnist', 'mnist_5k'), 'tfds:NAME[:SPLIT]' (prepared in data_dir / --data-dir), a folder of class sub-folders of images, or an .npz file with arrays x and y
    """
    spec = os.fspath(spec)
    if spec in NAMED:
        return NAMED[spec](image_size, channels, seed, data_dir)
    if spec.startswith("tfds:"):
        name, _, split = spec[len("tfds:"):].partition(":")
        if not name:
            raise DataError(f"{spec!r} names no dataset; expected tfds:NAME[:SPLIT], e.g. tfds:mnist:train")
        return from_tfds(name, split or None, data_dir=data_dir, image_size=image_size, channels=channels, seed=seed)
    if spec.endswith(".npz"):
        return from_npz(spec, seed=seed, image_size=image_size, channels=channels)
    if os.path.isdir(spec):
        return from_folder(spec, image_size=image_size, channels=channels or 3, seed=seed)
    if os.path.exists(spec):
        raise DataError(f"{spec!r} is a file but not an .npz; expected {accepted_specs()}")
    raise DataError(f"unknown data {spec!r} (no such dataset, folder or file); expected {accepted_specs()}")


def load_for_model(spec, model, *, data_dir=None, seed=0, classes=False):
    """Load ``spec`` at the model's input size and channels, and check that it fits.

    What the commands do with --data: images are resized to the model's
    input height and width and converted to its channel count.

    Args:
      spec: as for ``load``.
      model: a tf_keras model with one NHWC image input.
      data_dir: where the files of ``spec`` are (as for ``load``).
      seed: seeds the split.
      classes: also check the class count against the model's outputs.

    Returns:
      A Dataset.

    Raises:
      DataError: as for ``load`` and ``check_fits``.

    Example:
      >>> model = tfmc.models.digits_cnn((20, 20, 1), 10)
      >>> load_for_model("digits", model, classes=True).input_shape
      (20, 20, 1)
    """
    shape = model.inputs[0].shape.as_list()[1:]
    if len(shape) != 3:
        raise DataError(f"model input has shape {tuple(shape)}; expected images (height, width, channels)")
    height, width, channels = shape
    size = None if height is None or width is None else (height, width)
    dataset = load(spec, image_size=size, seed=seed, data_dir=data_dir, channels=channels)
    check_fits(dataset, model, classes=classes)
    return dataset

