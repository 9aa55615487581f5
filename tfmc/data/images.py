"""Fitting images to a model: resize to its height and width, convert to its channel count."""
import numpy as np

from tfmc.errors import DataError


def size_pair(image_size):
    """``image_size`` as (height, width), or None for "keep the source's size".

    Example:
      >>> size_pair(32), size_pair((24, 40)), size_pair(None)
      ((32, 32), (24, 40), None)
    """
    if image_size is None:
        return None
    if isinstance(image_size, (int, np.integer)):
        return int(image_size), int(image_size)
    height, width = image_size
    return int(height), int(width)


def fit_images(x, size, channels):
    """Float images (HWC or NHWC) resized to ``size`` (None: kept) and converted to ``channels`` (None: kept).

    Grey images are repeated to 3 channels, RGB converted to grey with
    ``tf.image.rgb_to_grayscale``, an alpha channel dropped first; pixels are
    clipped to [0, 1].

    Raises:
      DataError: no conversion from the images' channels to ``channels``.

    Example:
      >>> fit_images(np.ones((2, 8, 8, 1), np.float32), (16, 16), 3).shape
      (2, 16, 16, 3)
      >>> fit_images(np.ones((8, 8, 3), np.float32), None, 2)
      Traceback (most recent call last):
      tfmc.errors.DataError: cannot convert images with 3 channels to 2
    """
    from tfmc._keras import tf

    if size is not None and tuple(x.shape[-3:-1]) != size:
        x = tf.image.resize(x, size).numpy()
    have = x.shape[-1]
    if channels is None or channels == have:
        pass
    elif have in (2, 4):  # grey + alpha, RGB + alpha: drop the alpha, then convert the rest
        return fit_images(x[..., :have - 1], None, channels)
    elif have == 1:
        x = np.repeat(x, channels, axis=-1)
    elif have == 3 and channels == 1:
        x = tf.image.rgb_to_grayscale(x).numpy()
    else:
        raise DataError(f"cannot convert images with {have} channels to {channels}")
    return np.clip(x, 0.0, 1.0).astype(np.float32)
