"""Data loaders: digits, .npz, image folders, prepared tfds datasets, the tf.data pipeline and the errors."""
import argparse
import os

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from tfmc import data
from tfmc._keras import keras, tf
from tfmc.data import DataError

DIGITS = load_digits()
# The digits as 8-bit grey pixels, which PNG and tfds store losslessly.
DIGIT_PIXELS = np.round(DIGITS.images * (255 / 16)).astype(np.uint8)


def _write_png(path, pixels):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(pixels).save(path)


def _digit_folder(root, indices, classes=(0, 1, 2)):
    """ROOT/<digit name>/<index>.png for each digits image whose label is in ``classes``."""
    names = {0: "zero", 1: "one", 2: "two"}
    written = []
    for i in indices:
        label = int(DIGITS.target[i])
        if label in classes:
            _write_png(os.path.join(root, names[label], f"{i:04d}.png"), DIGIT_PIXELS[i])
            written.append(i)
    return written


def _same_dataset(a, b):
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(getattr(a, "x_" + split), getattr(b, "x_" + split))
        np.testing.assert_array_equal(getattr(a, "y_" + split), getattr(b, "y_" + split))


def test_digits_split_is_deterministic_and_70_15_15():
    a, b = data.load("digits", image_size=16, seed=3), data.load("digits", image_size=16, seed=3)
    _same_dataset(a, b)
    assert (len(a.x_train), len(a.x_val), len(a.x_test)) == (1257, 270, 270)
    assert a.input_shape == (16, 16, 3) and a.num_classes == 10
    other = data.load("digits", image_size=16, seed=4)
    assert not np.array_equal(a.y_train, other.y_train)
    # every image appears exactly once across the three splits
    together = np.concatenate([a.y_train, a.y_val, a.y_test])
    np.testing.assert_array_equal(np.bincount(together), np.bincount(DIGITS.target))


def test_npz_is_resized_and_converted_to_the_asked_channels(tmp_path):
    path = tmp_path / "grey.npz"
    np.savez(path, x=DIGIT_PIXELS[:40], y=DIGITS.target[:40])
    kept = data.load(str(path))
    assert kept.input_shape == (8, 8, 1)
    # 0..255 scaled to [0, 1]: the 40 images, permuted into three splits, are the stored pixels / 255
    loaded = np.concatenate([kept.x_train, kept.x_val, kept.x_test])[..., 0]
    expected = DIGIT_PIXELS[:40].astype(np.float32) / 255
    assert sorted(image.tobytes() for image in loaded) == sorted(image.tobytes() for image in expected)
    rgb = data.load(str(path), image_size=16, channels=3)
    assert rgb.input_shape == (16, 16, 3)
    np.testing.assert_array_equal(rgb.x_train[..., 0], rgb.x_train[..., 2])


def test_npz_without_y_names_what_is_missing(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, x=np.zeros((4, 8, 8)))
    with pytest.raises(DataError, match=r"must hold arrays 'x' and 'y'; missing \['y'\]"):
        data.load(str(path))


def test_folder_of_class_folders_reads_exact_pixels_and_class_names(tmp_path):
    root = tmp_path / "digits_png"
    written = _digit_folder(str(root), range(90))
    dataset = data.load(str(root), seed=1)
    assert dataset.class_names == ("one", "two", "zero")  # sorted folder names
    assert dataset.input_shape == (8, 8, 3) and dataset.num_classes == 3
    n = len(written)
    assert len(dataset.x_train) + len(dataset.x_val) + len(dataset.x_test) == n
    assert len(dataset.x_test) == round(n * 0.15)
    # each loaded image is one of the written digits, scaled to [0, 1] and repeated to RGB
    label_of = {"zero": 0, "one": 1, "two": 2}
    originals = {DIGIT_PIXELS[i].tobytes(): label_of[("zero", "one", "two")[DIGITS.target[i]]] for i in written}
    for image, label in zip(dataset.x_train, dataset.y_train):
        pixels = np.round(image[..., 0] * 255).astype(np.uint8)
        assert originals[pixels.tobytes()] == label_of[dataset.class_names[label]]
        np.testing.assert_array_equal(image[..., 0], image[..., 1])
    _same_dataset(dataset, data.load(str(root), seed=1))


