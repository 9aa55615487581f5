"""Grad-CAM attribution maps and the capacity-aware attribution imitation loss of GMPQ.

GMPQ (Wang et al., "Generalizable Mixed-Precision Quantization via
Attribution Rank Preservation", ICCV 2021) asks the quantized network to look
at the same image regions as the float one. The map is Grad-CAM at the last
convolutional feature map, for each model's own predicted class.
"""
from tfmc import graph as graph_lib
from tfmc._keras import keras, tf
from tfmc.errors import PolicyError
from tfmc.layers import handler_for

L = keras.layers
# Layers that belong to a conv block's output: Grad-CAM is read after them.
_BLOCK_TAIL = (L.BatchNormalization, L.ReLU, L.LeakyReLU, L.ELU, L.PReLU, L.Activation)


def feature_layer(model):
    """Name of the layer whose output is the last conv block's feature map (B x H x W x C).

    The last Conv2D / DepthwiseConv2D / SeparableConv2D with a 4-D output, followed
    through a BatchNormalization and activation that alone consume it.

    Raises:
      ValueError: the model has no such convolution.
    """
    calls = graph_lib.layer_calls(model)
    convs = [c for c in calls if handler_for(c.layer).feature_map and len(c.output_shapes[0] or ()) == 4]
    if not convs:
        raise PolicyError(
            f"GMPQ attribution needs a convolutional layer (Conv2D, DepthwiseConv2D or SeparableConv2D) "
            f"with a 4-D feature map before the classifier; model {model.name!r} has none"
        )
    current = convs[-1]
    while True:
        consumers = [c for c in calls if current.outputs[0] in c.inputs]
        if len(consumers) != 1:
            break
        nxt = consumers[0]
        tail = isinstance(nxt.layer, _BLOCK_TAIL) and len(nxt.output_shapes[0] or ()) == 4
        if not tail or (isinstance(nxt.layer, L.Activation) and nxt.layer.get_config()["activation"] == "softmax"):
            break
        current = nxt
    return current.layer.name


def feature_model(model, layer_name=None):
    """A model sharing ``model``'s layers that returns (feature map, output scores).

    Args:
      model: a functional or Sequential tf_keras model with one output.
      layer_name: the feature layer; default ``feature_layer(model)``.
    """
    name = layer_name or feature_layer(model)
    # The layer's output in this model's own graph: a layer reused by clones
    # (tfmot's quantize_apply keeps float layers) has nodes in other graphs too.
    outputs = [n.outputs for nodes in model._nodes_by_depth.values() for n in nodes if n.layer.name == name]
    if not outputs:
        raise ValueError(f"model {model.name!r} has no layer {name!r}")
    return keras.Model(model.inputs, [outputs[0], model.outputs[0]], name=f"{model.name}_features")


def attribution_map(features_and_scores, x, training=False):
    """Grad-CAM maps of a batch for each sample's own predicted class.

    With A the feature map and y_c the score of the predicted class c:
    g_k = sum over (h, w) of dy_c/dA_hwk (a spatial sum), M = ReLU(sum_k g_k A_k).
    Called under an outer GradientTape the map stays differentiable (the
    inner tape's gradient is recorded: double backprop).

    Args:
      features_and_scores: a model returning (A: B x H x W x C, scores: B x classes),
        as ``feature_model`` builds.
      x: a batch of inputs.
      training: passed to the model call.

    Returns:
      (maps B x H x W, scores B x classes).

    Example:
      >>> maps, scores = attribution_map(feature_model(model), images)
    """
    with tf.GradientTape() as tape:
        features, scores = features_and_scores(x, training=training)
        predicted = tf.argmax(scores, axis=-1)
        chosen = tf.reduce_sum(tf.gather(scores, predicted, axis=1, batch_dims=1))
    grads = tape.gradient(chosen, features)
    channel_weights = tf.reduce_sum(grads, axis=[1, 2], keepdims=True)
    return tf.nn.relu(tf.reduce_sum(channel_weights * features, axis=-1)), scores


def normalize_maps(maps):
    """Each sample's map divided by its L2 norm (flattened): B x (H*W)."""
    flat = tf.reshape(maps, [tf.shape(maps)[0], -1])
    return flat / (tf.norm(flat, axis=1, keepdims=True) + 1e-12)


def capacity_exponent(expected_bits, rho=24.0):
    """GMPQ's capacity-aware exponent p = rho * mean over layers of 1 / (E[b_w] E[b_a]).

    Computed from detached values: no gradient flows through p. Uniform
    2/2 bits give 6, 4/4 give 1.5.

    Args:
      expected_bits: [(E[b_w], E[b_a])] per searched layer.
      rho: the scale, 24 in the paper.
    """
    inverse = [1.0 / (tf.stop_gradient(w) * tf.stop_gradient(a)) for w, a in expected_bits]
    return rho * tf.add_n(inverse) / float(len(inverse))


def attribution_loss(teacher_maps, student_maps, p, per_sample=False):
    """L_attr = mean over samples and pixels of (n(M_fp^p) - n(M_q))^2 (Wang et al., ICCV 2021).

    Raising the float teacher's map to ``p`` before normalising keeps only its
    most salient regions for a low-capacity student to imitate.

    Args:
      teacher_maps: B x H x W float-model maps (constants).
      student_maps: B x H x W maps of the quantized model.
      p: the exponent (a float or scalar tensor).
      per_sample: return the B per-sample means instead of their mean.
    """
    teacher = normalize_maps(tf.pow(tf.stop_gradient(teacher_maps), p))
    per = tf.reduce_mean(tf.square(teacher - normalize_maps(student_maps)), axis=1)
    return per if per_sample else tf.reduce_mean(per)
