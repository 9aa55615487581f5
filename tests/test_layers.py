"""The layer registry: every built-in handler passes the pruned-equals-masked contract; user layers register."""
import numpy as np
import pytest

import tfmc
from tfmc._keras import keras, tf
from tfmc.errors import UsageError
from tfmc.graph import ChannelGraph
from tfmc.layers import LayerHandler, handler_for, registered, unregister_layer
from tfmc.layers import channelwise, conv, depthwise, structural
from tfmc.prune.masking import masked_copy

L = keras.layers


def _tail(x):
    """A consumer after ``x`` (1-D / 2-D / 3-D feature maps or vectors), then a small classifier."""
    rank = len(x.shape)
    if rank == 3:
        x = L.Conv1D(8, 1, name="reader")(x)
        x = L.GlobalAveragePooling1D()(x)
    elif rank == 4:
        x = L.Conv2D(8, 1, name="reader")(x)
        x = L.GlobalAveragePooling2D()(x)
    elif rank == 5:
        x = L.Conv3D(8, 1, name="reader")(x)
        x = L.GlobalAveragePooling3D()(x)
    else:
        x = L.Dense(8, name="reader")(x)
    return L.Dense(3, name="logits")(x)


def _image(middle, channels=16):
    inp = keras.Input((8, 8, 3))
    x = L.Conv2D(channels, 3, padding="same", name="p")(inp)
    return keras.Model(inp, _tail(middle(x)))


class _Scale(L.Layer):
    """A user layer: one learned factor per channel."""

    def build(self, shape):
        self.gamma = self.add_weight("gamma", shape[-1:], initializer="random_normal")

    def call(self, x):
        return x * self.gamma


def _two_branches(join):
    inp = keras.Input((8, 8, 3))
    a = L.Conv2D(16, 3, padding="same", name="p")(inp)
    b = L.Conv2D(16, 3, padding="same", name="q")(inp)
    return keras.Model(inp, _tail(join([a, b])))


def _one_d(middle):
    inp = keras.Input((16, 3))
    x = L.Conv1D(16, 3, padding="same", name="p")(inp)
    return keras.Model(inp, _tail(middle(x)))


def _tf_ops():
    """Plain TensorFlow ops on Keras tensors (TFOpLambda): a residual sum and a hard swish, as tf_keras' models write them."""
    inp = keras.Input((8, 8, 3))
    a = L.Conv2D(16, 3, padding="same", name="p")(inp)
    b = L.Conv2D(16, 3, padding="same", name="q")(inp)
    x = tf.math.add(a, b)
    return keras.Model(inp, _tail(x * (tf.nn.relu6(x + 3.0) * (1.0 / 6.0))))


def _first_tf_op(model):
    return next(layer.name for layer in model.layers if type(handler_for(layer)) is structural.TensorFlowOp)


def _nested():
    inner_in = keras.Input((8, 8, 16))
    inner = keras.Model(inner_in, L.ReLU()(inner_in), name="inner")
    return _image(inner)


# handler class -> (tiny model, the layer that shows the rule, whether its channels can be pruned)
CASES = {
    structural.PassThrough: (lambda: _image(L.MaxPooling2D(2, name="x")), "x", True),
    structural.ActivationLayer: (lambda: _image(L.Activation("tanh", name="x")), "x", True),
    structural.ChannelMixing: (lambda: _image(L.Softmax(name="x")), "x", False),
    structural.ElementwiseMerge: (lambda: _two_branches(L.Add(name="x")), "x", True),
    structural.Concatenation: (lambda: _two_branches(L.Concatenate(name="x")), "x", True),
    structural.TensorFlowOp: (_tf_ops, _first_tf_op, True),  # TFOpLambda names itself after the op
    structural.ReshapeLayer: (lambda: _image(L.Reshape((64, 16), name="x")), "x", True),
    structural.FlattenLayer: (lambda: _image(L.Flatten(name="x")), "x", False),
    structural.NestedModel: (_nested, "inner", False),
    structural.ChannelScale: (lambda: _image(L.ReLU(name="relu")), "p_channel_mask", True),  # tfmc.prunable adds it
    channelwise.BatchNorm: (lambda: _image(L.BatchNormalization(name="x")), "x", True),
    channelwise.PReLUSlopes: (lambda: _image(L.PReLU(alpha_initializer="random_normal", name="x")), "x", True),
    conv.DenseLayer: (lambda: _image(L.Dense(12, name="x")), "x", True),
    conv.Convolution: (lambda: _image(L.Conv2D(16, 3, padding="same", groups=4, name="x")), "x", True),
    conv.Conv1DLayer: (lambda: _one_d(L.Conv1D(12, 3, padding="same", name="x")), "x", True),
    conv.Conv3DLayer: (lambda: _volume(), "x", True),
    conv.TransposedConvolution: (lambda: _image(L.Conv2DTranspose(12, 3, strides=2, padding="same", name="x")), "x",
                                 True),
    depthwise.Depthwise: (lambda: _image(L.DepthwiseConv2D(3, depth_multiplier=2, padding="same", name="x")), "x",
                          True),
    depthwise.Separable: (lambda: _image(L.SeparableConv2D(12, 3, depth_multiplier=2, padding="same", name="x")),
                          "x", True),
    LayerHandler: (lambda: _image(L.Lambda(lambda t: t * 2.0, name="x")), "x", False),
}


