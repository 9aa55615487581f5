"""Data and numeric options are checked before any work: one line, exit 2, nothing written."""
import os

import numpy as np
import pytest

import tiny_models
import tfmc
from tfmc import amc, cli, data, io  # noqa: F401  amc first: tf-agents prints a Gym notice on import
from tfmc.data import Dataset


def _npz(path, x=None, y=None, n=60, shape=(8, 8, 1)):
    rng = np.random.default_rng(0)
    x = rng.random((n,) + shape).astype(np.float32) if x is None else x
    y = np.arange(n) % 10 if y is None else y
    np.savez(path, x=x, y=y)
    return str(path)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return io.save_model(tiny_models.chain_cnn(input_shape=(8, 8, 1)), tmp_path_factory.mktemp("m") / "chain.keras")


@pytest.fixture(scope="module")
def nan_npz(tmp_path_factory):
    x = np.random.default_rng(0).random((60, 8, 8, 1)).astype(np.float32)
    x[17, 3, 4, 0] = np.nan
    x[40, 0, 0, 0] = np.inf
    return _npz(tmp_path_factory.mktemp("d") / "nan.npz", x=x)


def test_non_finite_pixels_are_counted_and_the_first_named(nan_npz):
    with pytest.raises(tfmc.DataError) as err:
        data.load(nan_npz)
    assert str(err.value) == "data 'nan.npz': x holds 2 non-finite values (NaN or inf), the first at x[17, 3, 4, 0]"


@pytest.mark.parametrize("y,message", [
    (np.arange(60) % 10 - 1, "data 'bad.npz': y holds 6 negative labels, the first y[0] = -1"),
    (np.arange(60) % 10 + 0.5, "data 'bad.npz': y must hold whole-number class labels; y[0] = 0.5"),
    (np.eye(10)[np.arange(60) % 10], "data 'bad.npz': y must be one label per image, got shape (60, 10)"),
])
def test_bad_labels_in_an_npz_are_one_line(tmp_path, y, message):
    with pytest.raises(tfmc.DataError) as err:
        data.load(_npz(tmp_path / "bad.npz", y=y))
    assert str(err.value) == message


def test_a_file_that_is_not_an_npz_is_named(tmp_path):
    (tmp_path / "notes.npz").write_text("x, y\n1, 2\n")
    np.save(tmp_path / "one.npy", np.zeros((4, 8, 8)))
    os.rename(tmp_path / "one.npy", tmp_path / "one.npz")
    for name in ("notes.npz", "one.npz"):
        with pytest.raises(tfmc.DataError) as err:
            data.load(str(tmp_path / name))
        assert str(err.value) == (f"{str(tmp_path / name)!r} is not an .npz file (not a zip archive); expected "
                                  "arrays x and y saved with numpy.savez")


def _dataset(n_train=8, n_val=4, n_test=4, classes=3):
    rng = np.random.default_rng(0)
    parts = [(rng.random((n, 8, 8, 1)).astype(np.float32), np.arange(n) % classes) for n in (n_train, n_val, n_test)]
    (xt, yt), (xv, yv), (xs, ys) = parts
    return Dataset("toy", xt, yt, xv, yv, xs, ys, num_classes=classes)


def test_check_dataset_finds_empty_splits_shapes_and_labels():
    data.check_dataset(_dataset())
    with pytest.raises(tfmc.DataError) as err:
        data.check_dataset(_dataset(n_val=0))
    assert str(err.value) == ("data 'toy': the val split is empty (12 images in all); give more images or a source "
                              "with that split")
    data.check_dataset(_dataset(n_val=0), splits=("train",))  # calibration needs the training images only
    bad = _dataset()
    bad.y_test = bad.y_test[:3]
    with pytest.raises(tfmc.DataError, match=r"^data 'toy': split test has images of shape \(4, 8, 8, 1\) and "
                                             r"labels of shape \(3,\); expected N x H x W x C images and N labels$"):
        data.check_dataset(bad)
    bad = _dataset()
    bad.y_val[2] = 7
    with pytest.raises(tfmc.DataError) as err:
        data.check_dataset(bad)
    assert str(err.value) == "data 'toy': y_val holds 1 label outside [0, 3), the first y_val[2] = 7"


