"""Built-in models: the small CNN the demo trains on the digits data, and reference models for 28-32 pixel images."""
from tfmc._keras import keras

L = keras.layers


def _bn(name):
    # momentum 0.9, not 0.99: a few hundred steps on small data must be enough
    # for the moving statistics that inference uses to settle.
    return L.BatchNormalization(momentum=0.9, name=name)


def _stem(inputs, filters, strides=1, max_value=6.0):
    """The first layers: a 3x3 convolution, BatchNorm and ReLU (capped at ``max_value``; None: uncapped)."""
    x = L.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False, name="stem")(inputs)
    x = _bn("stem_bn")(x)
    return L.ReLU(max_value, name="stem_relu")(x)


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
      >>> tfmc.count_macs(model), tfmc.count_params(model)
      (4467968, 67290)
    """
    keras.utils.set_random_seed(seed)
    inp = keras.Input(input_shape, name="image")
    x = _stem(inp, 32, strides=2)
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


def mobilenet_v2_small(input_shape=(28, 28, 1), classes=10, seed=0):
    """A MobileNetV2-style network for 28-32 pixel images (about 10 M MACs at 28 x 28 x 1).

    Seven inverted residual blocks (1x1 expand, 3x3 depthwise, 1x1 project,
    BatchNorm, ReLU6, residual Add where the shapes match) in three stages of
    28, 14 and 7 pixels (at a 28 x 28 input), a 1x1 head and a dense
    classifier giving logits. The stem keeps full resolution, as small images
    have no pixels to spare.

    Args:
      input_shape: (height, width, channels) of the images; 28 x 28 x 1 for
        Fashion-MNIST as it is stored.
      classes: units of the logits layer.
      seed: seeds the initial weights.

    Returns:
      An uncompiled tf_keras Model named ``mobilenet_v2_small``.

    Example:
      >>> model = tfmc.models.mobilenet_v2_small()
      >>> tfmc.count_macs(model), tfmc.count_params(model)
      (9991504, 139226)
    """
    keras.utils.set_random_seed(seed)
    inp = keras.Input(input_shape, name="image")
    x = _stem(inp, 16)
    # (expand, out_channels, stride) per block, as MobileNetV2's table with
    # the widths cut for 10 classes of 28-pixel images; the 28-pixel stage is
    # kept narrow because its large maps dominate the training time on a CPU.
    blocks = [(32, 16, 1), (64, 24, 2), (144, 24, 1), (144, 32, 2), (192, 32, 1), (192, 64, 1), (384, 64, 1)]
    for i, (expand, out_channels, stride) in enumerate(blocks, start=1):
        x = _inverted_residual(x, expand, out_channels, stride, f"block{i}")
    x = L.Conv2D(256, 1, use_bias=False, name="head")(x)
    x = _bn("head_bn")(x)
    x = L.ReLU(6.0, name="head_relu")(x)
    x = L.GlobalAveragePooling2D(name="pool")(x)
    x = L.Dropout(0.2, name="dropout")(x)
    out = L.Dense(classes, name="logits")(x)
    return keras.Model(inp, out, name="mobilenet_v2_small")


def _basic_block(x, out_channels, stride, name):
    """ResNet's basic block: two 3x3 convolutions and an Add, projecting the shortcut when the shape changes."""
    y = L.Conv2D(out_channels, 3, strides=stride, padding="same", use_bias=False, name=f"{name}_conv1")(x)
    y = _bn(f"{name}_bn1")(y)
    y = L.ReLU(name=f"{name}_relu1")(y)
    y = L.Conv2D(out_channels, 3, padding="same", use_bias=False, name=f"{name}_conv2")(y)
    y = _bn(f"{name}_bn2")(y)
    shortcut = x
    if stride != 1 or x.shape[-1] != out_channels:
        shortcut = L.Conv2D(out_channels, 1, strides=stride, use_bias=False, name=f"{name}_proj")(x)
        shortcut = _bn(f"{name}_proj_bn")(shortcut)
    y = L.Add(name=f"{name}_add")([shortcut, y])
    return L.ReLU(name=f"{name}_relu2")(y)