def _volume():
    inp = keras.Input((4, 4, 4, 2))
    x = L.Conv3D(16, 3, padding="same", name="p")(inp)
    return keras.Model(inp, _tail(L.Conv3D(12, 3, padding="same", name="x")(x)))


def _seeded(build):
    keras.utils.set_random_seed(0)
    model = build()
    for layer in model.layers:  # non-trivial BatchNorm statistics, so slicing them is checked too
        if isinstance(layer, L.BatchNormalization):
            layer.set_weights([np.random.default_rng(1).uniform(0.5, 2.0, w.shape) for w in layer.get_weights()])
    return model


def test_every_builtin_handler_has_a_contract_case():
    builtin = {type(h) for h in registered().values()} | {LayerHandler}
    assert builtin == set(CASES)


@pytest.mark.parametrize("handler_class", list(CASES), ids=lambda c: c.__name__)
def test_pruned_equals_masked_for_every_builtin_handler(handler_class):
    build, shown, prunable = CASES[handler_class]
    model = _seeded(build)
    if handler_class is structural.ChannelScale:
        _check_mask_strips_exactly(model)
        return
    shown = shown(model) if callable(shown) else shown
    layer = model.get_layer(shown)
    assert type(handler_for(layer)) is handler_class
    analysis = ChannelGraph(model)
    if not prunable:  # the channels it reads freeze, with a reason naming it
        group = analysis.group("p")
        assert not group.prunable and f"'{shown}'" in group.reason
        return
    pruned, details = tfmc.prune(model, 0.5, round_to=1, return_details=True)
    x = np.random.default_rng(2).normal(size=(4,) + tuple(model.input_shape[1:])).astype(np.float32)
    reference = masked_copy(model, analysis, details["keep"])
    np.testing.assert_allclose(pruned(x).numpy(), reference(x).numpy(), rtol=1e-4, atol=1e-4)
    assert tfmc.count_macs(pruned) < tfmc.count_macs(model)
    before = [w.shape for w in layer.get_weights()] or [layer.output_shape]
    after_layer = pruned.get_layer(shown)
    after = [w.shape for w in after_layer.get_weights()] or [after_layer.output_shape]
    assert before != after  # the layer itself lost channels (weights or output)


def _check_mask_strips_exactly(model):
    """A ChannelMask is the masked twin itself: stripping it (pruning for real) gives the masked outputs."""
    masked = tfmc.prunable(model, {"p": 0.5}, round_to=1)
    mask = masked.get_layer("p_channel_mask")
    assert type(handler_for(mask)) is structural.ChannelScale
    assert int(mask.mask.sum()) == 8
    small = tfmc.strip(masked)
    x = np.random.default_rng(2).normal(size=(4, 8, 8, 3)).astype(np.float32)
    np.testing.assert_allclose(small(x).numpy(), masked(x).numpy(), rtol=1e-4, atol=1e-4)
    assert small.get_layer("p").get_weights()[0].shape[-1] == 8


