"""Channel groups read from the layer graph."""
import re

import numpy as np
import pytest

import tfmc
import tiny_models
from tfmc import channel_groups
from tfmc._keras import keras, tf
from tfmc.graph import layer_kind

L = keras.layers


def _by_name(model):
    return {g.name: g for g in channel_groups(model)}


def test_chain_groups_follow_bn_and_activations():
    model = tiny_models.chain_cnn()
    groups = _by_name(model)
    assert groups["conv1"].members == ["conv1", "bn1"]
    assert groups["conv1"].consumers == ["conv2"]
    assert groups["conv3"].consumers == ["fc1"]
    assert groups["conv3"].prunable
    assert not groups["logits"].prunable
    assert groups["logits"].reason == "reaches model output of layer 'logits'"
    input_group = groups[model.inputs[0]._keras_history[0].name]
    assert (input_group.channels, input_group.prunable, input_group.reason) == (3, False, "model input")


def test_add_couples_its_inputs_into_one_group():
    groups = _by_name(tiny_models.residual_cnn())
    assert groups["stem"].producers == ["stem", "block_b"]
    assert groups["stem"].members == ["stem", "stem_bn", "block_b", "block_bn"]
    assert groups["stem"].consumers == ["block_a", "proj", "block2_a"]
    assert groups["proj"].producers == ["proj", "block2_a"]
    assert "block_b" not in groups  # merged into "stem"
    assert groups["block_a"].channels == 12 and groups["block_a"].prunable


def test_concatenate_keeps_pieces_separate_and_maps_offsets():
    model = tiny_models.concat_cnn()
    groups = _by_name(model)
    assert groups["branch_a"].consumers == ["fuse"]
    assert groups["branch_b2"].consumers == ["fuse"]
    assert groups["branch_a"].members == ["branch_a", "concat_bn"]
    from tfmc.graph import ChannelGraph

    analysis = ChannelGraph(model)
    layout = analysis.map_groups(analysis.layer_io("fuse")["in"][0])
    assert layout == (
        [("branch_a", i) for i in range(8)] + [("branch_b2", i) for i in range(16)] + [("branch_a", i) for i in range(8)]
    )


def test_depthwise_follows_its_input_and_separable_produces():
    groups = _by_name(tiny_models.depthwise_cnn())
    assert groups["stem"].members == ["stem", "stem_bn", "dw", "dw_bn"]
    assert groups["stem"].consumers == ["pw"]
    assert groups["pw"].consumers == ["sep"]
    assert groups["sep"].consumers == ["sep2"]


def test_squeeze_excitation_broadcast_couples_the_excitation():
    groups = _by_name(tiny_models.se_cnn())
    assert groups["conv1"].producers == ["conv1", "se_expand"]
    assert groups["conv1"].members == ["conv1", "se_expand", "se_reshape"]
    assert groups["conv1"].consumers == ["se_reduce", "conv2"]
    assert groups["conv2"].producers == ["conv2", "se2_expand"]
    assert groups["conv1"].prunable and groups["conv2"].prunable


def test_flatten_lambda_and_unknown_layers_freeze_with_reason():
    inp = keras.Input((8, 8, 3))
    a = L.Conv2D(8, 3, name="a")(inp)
    b = L.Conv2D(8, 3, name="b")(a)
    c = L.Lambda(lambda t: t * 2.0, name="double")(b)
    d = L.Conv2D(8, 3, name="d")(c)
    f = L.Flatten(name="flat")(d)
    out = L.Dense(2, name="out")(f)
    groups = _by_name(keras.Model(inp, out))
    assert groups["a"].prunable
    assert groups["b"].reason == ("passes through unsupported layer Lambda 'double' "
                                  "(tell tfmc how it treats channels with tfmc.register_layer(Lambda, ...))")
    assert groups["d"].reason == "flattened by 'flat'"


