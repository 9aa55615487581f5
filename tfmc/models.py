"""Built-in models: the small CNN the demo trains on the digits data."""
from tfmc._keras import keras

L = keras.layers


def _bn(name):
    # momentum 0.9, not 0.99: a few hundred steps on small data must be enough
    # for the moving statistics that inference uses to settle.
    return L.BatchNormalization(momentum=0.9, name=name)


def _inverted_residual(x, expand, out_channels, stride, name):
    """MobileNetV2's block: 1x1 expand, 3x3 depthwise, 1x1 project, Add when shapes match."""
    in_channels = x.shape[-1]
    y = L.Conv2D(expand, 1, use_bias=False, name=f"{name}_expand")(x)
    y = _bn(f"{name}_expand_bn")(y)
    y = L.ReLU(6.0, name=f"{name}_expand_relu")(y)
    y = L.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False, name=f"{name}_dw")(y)
    y = _bn(f"{name}_dw_bn")(y)
    y = L.ReLU(6.0, name=f"{name}_dw_relu")(y)
    y = L.Conv2D(out_channels, 1, use_bias=False, name=f"{name}_project")(y)
    y = _bn(f"{name}_project_bn")(y)
    if stride == 1 and in_channels == out_channels:
        y = L.Add(name=f"{name}_add")([x, y])
    return y


def digits_cnn(input_shape=(32, 32, 3), classes=10, seed=0):
    """A MobileNetV2-like CNN with residual Adds and depthwise convolutions.

    Small enough to train on the digits data in seconds, structured so that
    channel coupling matters: the residual Adds tie producers into shared
    groups and the depthwise layers follow the channels before them.

    Example:
      >>> model = tfmc.models.digits_cnn()
      >>> tfmc.count_macs(model)
    """
    keras.utils.set_random_seed(seed)
    inp = keras.Input(input_shape, name="image")
    x = L.Conv2D(32, 3, strides=2, padding="same", use_bias=False, name="stem")(inp)
    x = _bn("stem_bn")(x)
    x = L.ReLU(6.0, name="stem_relu")(x)
    x = _inverted_residual(x, 64, 32, 1, "block1")
    x = _inverted_residual(x, 96, 48, 2, "block2")
    x = _inverted_residual(x, 144, 48, 1, "block3")
    x = _inverted_residual(x, 192, 64, 2, "block4")
    x = L.Conv2D(128, 1, use_bias=False, name="head")(x)
    x = _bn("head_bn")(x)
    x = L.ReLU(6.0, name="head_relu")(x)
    x = L.GlobalAveragePooling2D(name="pool")(x)
    x = L.Dropout(0.1, name="dropout")(x)
    out = L.Dense(classes, name="logits")(x)
    return keras.Model(inp, out, name="digits_cnn")