def test_grouped_convolution_is_pruned_by_whole_groups():
    model = _seeded(CASES[conv.Convolution][0])
    group = {g.name: g for g in tfmc.channel_groups(model)}["p"]
    assert (group.block, group.members) == (4, ["p", "x"])
    pruned, details = tfmc.prune(model, 0.5, round_to=1, return_details=True)
    x = pruned.get_layer("x")
    assert (x.groups, x.filters, x.get_weights()[0].shape) == (2, 8, (3, 3, 4, 8))
    kept = details["keep"]["p"].reshape(4, 4)
    assert all(row.all() or not row.any() for row in kept)  # whole blocks only
    # round_to 8 with blocks of 4 keeps multiples of 8: two of the four groups
    assert tfmc.prune(model, 0.3, round_to=8).get_layer("x").groups == 2


def test_grouped_convolution_changing_width_freezes_with_reason():
    model = _image(L.Conv2D(32, 3, groups=4, padding="same", name="x"))
    group = {g.name: g for g in tfmc.channel_groups(model)}["p"]
    assert not group.prunable
    assert group.reason == ("grouped convolution 'x' (groups=4) changes the width (16 -> 32); "
                            "only width-keeping ones are pruned by whole groups")


def test_macs_and_params_of_grouped_and_transposed_convolutions():
    model = _image(L.Conv2D(16, 3, padding="same", groups=4, name="x"))
    pruned = tfmc.prune(model, {"p": 0.5}, round_to=1)
    # 8x8 positions, 3x3 window, 4 inputs per group, 8 outputs
    assert tfmc.cost.macs_by_layer(pruned)["x"] == 64 * 9 * 4 * 8
    from tfmc.amc.budget import CostModel

    params = CostModel(ChannelGraph(model), "params")
    assert params.total({"p": 8}) == tfmc.count_params(pruned)
    t = _image(L.Conv2DTranspose(12, 3, strides=2, padding="same", name="x"))
    assert tfmc.cost.macs_by_layer(t)["x"] == 64 * 9 * 16 * 12  # per input position
    small = tfmc.prune(t, {"p": 0.5, "x": 0.5}, round_to=1)
    assert CostModel(ChannelGraph(t), "params").total({"p": 8, "x": 6}) == tfmc.count_params(small)


def test_unregistered_user_layer_freezes_and_says_how_to_register():
    model = _image(_Scale(name="scale"))
    group = {g.name: g for g in tfmc.channel_groups(model)}["p"]
    assert group.reason == ("passes through unsupported layer _Scale 'scale' "
                            "(tell tfmc how it treats channels with tfmc.register_layer(_Scale, ...))")


def test_user_layer_registered_as_channelwise_prunes_exactly():
    # the example of docs/layers.md
    tfmc.register_layer(_Scale, "channelwise")
    try:
        model = _seeded(lambda: _image(_Scale(name="scale")))
        group = {g.name: g for g in tfmc.channel_groups(model)}["p"]
        assert group.prunable and group.members == ["p", "scale"]
        pruned, details = tfmc.prune(model, 0.5, round_to=1, return_details=True)
        assert pruned.get_layer("scale").get_weights()[0].shape == (8,)
        np.testing.assert_array_equal(pruned.get_layer("scale").get_weights()[0],
                                      model.get_layer("scale").get_weights()[0][details["keep"]["p"]])
        x = np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype(np.float32)
        reference = masked_copy(model, ChannelGraph(model), details["keep"])
        np.testing.assert_allclose(pruned(x).numpy(), reference(x).numpy(), rtol=1e-4, atol=1e-4)
    finally:
        unregister_layer(_Scale)


def test_registering_a_passthrough_subclass_and_bad_handlers():
    class Swish(L.Layer):
        def call(self, x):
            return x * keras.activations.sigmoid(x)

    tfmc.register_layer(Swish, "passthrough")
    try:
        assert tfmc.channel_groups(_image(Swish(name="s")))[1].prunable
    finally:
        unregister_layer(Swish)
    with pytest.raises(UsageError, match=r"unknown ready handler 'bn'; expected one of \['channelwise', 'passthrough'\]"):
        tfmc.register_layer(Swish, "bn")
    with pytest.raises(UsageError, match="must be a tfmc.layers.LayerHandler instance"):
        tfmc.register_layer(Swish, object())


def test_subclasses_inherit_their_base_handler():
    class MyConv(L.Conv2D):
        pass

    assert type(handler_for(MyConv(4, 1))) is conv.Convolution
    assert type(handler_for(L.Conv2DTranspose(4, 1))) is conv.TransposedConvolution  # not Conv2D's
    assert type(handler_for(L.Conv1DTranspose(4, 1))) is conv.TransposedConvolution  # not Conv1D's