def test_tensorflow_ops_pass_or_merge_when_element_wise_and_freeze_otherwise():
    inp = keras.Input((8, 8, 3))
    a = L.Conv2D(8, 3, name="a")(inp)
    b = L.Conv2D(8, 3, name="b")(inp)
    summed = a + b  # two tensors: merged as by Add
    scaled = tf.nn.relu6(summed + 3.0) * (1.0 / 6.0)  # one tensor and scalars: channels pass
    c = L.Conv2D(8, 1, name="c")(scaled)
    d = L.Conv2D(8, 1, name="d")(c * tf.constant(np.arange(8, dtype=np.float32)))  # a per-channel constant
    e = L.Conv2D(8, 1, name="e")(d)
    out = L.Dense(2, name="out")(L.GlobalAveragePooling2D()(tf.math.reduce_max(e, axis=[1, 2], keepdims=True)))
    model = keras.Model(inp, out)
    groups = _by_name(model)
    assert groups["a"].producers == ["a", "b"] and groups["a"].consumers == ["c"] and groups["a"].prunable
    assert [layer_kind(layer) for layer in model.layers[3:7]] == ["merge", "pass", "pass", "pass"]
    # TFOpLambda layers are named after their op, numbered per session
    assert re.fullmatch(r"TensorFlow op 'math.multiply' \('tf.math.multiply(_\d+)?'\) takes a constant of shape "
                        r"\(8,\), which would have to shrink with the channels", groups["c"].reason)
    assert re.fullmatch(r"TensorFlow op 'math.reduce_max' \('tf.math.reduce_max(_\d+)?'\) is not an element-wise "
                        r"op tfmc knows", groups["e"].reason)
    assert groups["d"].prunable  # it reads the frozen output of the multiply; its own channels are free
    pruned = tfmc.prune(model, 0.5, round_to=1)
    assert pruned.get_layer("a").filters == pruned.get_layer("b").filters == 4
    assert pruned.get_layer("c").get_weights()[0].shape == (1, 1, 4, 8)


def test_shared_layer_and_nested_model_are_frozen():
    inner_in = keras.Input((6, 6, 8))
    inner = keras.Model(inner_in, L.Conv2D(4, 1, name="inner_conv")(inner_in), name="inner")
    inp = keras.Input((8, 8, 3))
    x = L.Conv2D(8, 3, name="pre")(inp)
    shared = L.Conv2D(8, 1, name="shared")
    y = shared(shared(x))
    z = L.Conv2D(8, 3, name="into_nested")(x)
    z = inner(z)
    out = L.Concatenate(name="cat")([L.GlobalAveragePooling2D()(y), L.GlobalAveragePooling2D()(z)])
    groups = _by_name(keras.Model(inp, L.Dense(2, name="out")(out)))
    assert groups["pre"].reason == "layer 'shared' is shared (2 calls)"
    assert groups["into_nested"].reason == "passes through nested model 'inner'"


def test_sequential_model_is_analysed():
    model = keras.Sequential([
        keras.Input((8, 8, 3)),
        L.Conv2D(8, 3, name="c1"),
        L.ReLU(name="r"),
        L.Conv2D(8, 3, name="c2"),
        L.GlobalAveragePooling2D(name="g"),
        L.Dense(2, name="d"),
    ])
    groups = _by_name(model)
    assert groups["c1"].prunable and groups["c1"].consumers == ["c2"]
    assert groups["c2"].consumers == ["d"]


def test_subclassed_model_is_refused():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.conv = L.Conv2D(4, 3)

        def call(self, x):
            return self.conv(x)

    with pytest.raises(TypeError, match="subclassed Net; tfmc needs a functional or Sequential model"):
        channel_groups(Net())


def test_unbuilt_sequential_is_refused():
    with pytest.raises(ValueError, match="has no known input shape"):
        channel_groups(keras.Sequential([L.Dense(2)]))


def test_channels_first_layers_freeze_what_they_touch():
    inp = keras.Input((8, 8, 3))
    a = L.Conv2D(8, 3, name="a")(inp)
    b = L.Conv2D(8, 3, name="b")(a)
    p = L.AveragePooling2D(data_format="channels_first", name="cf_pool")(b)
    out = L.Dense(2, name="out")(L.Flatten(name="flat")(p))
    groups = _by_name(keras.Model(inp, out))
    assert groups["a"].prunable
    assert groups["b"].reason == "'cf_pool' uses channels_first"
