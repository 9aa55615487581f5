"""MACs and parameters against hand counts and published figures."""
import pytest

import tiny_models
import tfmc
from tfmc._keras import keras

L = keras.layers


def test_macs_equal_a_hand_count():
    inp = keras.Input((8, 8, 3))
    x = L.Conv2D(4, 3, padding="same")(inp)                 # 8*8 * 3*3*3 * 4
    x = L.DepthwiseConv2D(3, depth_multiplier=2)(x)         # 6*6 * 3*3 * 4*2
    x = L.SeparableConv2D(5, 3, strides=2)(x)               # 2*2*9*8 + 2*2*8*5
    x = L.Conv2D(6, 1, groups=1)(x)                         # 2*2*5*6
    x = L.Flatten()(x)
    out = L.Dense(7)(x)                                     # 24*7
    model = keras.Model(inp, out)
    expected = 8 * 8 * 27 * 4 + 36 * 9 * 8 + (4 * 9 * 8 + 4 * 8 * 5) + 4 * 5 * 6 + 24 * 7
    assert tfmc.count_macs(model) == expected
    assert tfmc.count_params(model) == model.count_params()


def test_grouped_conv_and_dense_on_feature_maps():
    inp = keras.Input((4, 4, 8))
    x = L.Conv2D(8, 3, padding="same", groups=4)(inp)  # 16 * 9 * 2 * 8
    out = L.Dense(3)(x)                                # 16 * 8 * 3
    assert tfmc.count_macs(keras.Model(inp, out)) == 16 * 9 * 2 * 8 + 16 * 8 * 3


@pytest.mark.parametrize(
    "build, published",
    [(keras.applications.MobileNet, 569e6), (keras.applications.MobileNetV2, 300e6)],
)
def test_published_mobilenet_counts(build, published):
    model = build(weights=None, input_shape=(224, 224, 3))
    assert abs(tfmc.count_macs(model) - published) / published < 0.01


def test_profile_rows_and_markdown():
    model = tiny_models.chain_cnn()
    prof = tfmc.profile(model)
    rows = {r.name: r for r in prof.rows}
    assert rows["conv1"].macs == 16 * 16 * 27 * 16
    assert rows["conv1"].group == "conv1"
    assert rows["bn1"].group == "conv1" and rows["bn1"].macs == 0
    assert rows["logits"].group == "logits (frozen)"
    assert prof.total_macs == sum(r.macs for r in prof.rows) == tfmc.count_macs(model)
    text = prof.to_markdown()
    assert "| conv1 | Conv2D | 16x16x16 | 110,592 | 448 | 16 | conv1 |" in text
    assert text.splitlines()[-1].startswith(f"| **total** | | | {prof.total_macs:,} |")


def test_unknown_spatial_size_is_explained():
    inp = keras.Input((None, None, 3))
    model = keras.Model(inp, L.Conv2D(4, 3)(inp))
    with pytest.raises(ValueError, match="needs a model built with a fixed input size"):
        tfmc.count_macs(model)
