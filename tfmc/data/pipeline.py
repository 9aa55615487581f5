"""tf.data in and out: read a finite tf.data.Dataset into arrays, and the one batching pipeline for arrays."""
import numpy as np

from tfmc.errors import DataError


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
      >>> images = np.zeros((70, 8, 8, 1), np.float32)
      >>> as_arrays(tf.data.Dataset.from_tensor_slices(images).batch(32), "calib_data").shape
      (70, 8, 8, 1)
      >>> as_arrays(tf.data.Dataset.from_tensor_slices(images).repeat(), "calib_data")
      Traceback (most recent call last):
      tfmc.errors.DataError: calib_data is an infinite tf.data.Dataset (repeat() without a count?); give a finite one
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
      >>> data = tfmc.data.load("digits", image_size=8)
      >>> stream = as_tf_dataset(data.x_train, data.y_train, batch_size=64, shuffle=True)
      >>> [tuple(part.shape) for part in next(iter(stream))]
      [(64, 8, 8, 3), (64,)]
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
