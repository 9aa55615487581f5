"""Folders of images in class sub-folders, read with Keras' directory reader (image_dataset_from_directory)."""
import contextlib
import io
import os

import numpy as np

from tfmc.data.images import size_pair
from tfmc.data.split import SPLIT_ALIASES, assemble, check_same_shape
from tfmc.errors import DataError

# The suffixes Keras' directory reader reads (case-insensitive); other files are ignored.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
# Channels -> the reader's color_mode.
_COLOR_MODES = {1: "grayscale", 3: "rgb", 4: "rgba"}
_LAYOUT = "ROOT/CLASS/*.png or ROOT/SPLIT/CLASS/*.png"


def _subfolders(folder):
    return sorted(f for f in os.listdir(folder) if not f.startswith(".") and os.path.isdir(os.path.join(folder, f)))


def _undecodable(paths, channels):
    """(path, reason) of the first file of ``paths`` that TensorFlow cannot decode as ``channels`` channels, or None."""
    from tfmc._keras import tf

    for path in paths:
        try:
            tf.io.decode_image(tf.io.read_file(path), channels=channels, expand_animations=False)
        except (tf.errors.InvalidArgumentError, ValueError) as exc:
            return path, str(getattr(exc, "message", exc)).strip().splitlines()[0]
    return None


@contextlib.contextmanager
def _decoding(paths, channels):
    """Turn TensorFlow's decoding failure while reading ``paths`` into a DataError that names the file."""
    from tfmc._keras import tf

    try:
        yield
    except tf.errors.InvalidArgumentError:
        found = _undecodable(paths, channels)
        if found is None:
            raise
        raise DataError(f"cannot decode image {found[0]!r}: {found[1]}") from None


def _image_sizes(paths, channels):
    """(height, width) of every image file of ``paths``, decoded in parallel."""
    from tfmc._keras import tf

    def size(path):
        return tf.shape(tf.io.decode_image(tf.io.read_file(path), channels=channels, expand_animations=False))[:2]

    stream = tf.data.Dataset.from_tensor_slices(list(paths)).map(size, num_parallel_calls=tf.data.AUTOTUNE)
    with _decoding(paths, channels):
        return [tuple(int(v) for v in s) for s in stream.as_numpy_iterator()]


def _common_size(paths, channels):
    """The one (height, width) of all images of ``paths``; DataError naming two that differ."""
    sizes = _image_sizes(paths, channels)
    for path, shape in zip(paths, sizes):
        if shape != sizes[0]:
            raise DataError(f"images differ in size ({paths[0]!r} is {sizes[0]}, {path!r} is {shape}); "
                            "pass image_size to resize them")
    return sizes[0]


def _directory_reader(folder, size, channels):
    """Keras' lazy reader over ``folder``/CLASS/*, in file order; None if no class folder holds an image."""
    from tfmc._keras import keras

    with contextlib.redirect_stdout(io.StringIO()):  # it prints "Found N files belonging to K classes."
        try:
            return keras.utils.image_dataset_from_directory(
                folder, labels="inferred", label_mode="int", color_mode=_COLOR_MODES[channels], batch_size=256,
                image_size=size, shuffle=False, interpolation="bilinear")
        except ValueError as exc:
            if str(exc).startswith("No images found"):
                return None
            raise


def _read_class_folders(folder, size, channels):
    """Images (float32 in [0, 1]) and labels of ``folder``/CLASS/*, labels indexing the sorted class folders."""
    class_names = _subfolders(folder)
    reader = _directory_reader(folder, size or (1, 1), channels)
    paths = [] if reader is None else list(reader.file_paths)
    found = {os.path.relpath(path, folder).split(os.sep)[0] for path in paths}
    for name in class_names:
        if name not in found:
            raise DataError(f"class folder {os.path.join(folder, name)!r} holds no images "
                            f"({', '.join(IMAGE_EXTENSIONS)})")
    if size is None:
        reader = _directory_reader(folder, _common_size(paths, channels), channels)
    images, labels = [], []
    with _decoding(paths, channels):
        for x, y in reader.as_numpy_iterator():
            images.append(x / np.float32(255.0))
            labels.append(y)
    return np.concatenate(images), np.concatenate(labels).astype(np.int64), tuple(reader.class_names)


def from_folder(root, *, image_size=None, channels=3, seed=0):
    """Images in class sub-folders: ROOT/CLASS/*.png, or ROOT/SPLIT/CLASS/*.png, read by Keras' directory reader.

    The second layout (tfds ImageFolder's) is recognised when every
    sub-folder of ROOT is a split name (train, validation or val, test) and
    train is among them; splits it lacks are carved from train. In the first
    layout all images are split 70/15/15 with ``seed``. Labels index the
    sorted class folder names. ``keras.utils.image_dataset_from_directory``
    lists and decodes the files: those with an image suffix (.png, .jpg,
    .jpeg, .bmp, .gif), also in nested folders of a class folder, in sorted
    order; it resizes (bilinear) and converts the channels.

    Args:
      root: the folder.
      image_size: int or (height, width) every image is resized to; None
        keeps the images' size, which must then be the same for all (each
        image's size is read first).
      channels: 3 (RGB; grey images repeated, alpha dropped), 1 (grey) or 4 (RGBA).
      seed: seeds the split.

    Returns:
      A Dataset with ``class_names``.

    Raises:
      DataError: ROOT is missing or has no class folders, a class folder
        holds no images, an image cannot be decoded (named), sizes differ
        without image_size, or ``channels`` is not 1, 3 or 4.

    Example:
      >>> from PIL import Image
      >>> for name in ("daisy", "rose"):
      ...     os.makedirs(os.path.join(tmp_dir, "flowers", name))
      ...     Image.new("RGB", (48, 32)).save(os.path.join(tmp_dir, "flowers", name, "1.png"))
      >>> data = from_folder(os.path.join(tmp_dir, "flowers"), image_size=16)
      >>> data.class_names, data.input_shape
      (('daisy', 'rose'), (16, 16, 3))
    """
    if not os.path.isdir(root):
        raise DataError(f"image folder {root!r} does not exist")
    if channels not in _COLOR_MODES:
        raise DataError(f"image folders are read with 1 (grey), 3 (RGB) or 4 (RGBA) channels, not {channels}")
    subfolders = _subfolders(root)
    if not subfolders:
        raise DataError(f"image folder {root!r} has no class sub-folders (expected {_LAYOUT})")
    size = size_pair(image_size)
    name = os.path.basename(os.path.normpath(root))
    if not ("train" in subfolders and all(f in SPLIT_ALIASES for f in subfolders)):
        x, y, class_names = _read_class_folders(root, size, channels)
        return assemble(name, {"train": (x, y)}, seed, len(class_names), class_names)
    class_names = _subfolders(os.path.join(root, "train"))
    if not class_names:
        raise DataError(f"image folder {os.path.join(root, 'train')!r} has no class sub-folders (expected {_LAYOUT})")
    parts = {}
    for split in subfolders:
        folder = os.path.join(root, split)
        unknown = sorted(set(_subfolders(folder)) - set(class_names))
        if unknown:
            raise DataError(f"split {split!r} of {root!r} has classes {unknown} that train does not have")
        if not _subfolders(folder):
            continue  # an empty split folder: carved from train like a missing one
        x, y, split_classes = _read_class_folders(folder, size, channels)
        # a class may be absent from a validation or test split: relabel by train's class names
        y = np.asarray([class_names.index(c) for c in split_classes], dtype=np.int64)[y]
        parts[SPLIT_ALIASES[split]] = (x, y)
    return assemble(name, check_same_shape(name, parts), seed, len(class_names), class_names)