def test_folder_is_resized_to_image_size_and_grey_on_request(tmp_path):
    root = tmp_path / "imgs"
    _digit_folder(str(root), range(30))
    stored = data.load(str(root), channels=1)  # 8 x 8, the same split: same files, same seed
    rgb = data.load(str(root), image_size=(12, 20))
    assert rgb.input_shape == (12, 20, 3)
    # bilinear resizing of the stored pixels, the grey repeated to RGB
    np.testing.assert_allclose(rgb.x_test, np.repeat(tf.image.resize(stored.x_test, (12, 20)).numpy(), 3, axis=-1),
                               atol=1e-6)
    grey = data.load(str(root), image_size=16, channels=1)
    assert grey.input_shape == (16, 16, 1)
    np.testing.assert_allclose(grey.x_train, tf.image.resize(stored.x_train, (16, 16)).numpy(), atol=1e-6)


def test_folder_with_split_folders_keeps_its_test_split(tmp_path):
    root = tmp_path / "split"
    train = _digit_folder(str(root / "train"), range(0, 100))
    test = _digit_folder(str(root / "test"), range(100, 130))
    dataset = data.load(str(root), seed=0)
    assert dataset.name == "split"
    assert len(dataset.x_test) == len(test)
    assert len(dataset.x_val) == round(len(train) * 0.15)
    assert len(dataset.x_train) == len(train) - len(dataset.x_val)
    # the test split keeps file order: classes sorted, files sorted within a class
    expected = sorted(test, key=lambda i: (("one", "two", "zero").index(("zero", "one", "two")[DIGITS.target[i]]), i))
    np.testing.assert_array_equal(np.round(dataset.x_test[..., 0] * 255).astype(np.uint8), DIGIT_PIXELS[expected])


def test_folder_errors_are_one_clear_line(tmp_path):
    with pytest.raises(DataError, match=r"unknown data '.*nowhere' \(no such dataset, folder or file\); expected a dataset name \('digits', 'fashion_mnist', 'mnist_5k'\), 'tfds:NAME\[:SPLIT\]'"):
        data.load(str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"has no class sub-folders \(expected ROOT/CLASS/\*\.png or ROOT/SPLIT/CLASS/\*\.png\)"):
        data.load(str(tmp_path / "empty"))
    (tmp_path / "hollow" / "cat").mkdir(parents=True)
    with pytest.raises(DataError, match=r"class folder '.*hollow/cat' holds no images \(\.png, \.jpg"):
        data.load(str(tmp_path / "hollow"))
    _write_png(str(tmp_path / "broken" / "a" / "good.png"), DIGIT_PIXELS[0])
    (tmp_path / "broken" / "b").mkdir()
    (tmp_path / "broken" / "b" / "bad.png").write_bytes(b"this is not a PNG")
    with pytest.raises(DataError, match=r"cannot decode image '.*broken/b/bad\.png'"):
        data.load(str(tmp_path / "broken"))
    _write_png(str(tmp_path / "sizes" / "a" / "small.png"), DIGIT_PIXELS[0])
    _write_png(str(tmp_path / "sizes" / "b" / "large.png"), np.zeros((10, 12), np.uint8))
    with pytest.raises(DataError, match=r"images differ in size \(.*small\.png' is \(8, 8\), .*large\.png' is \(10, 12\)\); pass image_size"):
        data.load(str(tmp_path / "sizes"))
    assert data.load(str(tmp_path / "sizes"), image_size=8).input_shape == (8, 8, 3)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError, match=r"'.*notes\.txt' is a file but not an \.npz"):
        data.load(str(tmp_path / "notes.txt"))


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
    """A tiny tfds dataset of digits (train 100, test 40), built offline into its own data_dir.

    The builder class is defined without registering it, so loading goes
    through the prepared files alone, as for data prepared on another machine.
    """
    import tensorflow_datasets as tfds

    with tfds.core.registered.skip_registration():
        class TinyDigits(tfds.core.GeneratorBasedBuilder):
            VERSION = tfds.core.Version("1.0.0")

            def _info(self):
                return tfds.core.DatasetInfo(
                    builder=self,
                    features=tfds.features.FeaturesDict({
                        "image": tfds.features.Image(shape=(8, 8, 1)),
                        "label": tfds.features.ClassLabel(names=[f"d{i}" for i in range(10)]),
                    }),
                    supervised_keys=("image", "label"),
                )

            def _split_generators(self, dl_manager):
                return {"train": self._generate_examples(range(100)), "test": self._generate_examples(range(100, 140))}

            def _generate_examples(self, indices):
                for i in indices:
                    yield i, {"image": DIGIT_PIXELS[i][..., None], "label": int(DIGITS.target[i])}

    data_dir = str(tmp_path_factory.mktemp("tfds"))
    TinyDigits(data_dir=data_dir).download_and_prepare()
    return data_dir