def test_the_commands_refuse_bad_data_before_writing_anything(model_path, nan_npz, tmp_path, capsys):
    negative = _npz(tmp_path / "neg.npz", y=np.arange(60) % 10 - 1)
    cases = [
        (["prune", model_path, "--ratios", "0.5", "--data", nan_npz, "--out", str(tmp_path / "o.keras")],
         "tfmc prune: error: data 'nan.npz': x holds 2 non-finite values (NaN or inf), the first at x[17, 3, 4, 0]"),
        (["export", model_path, "--mode", "int8", "--data", nan_npz, "--out", str(tmp_path / "o.tflite")],
         "tfmc export: error: data 'nan.npz': x holds 2 non-finite values (NaN or inf), the first at x[17, 3, 4, 0]"),
        (["prune", model_path, "--target-macs", "0.5", "--data", negative, "--out", str(tmp_path / "amc")],
         "tfmc prune: error: data 'neg.npz': y holds 6 negative labels, the first y[0] = -1"),
        (["quantize", model_path, "--target-bops", "0.6", "--data", negative, "--out", str(tmp_path / "q")],
         "tfmc quantize: error: data 'neg.npz': y holds 6 negative labels, the first y[0] = -1"),
    ]
    for argv, message in cases:
        assert cli.main(argv) == 2, argv
        assert capsys.readouterr().err.strip() == message
    assert sorted(os.listdir(tmp_path)) == ["neg.npz"]


def test_numeric_options_are_checked_first(model_path, tmp_path, capsys):
    cases = [
        (["prune", model_path, "--ratios", "0.5", "--calib-images", "-5", "--out", str(tmp_path / "o.keras")],
         "tfmc prune: error: --calib-images must be >= 1, got -5"),
        (["prune", model_path, "--ratios", "0.5", "--seed", "-3", "--out", str(tmp_path / "o.keras")],
         "tfmc prune: error: --seed must be >= 0, got -3"),
        (["prune", model_path, "--target-macs", "0.5", "--data", "digits", "--finetune-lr", "nan", "--out",
          str(tmp_path / "amc")], "tfmc prune: error: --finetune-lr must be a finite number > 0, got nan"),
        (["prune", model_path, "--target-macs", "nan", "--data", "digits", "--out", str(tmp_path / "amc")],
         "tfmc prune: error: target_macs must be in (0, 1) (a fraction of the original), got nan"),
        (["quantize", model_path, "--target-bops", "0.6", "--data", "digits", "--qat-lr", "nan", "--out",
          str(tmp_path / "q")], "tfmc quantize: error: --qat-lr must be a finite number > 0, got nan"),
        (["quantize", model_path, "--target-bops", "0.6", "--data", "digits", "--lambda", "inf", "--out",
          str(tmp_path / "q")], "tfmc quantize: error: --lambda must be a finite number >= 0, got inf"),
        (["latency-table", model_path, "--warmup", "-1", "--out", str(tmp_path / "t.json")],
         "tfmc latency-table: error: --warmup must be >= 0, got -1"),
    ]
    for argv, message in cases:
        assert cli.main(argv) == 2, argv
        assert capsys.readouterr().err.strip() == message
    assert os.listdir(tmp_path) == []


def test_the_python_entry_points_refuse_non_finite_inputs(tmp_path):
    model = tiny_models.chain_cnn(input_shape=(8, 8, 1))
    x = np.random.default_rng(0).random((16, 8, 8, 1)).astype(np.float32)
    x[3, 1, 2, 0] = np.nan
    with pytest.raises(tfmc.DataError) as err:
        tfmc.prune(model, 0.5, calib_data=x)
    assert str(err.value) == "calib_data holds 1 non-finite value (NaN or inf), the first at calib_data[3, 1, 2, 0]"
    with pytest.raises(tfmc.DataError, match=r"^representative_data holds 1 non-finite value \(NaN or inf\), the "
                                             r"first at representative_data\[3, 1, 2, 0\]$"):
        tfmc.export.to_tflite(model, str(tmp_path / "m.tflite"), mode="int8", representative_data=x)
    with pytest.raises(tfmc.DataError, match=r"^val_data images holds 1 non-finite value"):
        tfmc.amc.search(model, (x, np.arange(16) % 10), target_macs=0.5)
    with pytest.raises(tfmc.UsageError, match=r"^learning_rate must be a finite number > 0, got nan$"):
        tfmc.train.fit(model, np.nan_to_num(x), np.arange(16) % 10, learning_rate=float("nan"))
    assert os.listdir(tmp_path) == []
