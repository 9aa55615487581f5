"""Small seeded tf_keras models that exercise each kind of channel coupling."""
import numpy as np

from tfmc._keras import keras, tf

L = keras.layers


def _randomize_bn(model, seed=0):
    """Give BN layers non-trivial statistics so dropped channels would show."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([
                rng.uniform(0.5, 1.5, gamma.shape).astype("float32"),
                rng.normal(0, 0.1, beta.shape).astype("float32"),
                rng.normal(0, 0.1, mean.shape).astype("float32"),
                rng.uniform(0.5, 1.5, var.shape).astype("float32"),
            ])
    return model


def chain_cnn(seed=0, input_shape=(16, 16, 3), classes=10):
    keras.utils.set_random_seed(seed)
    inp = keras.Input(input_shape)
    x = L.Conv2D(16, 3, padding="same", name="conv1")(inp)
    x = L.BatchNormalization(name="bn1")(x)
    x = L.ReLU(name="relu1")(x)
    x = L.Conv2D(24, 3, strides=2, padding="same", name="conv2")(x)
    x = L.BatchNormalization(name="bn2")(x)
    x = L.ReLU(name="relu2")(x)
    x = L.MaxPooling2D(name="pool")(x)
    x = L.Conv2D(32, 3, padding="same", activation="relu", name="conv3")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    x = L.Dense(20, activation="relu", name="fc1")(x)
    out = L.Dense(classes, name="logits")(x)
    return _randomize_bn(keras.Model(inp, out, name="chain"), seed)


def residual_cnn(seed=0, input_shape=(16, 16, 3), classes=10):
    keras.utils.set_random_seed(seed)
    inp = keras.Input(input_shape)
    x = L.Conv2D(16, 3, padding="same", name="stem")(inp)
    x = L.BatchNormalization(name="stem_bn")(x)
    stem = L.ReLU(name="stem_relu")(x)
    y = L.Conv2D(12, 3, padding="same", activation="relu", name="block_a")(stem)
    y = L.Conv2D(16, 3, padding="same", name="block_b")(y)
    y = L.BatchNormalization(name="block_bn")(y)
    x = L.Add(name="add")([stem, y])
    x = L.ReLU(name="add_relu")(x)
    shortcut = L.Conv2D(24, 1, strides=2, name="proj")(x)
    z = L.Conv2D(24, 3, strides=2, padding="same", activation="relu", name="block2_a")(x)
    x = L.Add(name="add2")([shortcut, z])
    x = L.GlobalAveragePooling2D(name="gap")(x)
    out = L.Dense(classes, name="logits")(x)
    return _randomize_bn(keras.Model(inp, out, name="residual"), seed)


def concat_cnn(seed=0, input_shape=(16, 16, 3), classes=10):
    keras.utils.set_random_seed(seed)
    inp = keras.Input(input_shape)
    a = L.Conv2D(8, 3, padding="same", activation="relu", name="branch_a")(inp)
    b = L.Conv2D(12, 1, padding="same", activation="relu", name="branch_b")(inp)
    b2 = L.Conv2D(16, 3, padding="same", activation="relu", name="branch_b2")(b)
    x = L.Concatenate(name="concat")([a, b2, a])
    x = L.BatchNormalization(name="concat_bn")(x)
    x = L.Conv2D(20, 3, strides=2, padding="same", activation="relu", name="fuse")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    out = L.Dense(classes, name="logits")(x)
    return _randomize_bn(keras.Model(inp, out, name="concat"), seed)


def depthwise_cnn(seed=0, input_shape=(16, 16, 3), classes=10):
    keras.utils.set_random_seed(seed)
    inp = keras.Input(input_shape)
    x = L.Conv2D(16, 3, strides=2, padding="same", name="stem")(inp)
    x = L.BatchNormalization(name="stem_bn")(x)
    x = L.ReLU(6.0, name="stem_relu")(x)
    x = L.ZeroPadding2D(name="pad")(x)
    x = L.DepthwiseConv2D(3, depth_multiplier=2, name="dw")(x)
    x = L.BatchNormalization(name="dw_bn")(x)
    x = L.ReLU(6.0, name="dw_relu")(x)
    x = L.Conv2D(24, 1, name="pw")(x)
    x = L.BatchNormalization(name="pw_bn")(x)
    x = L.ReLU(6.0, name="pw_relu")(x)
    x = L.SeparableConv2D(32, 3, padding="same", depth_multiplier=1, activation="relu", name="sep")(x)
    x = L.SeparableConv2D(16, 3, padding="same", depth_multiplier=2, name="sep2")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    out = L.Dense(classes, name="logits")(x)
    return _randomize_bn(keras.Model(inp, out, name="depthwise"), seed)


def se_cnn(seed=0, input_shape=(16, 16, 3), classes=10):
    """A squeeze-and-excitation block: the excitation's channels broadcast onto the features."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input(input_shape)
    x = L.Conv2D(16, 3, padding="same", activation="relu", name="conv1")(inp)
    s = L.GlobalAveragePooling2D(name="squeeze")(x)
    s = L.Dense(8, activation="relu", name="se_reduce")(s)
    s = L.Dense(16, activation="sigmoid", name="se_expand")(s)
    s = L.Reshape((1, 1, 16), name="se_reshape")(s)
    x = L.Multiply(name="excite")([x, s])
    x = L.Conv2D(24, 3, padding="same", activation="relu", name="conv2")(x)
    g = L.GlobalAveragePooling2D(keepdims=True, name="squeeze2")(x)
    g = L.Conv2D(24, 1, activation="sigmoid", name="se2_expand")(g)
    x = L.Multiply(name="excite2")([x, g])
    x = L.GlobalAveragePooling2D(name="gap")(x)
    out = L.Dense(classes, name="logits")(x)
    return keras.Model(inp, out, name="se")


def images(n=8, shape=(16, 16, 3), seed=1):
    return np.random.default_rng(seed).random((n,) + tuple(shape)).astype("float32")


ALL = {
    "chain": chain_cnn,
    "residual": residual_cnn,
    "concat": concat_cnn,
    "depthwise": depthwise_cnn,
    "se": se_cnn,
}