def _sorted_rows(x):
    flat = np.round(x[..., 0] * 255).astype(np.uint8).reshape(len(x), -1)
    return flat[np.lexsort(flat.T[::-1])]


def test_tfds_uses_the_prepared_splits(tfds_dir):
    dataset = data.load("tfds:tiny_digits", data_dir=tfds_dir, image_size=16, channels=3, seed=2)
    assert dataset.num_classes == 10 and dataset.class_names[:2] == ("d0", "d1")
    assert (len(dataset.x_train), len(dataset.x_val), len(dataset.x_test)) == (85, 15, 40)
    assert dataset.input_shape == (16, 16, 3)
    exact = data.load("tfds:tiny_digits", data_dir=tfds_dir)
    assert exact.input_shape == (8, 8, 1)
    np.testing.assert_array_equal(_sorted_rows(exact.x_test), _sorted_rows(DIGIT_PIXELS[100:140, ..., None] / 255.0))
    np.testing.assert_array_equal(np.sort(exact.y_test), np.sort(DIGITS.target[100:140]))
    _same_dataset(exact, data.load("tfds:tiny_digits", data_dir=tfds_dir))


def test_tfds_split_expression_is_split_three_ways(tfds_dir):
    dataset = data.load("tfds:tiny_digits:train[:60]+test", data_dir=tfds_dir, seed=0)
    assert dataset.name == "tiny_digits:train[:60]+test"
    assert (len(dataset.x_train), len(dataset.x_val), len(dataset.x_test)) == (70, 15, 15)
    with pytest.raises(DataError, match=r"tfds dataset 'tiny_digits' has no split 'valid'.*splits: \['test', 'train'\]"):
        data.load("tfds:tiny_digits:valid", data_dir=tfds_dir)


def test_tfds_data_that_is_not_prepared_says_how_to_prepare_it(tmp_path):
    empty = str(tmp_path)
    how = (
        rf"prepare it on a machine with internet: python -c \"import tensorflow_datasets as tfds; "
        rf"tfds.load\('mnist', data_dir='{empty}'\)\" \(or: tfds build mnist --data_dir {empty}\), "
        rf"then copy {empty} here and pass it as data_dir / --data-dir"
    )
    with pytest.raises(DataError, match=rf"tfds dataset 'mnist' is not prepared in '{empty}' \(nothing is downloaded here\); {how}"):
        data.load("tfds:mnist", data_dir=empty)
    with pytest.raises(DataError, match=r"tfds dataset 'no_such_set' is neither a known tfds name nor prepared in"):
        data.load("tfds:no_such_set", data_dir=empty)
    with pytest.raises(DataError, match=r"'tfds:' names no dataset; expected tfds:NAME\[:SPLIT\]"):
        data.load("tfds:")


