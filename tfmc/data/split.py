"""Deterministic train / val / test splits: a seeded permutation, or class-stratified hold-outs."""
import numpy as np

from tfmc.data.types import Dataset
from tfmc.errors import DataError

# Folder and tfds split names, mapped to the three splits of a Dataset.
SPLIT_ALIASES = {"train": "train", "validation": "validation", "val": "validation", "valid": "validation",
                 "test": "test"}


def seeded_subset(x, y, count, seed):
    """``count`` of the examples (x, y) drawn with ``seed``, kept in their original order (all of them if fewer)."""
    order = np.sort(np.random.default_rng(seed).permutation(len(x))[:count])
    return x[order], y[order]


def assemble(name, parts, seed, num_classes=None, class_names=(), val_fraction=0.15, test_fraction=0.15):
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


def check_same_shape(name, parts):
    """``parts`` unchanged if every split's images have one shape; else DataError naming the shapes."""
    shapes = {split: x.shape[1:] for split, (x, _) in parts.items()}
    if len(set(shapes.values())) > 1:
        raise DataError(f"data {name!r}: splits have images of different shapes {shapes}; pass image_size")
    return parts


def stratified_split(labels, holdout, seed):
    """Indices (kept, held out) of a class-stratified random split of ``labels``.

    Each class gives the held-out part its share of ``holdout`` (largest
    remainders decide the rounding), drawn from a permutation seeded with
    ``seed``; both index arrays are sorted, disjoint and together cover every
    example once.

    Example:
      >>> labels = np.repeat(np.arange(10), 6000)
      >>> kept, held = stratified_split(labels, 5000, seed=0)
      >>> len(kept), len(held), np.bincount(labels[held]).tolist()[:2]
      (55000, 5000, [500, 500])
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
