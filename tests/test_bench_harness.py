"""bench/harness.py: standard errors, paired seeds, the table writer, and .tflite scoring against Keras."""
import math
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench"))

import harness  # noqa: E402


def test_standard_error_of_90_in_100():
    result = harness.Score(accuracy=0.9, n=100)
    assert result.standard_error == pytest.approx(0.03, abs=1e-15)
    assert str(result) == "0.9000 +- 0.0300"
    assert harness.accuracy_standard_error(1.0, 50) == 0.0


def test_standard_error_rejects_bad_input():
    with pytest.raises(ValueError, match="positive image count, got 0"):
        harness.accuracy_standard_error(0.5, 0)
    with pytest.raises(ValueError, match=r"in \[0, 1\], got 1.5"):
        harness.accuracy_standard_error(1.5, 10)


def test_paired_on_hand_computed_differences():
    # differences (points): +1, 0, -2, +3 -> mean 0.5, sample sd sqrt(13/3), SE sqrt(13/3) / 2
    result = harness.paired([0.91, 0.93, 0.90, 0.95], [0.90, 0.93, 0.92, 0.92], scale=100)
    assert result.mean == pytest.approx(0.5)
    assert result.standard_error == pytest.approx(math.sqrt(13 / 3) / 2)
    assert (result.wins, result.ties, result.losses, result.n) == (2, 1, 1, 4)
    assert result.record == "2/1/1"
    assert not result.clears()
    assert harness.paired([2.0, 3.0, 4.0], [1.0, 1.0, 1.0]).clears()  # mean 2, SE 1/sqrt(3)


def test_paired_with_one_seed_has_no_standard_error():
    result = harness.paired([0.8], [0.7])
    assert result.mean == pytest.approx(0.1) and math.isnan(result.standard_error)
    assert not result.clears()
    with pytest.raises(ValueError, match="equal, non-empty lists, got 2 and 1"):
        harness.paired([0.1, 0.2], [0.1])


def test_mean_and_std_and_error():
    assert harness.mean_and_std([1.0, 3.0]) == (2.0, pytest.approx(math.sqrt(2)))
    assert harness.mean_and_std([0.5]) == (0.5, 0.0)
    assert harness.mean_and_error([1.0, 3.0]) == (2.0, pytest.approx(1.0))


def test_markdown_table_exact_output():
    text = harness.markdown_table(["model", "MACs", "note"], [["a", "1,000", "x|y"], ["b", 7, ""]], align="lrc")
    assert text == ("| model | MACs | note |\n"
                    "|---|---:|:---:|\n"
                    "| a | 1,000 | x\\|y |\n"
                    "| b | 7 |  |")
    assert harness.markdown_table(["a", "b"], []) == "| a | b |\n|---|---:|"


def test_markdown_table_rejects_ragged_rows():
    with pytest.raises(ValueError, match="row 1 has 1 cells for 2 columns"):
        harness.markdown_table(["a", "b"], [[1, 2], [3]])
    with pytest.raises(ValueError, match="one of l, r, c per column \\(2\\), got 'lx'"):
        harness.markdown_table(["a", "b"], [], align="lx")


def test_tflite_score_equals_keras_accuracy(tmp_path):
    import tfmc
    from tfmc import data, train
    from tfmc._keras import keras

    dataset = data.load("digits", image_size=16)
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3))
    hidden = keras.layers.Flatten()(keras.layers.Conv2D(8, 3, strides=2, activation="relu")(inputs))
    model, _ = train.fit(keras.Model(inputs, keras.layers.Dense(10)(hidden)), dataset.x_train, dataset.y_train,
                         epochs=3, learning_rate=3e-3, seed=0)
    x, y = dataset.x_test[:120], dataset.y_test[:120]
    path = tfmc.export.to_tflite(model, str(tmp_path / "m.tflite"), mode="float32").path
    keras_score = harness.score(model, x, y)
    tflite_score = harness.score(path, x, y)
    assert keras_score.n == tflite_score.n == 120
    assert tflite_score.accuracy == keras_score.accuracy
    assert keras_score.accuracy > 0.3  # a trained model, so agreement is not agreement on noise
    assert harness.score(open(path, "rb").read(), x, y) == tflite_score

    # int8 input and output: the harness quantizes the images with the file's own scale and zero point
    int8 = tfmc.export.to_tflite(model, str(tmp_path / "q.tflite"), mode="int8",
                                 representative_data=dataset.x_train[:64], io_dtype="int8")
    assert int8.input_dtype == "int8"
    assert abs(harness.score(int8.path, x, y).accuracy - keras_score.accuracy) <= 0.1

    facts = harness.model_facts(model, path)
    assert (facts.macs, facts.params) == (tfmc.count_macs(model), tfmc.count_params(model))
    assert facts.tflite_bytes == os.path.getsize(path) and harness.model_facts(model).tflite_bytes is None


def test_score_rejects_mismatched_split():
    with pytest.raises(ValueError, match="got 3 images, 2 labels"):
        harness.score(b"", np.zeros((3, 4, 4, 1)), np.zeros(2))


def test_a_results_file_resumes_its_own_settings_and_drops_a_torn_line(tmp_path):
    path = str(tmp_path / "sub" / "results.jsonl")
    first = harness.ResultsFile(path, {"model": "m", "target": 0.3})
    first.add(("random", 0), {"before": 0.91, "counts": {"stem": 8}})
    harness.ResultsFile(path, {"model": "m", "target": 0.5}).add(("random", 0), {"before": 0.5})
    with open(path, "a", encoding="utf-8") as f:
        f.write('{"settings": {"model": "m", "target": 0.3}, "key": ["greedy", 0], "val')  # a crash mid-line
    again = harness.ResultsFile(path, {"model": "m", "target": 0.3})
    assert again.done == {("random", 0): {"before": 0.91, "counts": {"stem": 8}}}
    again.add(("greedy", 0), {"before": 0.88})  # appending after a torn line still gives a readable record
    assert harness.ResultsFile(path, {"target": 0.3, "model": "m"}).done[("greedy", 0)] == {"before": 0.88}
