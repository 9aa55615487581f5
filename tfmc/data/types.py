"""The one thing every data source gives: a ``Dataset`` of images and labels split train / val / test."""
import dataclasses

import numpy as np


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
