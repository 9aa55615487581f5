"""An .npz file holding images ``x`` and labels ``y``."""
import os
import zipfile

import numpy as np

from tfmc.data.checks import check_finite, check_labels
from tfmc.data.images import fit_images, size_pair
from tfmc.data.split import assemble
from tfmc.errors import DataError


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
      >>> path = os.path.join(tmp_dir, "d.npz")
      >>> np.savez(path, x=np.zeros((20, 8, 8)), y=np.arange(20) % 2)
      >>> from_npz(path, image_size=16, channels=3).input_shape
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
    x = fit_images(x, size_pair(image_size), channels)
    return assemble(os.path.basename(path), {"train": (x, y.astype(np.int64).reshape(-1))}, seed)
