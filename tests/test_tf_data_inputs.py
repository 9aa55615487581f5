"""tf.data datasets are accepted, or refused with one clear line, the same way by prune, amc.search, gmpq.search and export."""
import numpy as np
import pytest

import tiny_models
import tfmc
from tfmc._keras import tf


@pytest.fixture(scope="module")
def model():
    return tiny_models.chain_cnn(input_shape=(8, 8, 1))


@pytest.fixture(scope="module")
def arrays():
    rng = np.random.default_rng(0)
    return rng.random((40, 8, 8, 1)).astype(np.float32), (np.arange(40) % 10).astype(np.int64)


def test_as_arrays_reads_batched_and_unbatched_datasets_in_order(arrays):
    x, y = arrays
    pairs = tf.data.Dataset.from_tensor_slices((x, y))
    for stream in (pairs, pairs.batch(7)):
        got_x, got_y = tfmc.data.as_arrays(stream, "data", labels=True)
        np.testing.assert_array_equal(got_x, x)
        np.testing.assert_array_equal(got_y, y)
    np.testing.assert_array_equal(tfmc.data.as_arrays(pairs.batch(5), "calib_data"), x)
    np.testing.assert_array_equal(tfmc.data.as_arrays(tf.data.Dataset.from_tensor_slices(x), "calib_data"), x)
    assert tfmc.data.as_arrays(x, "calib_data") is x


def test_prune_with_a_dataset_equals_prune_with_its_arrays(model, arrays):
    x, _ = arrays
    from_arrays = tfmc.prune(model, 0.5, calib_data=x)
    from_stream = tfmc.prune(model, 0.5, calib_data=tf.data.Dataset.from_tensor_slices(x).batch(8))
    for a, b in zip(from_arrays.get_weights(), from_stream.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_export_reads_representative_data_from_a_dataset(model, arrays, tmp_path):
    x, _ = arrays
    result = tfmc.export.to_tflite(model, str(tmp_path / "m.tflite"), mode="int8",
                                   representative_data=tf.data.Dataset.from_tensor_slices(x).batch(10))
    from_arrays = tfmc.export.to_tflite(model, str(tmp_path / "a.tflite"), mode="int8", representative_data=x)
    assert result.mode == "int8"
    # calibrated on the same images: the same file, byte for byte
    assert (tmp_path / "m.tflite").read_bytes() == (tmp_path / "a.tflite").read_bytes()
    assert result.size_bytes == from_arrays.size_bytes == len((tmp_path / "a.tflite").read_bytes())


@pytest.mark.parametrize("call", ["prune", "amc", "gmpq", "export"])
def test_every_entry_point_refuses_an_infinite_dataset_in_one_line(model, arrays, tmp_path, call):
    x, y = arrays
    endless = tf.data.Dataset.from_tensor_slices((x, y)).repeat()
    name = {"prune": "calib_data", "amc": "val_data", "gmpq": "data", "export": "representative_data"}[call]
    with pytest.raises(tfmc.DataError) as err:
        if call == "prune":
            tfmc.prune(model, 0.5, calib_data=endless)
        elif call == "amc":
            tfmc.amc.search(model, endless, target_macs=0.5)
        elif call == "gmpq":
            tfmc.gmpq.search(model, endless, target_bops=1.0)
        else:
            tfmc.export.to_tflite(model, str(tmp_path / "m.tflite"), mode="int8", representative_data=endless)
    assert str(err.value) == f"{name} is an infinite tf.data.Dataset (repeat() without a count?); give a finite one"


@pytest.mark.parametrize("call", ["amc", "gmpq"])
def test_searches_refuse_a_dataset_without_labels(model, arrays, call):
    images = tf.data.Dataset.from_tensor_slices(arrays[0]).batch(8)
    name = {"amc": "val_data", "gmpq": "data"}[call]
    with pytest.raises(tfmc.DataError) as err:
        if call == "amc":
            tfmc.amc.search(model, images, target_macs=0.5)
        else:
            tfmc.gmpq.search(model, images, target_bops=1.0)
    assert str(err.value) == (f"{name} is a tf.data.Dataset of images without labels; (image, label) pairs are "
                              "needed here")


def test_a_dataset_of_dicts_is_refused(model):
    stream = tf.data.Dataset.from_tensor_slices({"image": np.zeros((4, 8, 8, 1), np.float32)})
    with pytest.raises(tfmc.DataError, match=r"^calib_data: a tf.data.Dataset of images or \(image, label\) pairs "
                                             r"was expected, got elements \{'image'"):
        tfmc.prune(model, 0.5, calib_data=stream)
