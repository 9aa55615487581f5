"""tensorflow-datasets datasets that are already prepared in a local folder (nothing is downloaded)."""
import numpy as np

from tfmc.data.images import fit_images, size_pair
from tfmc.data.split import SPLIT_ALIASES, assemble, check_same_shape
from tfmc.errors import DataError


def _builder(name, data_dir):
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


def _keys(builder):
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


def _arrays(builder, split, image_key, label_key, size, channels):
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
    return fit_images(np.concatenate(images), None, channels), np.concatenate(labels).astype(np.int64)


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

    Example (with MNIST prepared in /data/tfds)::

      data = from_tfds("mnist", "train[:5000]", data_dir="/data/tfds", image_size=32, channels=3)
    """
    builder = _builder(name, data_dir)
    image_key, label_key = _keys(builder)
    feature = builder.info.features[image_key]
    size = size_pair(image_size)
    if size is None and None in tuple(feature.shape)[:2]:
        raise DataError(f"tfds dataset {name!r} has images of varying size {feature.shape}; pass image_size")
    label_feature = builder.info.features[label_key]
    class_names = tuple(getattr(label_feature, "names", ()) or ())
    num_classes = getattr(label_feature, "num_classes", None)
    if split is not None:
        parts = {"train": _arrays(builder, split, image_key, label_key, size, channels)}
    else:
        available = {SPLIT_ALIASES[s]: s for s in builder.info.splits if s in SPLIT_ALIASES}
        if "train" not in available:
            raise DataError(
                f"tfds dataset {name!r} has no train split (splits: {sorted(builder.info.splits)}); "
                f"name one: tfds:{name}:SPLIT"
            )
        parts = {role: _arrays(builder, s, image_key, label_key, size, channels) for role, s in available.items()}
        parts = check_same_shape(name, parts)
    return assemble(name if split is None else f"{name}:{split}", parts, seed, num_classes, class_names)
