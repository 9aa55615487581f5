"""IDX, the file format of MNIST and Fashion-MNIST: read and checked, gzipped or not."""
import gzip
import os

import numpy as np

from tfmc.errors import DataError

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


def find_idx_file(folder, name):
    """The path of ``name`` (``*.gz``) in ``folder``, or of its uncompressed twin; None if neither."""
    for candidate in (name, name[:-len(".gz")]):
        path = os.path.join(folder, candidate)
        if os.path.isfile(path):
            return path
    return None


def read_idx_pair(images_path, labels_path, classes):
    """Images (N x H x W x 1 float32 in [0, 1]) and int64 labels from two IDX files, checked against each other."""
    x, y = read_idx(images_path), read_idx(labels_path)
    if x.ndim != 3 or y.ndim != 1:
        raise DataError(f"{images_path!r} / {labels_path!r}: expected N x H x W images and N labels, "
                        f"got {x.shape} and {y.shape} (are the two files swapped?)")
    if len(x) != len(y):
        raise DataError(f"{images_path!r} holds {len(x)} images but {labels_path!r} {len(y)} labels")
    if len(y) and y.max() >= classes:
        raise DataError(f"{labels_path!r} has label {int(y.max())}; expected 0..{classes - 1}")
    return (x.astype(np.float32) / 255.0)[..., None], y.astype(np.int64)