def resnet_small(input_shape=(28, 28, 1), classes=10, widths=(24, 48, 96), blocks_per_stage=1, seed=0):
    """A ResNet-style network for 28-32 pixel images: basic blocks in three stages.

    A 3x3 stem, then one stage per entry of ``widths``, each of
    ``blocks_per_stage`` basic blocks (two 3x3 convolutions, BatchNorm, ReLU
    and a residual Add; a 1x1 projection shortcut where the stride or width
    changes). Every stage after the first halves the resolution. Global
    average pooling, dropout and a dense layer give the logits.

    Args:
      input_shape: (height, width, channels) of the images.
      classes: units of the logits layer.
      widths: channels of each stage.
      blocks_per_stage: basic blocks in each stage.
      seed: seeds the initial weights.

    Returns:
      An uncompiled tf_keras Model named ``resnet_small``.

    Example:
      >>> model = tfmc.models.resnet_small()
      >>> tfmc.count_macs(model), tfmc.count_params(model)
      (20943168, 174850)
    """
    keras.utils.set_random_seed(seed)
    inp = keras.Input(input_shape, name="image")
    x = _stem(inp, widths[0], max_value=None)
    for stage, width in enumerate(widths, start=1):
        for block in range(1, blocks_per_stage + 1):
            stride = 2 if stage > 1 and block == 1 else 1
            x = _basic_block(x, width, stride, f"stage{stage}_block{block}")
    x = L.GlobalAveragePooling2D(name="pool")(x)
    x = L.Dropout(0.2, name="dropout")(x)
    out = L.Dense(classes, name="logits")(x)
    return keras.Model(inp, out, name="resnet_small")


# keras.applications.MobileNetV2's published width multipliers span 0.35 to 1.0.
KERAS_MOBILENET_V2_ALPHA_RANGE = (0.35, 1.0)


def keras_mobilenet_v2(alpha=0.35, input_shape=(32, 32, 3), classes=10, bn_momentum=0.9, seed=0):
    """keras.applications.MobileNetV2 from random weights, sized for 32 x 32 x 3 images.

    Keras' MobileNetV2 takes RGB images of at least 32 x 32 pixels, so 28 x 28
    grey images must be loaded at 32 x 32 x 3 first (``tfmc.data.load_for_model``
    does that from the model's input). Nothing is downloaded: the weights are
    random (``weights=None``) and the classifier gives logits. BatchNorm's
    momentum is 0.9 rather than Keras' 0.999: trained from scratch for a few
    thousand steps, the 0.999 moving statistics lag the weights so far that
    inference falls to chance (measured on Fashion-MNIST: 11 % with 0.999
    after 10 epochs, 89 % with the batch's own statistics).

    Args:
      alpha: width multiplier, from 0.35 to 1.0 (Keras rounds each layer's
        width to a multiple of 8).
      input_shape: (height, width, 3), each side at least 32.
      classes: units of the logits layer.
      bn_momentum: momentum of every BatchNormalization's moving statistics,
        in [0, 1).
      seed: seeds the initial weights.

    Returns:
      An uncompiled tf_keras Model named ``mobilenetv2_{alpha:.2f}_{height}``.

    Raises:
      ValueError: an alpha outside 0.35 to 1.0, an input shape Keras cannot
        take, or a momentum outside [0, 1).

    Example:
      >>> model = tfmc.models.keras_mobilenet_v2(alpha=0.5)
      >>> model.name, model.input_shape, model.output_shape
      ('mobilenetv2_0.50_32', (None, 32, 32, 3), (None, 10))
      >>> tfmc.data.load_for_model("mnist_5k", model).input_shape  # grey 28 x 28 digits, fitted to the model
      (32, 32, 3)
    """
    low, high = KERAS_MOBILENET_V2_ALPHA_RANGE
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not low <= alpha <= high:
        raise ValueError(f"alpha must be a number from {low} to {high}, got {alpha!r}")
    height, width, channels = input_shape
    if channels != 3 or height < 32 or width < 32:
        raise ValueError(f"keras' MobileNetV2 needs images of at least 32 x 32 x 3, "
                         f"got input_shape {tuple(input_shape)}")
    if not 0 <= bn_momentum < 1:
        raise ValueError(f"bn_momentum must be in [0, 1), got {bn_momentum!r}")
    keras.utils.set_random_seed(seed)
    # A named input, not Keras' numbered "input_N", so two builds have the same config.
    image = keras.Input(tuple(input_shape), name="image")
    network = keras.applications.MobileNetV2(input_tensor=image, alpha=alpha, weights=None, classes=classes,
                                             classifier_activation=None)
    for layer in network.layers:
        if isinstance(layer, L.BatchNormalization):
            layer.momentum = bn_momentum
    # Keras names a model built on input_tensor for 224 pixels; name it for its real input.
    return keras.Model(image, network.output, name=f"mobilenetv2_{alpha:.2f}_{height}")