def test_as_tf_dataset_shuffles_the_same_way_for_the_same_seed():
    x = np.arange(20, dtype=np.float32).reshape(20, 1)
    y = np.arange(20)

    def order(seed):
        return np.concatenate([b.numpy() for _, b in data.as_tf_dataset(x, y, batch_size=6, shuffle=True, seed=seed)])

    first = order(5)
    np.testing.assert_array_equal(first, order(5))
    assert not np.array_equal(first, order(6))
    np.testing.assert_array_equal(np.sort(first), y)
    batches = [b.numpy() for b in data.as_tf_dataset(x, batch_size=6)]
    assert [len(b) for b in batches] == [6, 6, 6, 2]
    np.testing.assert_array_equal(np.concatenate(batches)[:, 0], x[:, 0])
    assert len(list(data.as_tf_dataset(x, y, batch_size=6, drop_remainder=True))) == 3
    teacher = np.eye(20, dtype=np.float32)
    xb, yb, tb = next(iter(data.as_tf_dataset(x, y, teacher, batch_size=4, shuffle=True, seed=1)))
    np.testing.assert_array_equal(np.argmax(tb.numpy(), axis=1), yb.numpy())  # rows stay together
    np.testing.assert_array_equal(xb.numpy()[:, 0], yb.numpy())
    with pytest.raises(ValueError, match=r"arrays differ in length: \[20, 19\]"):
        data.as_tf_dataset(x, y[:19])


def test_random_shift_moves_the_whole_image_by_at_most_the_padding():
    from tfmc._keras import tf

    image = np.arange(1, 8 * 9 * 2 + 1, dtype=np.float32).reshape(8, 9, 2)
    padded = np.pad(image, [(2, 2), (2, 2), (0, 0)])

    def offsets(seed, draws=60):
        gen = tf.random.Generator.from_seed(seed)
        found = []
        for _ in range(draws):
            moved = data.random_shift(tf.constant(image), 2, gen).numpy()
            # each result is the zero-padded image cut at some window: find it and compare exactly
            windows = [(r, c) for r in range(5) for c in range(5) if np.array_equal(padded[r:r + 8, c:c + 9], moved)]
            assert len(windows) == 1
            found.append((windows[0][0] - 2, windows[0][1] - 2))
        return found

    first = offsets(0)
    assert first == offsets(0)  # a seeded generator repeats its shifts
    assert first != offsets(1)
    assert {r for r, _ in first} == {c for _, c in first} == {-2, -1, 0, 1, 2}


def test_load_for_model_takes_size_and_channels_from_the_model(tmp_path):
    root = tmp_path / "imgs"
    _digit_folder(str(root), range(30))
    inputs = keras.Input((12, 10, 1))
    model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(inputs)))
    dataset = data.load_for_model(str(root), model, classes=True)
    assert dataset.input_shape == (12, 10, 1)
    with pytest.raises(DataError, match=r"digits are square; got image_size \(12, 10\)"):
        data.load_for_model("digits", model)
    square = keras.Input((16, 16, 1))
    with pytest.raises(DataError, match=r"data 'digits' has 10 classes, but the model outputs 3"):
        data.load_for_model("digits", keras.Model(square, keras.layers.Dense(3)(keras.layers.Flatten()(square))), classes=True)
    parser = data.add_data_arguments(argparse.ArgumentParser(), "calibration images")
    args = parser.parse_args(["--data", "tfds:mnist", "--data-dir", str(tmp_path)])
    with pytest.raises(DataError, match=r"tfds dataset 'mnist' is not prepared in"):
        data.load_for_model(args.data, model, data_dir=args.data_dir)


def test_check_fits_names_both_shapes_and_class_counts():
    dataset = data.load("digits", image_size=16)
    inputs = keras.Input((16, 16, 3))
    model = keras.Model(inputs, keras.layers.Dense(4)(keras.layers.Flatten()(inputs)))
    data.check_fits(dataset, model)
    with pytest.raises(DataError, match=r"data 'digits' has 10 classes, but the model outputs 4"):
        data.check_fits(dataset, model, classes=True)
    with pytest.raises(DataError, match=r"data 'digits' has images of shape \(8, 8, 3\), but the model expects \(16, 16, 3\)"):
        data.check_fits(data.load("digits", image_size=8), model)
