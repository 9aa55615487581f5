"""Build the smaller model: new layer configs, sliced weights copied across."""
import numpy as np

from tfmc._keras import custom_objects, keras


def _layer_plan(analysis, layer, keep):
    """(kind, kept input positions, kept output positions) of ``layer``, or None if untouched."""
    try:
        role = analysis.layer_io(layer.name)
    except KeyError:
        return None  # input layers
    if role["kind"] == "opaque" or not role["in"]:
        return None
    in_map, out_map = role["in"][0], role["out"][0]
    in_keep = analysis.tensor_keep(in_map, keep)
    out_keep = analysis.tensor_keep(out_map, keep)
    if len(in_keep) == len(in_map[0]) and len(out_keep) == len(out_map[0]):
        return None
    return role["kind"], in_keep, out_keep


def _pruned_config(layer, plan):
    config = layer.get_config()
    if plan is None:
        return config
    kind, _, out_keep = plan
    if kind in ("conv", "separable"):
        config["filters"] = int(len(out_keep))
    elif kind == "dense":
        config["units"] = int(len(out_keep))
    elif kind == "reshape":
        config["target_shape"] = tuple(config["target_shape"][:-1]) + (int(len(out_keep)),)
    return config


def slice_weights(weights, plan):
    """``weights`` of a layer cut down to the kept input / output channels of ``plan``."""
    if plan is None:
        return weights
    kind, in_keep, out_keep = plan
    if kind in ("conv", "dense"):
        kernel = np.take(np.take(weights[0], in_keep, axis=-2), out_keep, axis=-1)
        return [kernel] + [w[out_keep] for w in weights[1:]]
    if kind == "depthwise":
        kernel = np.take(weights[0], in_keep, axis=-2)
        multiplier = weights[0].shape[-1]
        rest = [w.reshape(-1, multiplier)[in_keep].reshape(-1) for w in weights[1:]]
        return [kernel] + rest
    if kind == "separable":
        depthwise, pointwise = weights[0], weights[1]
        cin, multiplier = depthwise.shape[-2], depthwise.shape[-1]
        depthwise = np.take(depthwise, in_keep, axis=-2)
        window = pointwise.shape[:-2]
        pointwise = pointwise.reshape(window + (cin, multiplier, pointwise.shape[-1]))
        pointwise = np.take(np.take(pointwise, in_keep, axis=-3), out_keep, axis=-1)
        pointwise = pointwise.reshape(window + (len(in_keep) * multiplier, len(out_keep)))
        return [depthwise, pointwise] + [w[out_keep] for w in weights[2:]]
    if kind == "batchnorm":
        return [w[in_keep] for w in weights]
    if kind == "prelu":
        if weights[0].shape[-1] == 1:  # one slope shared by every channel
            return weights
        return [np.take(weights[0], in_keep, axis=-1)]
    return weights


def build_pruned(analysis, keep):
    """A new model with the channels not in ``keep`` removed.

    Args:
      analysis: the ChannelGraph of the original model.
      keep: {group name: boolean mask over the group's channels}; groups not
        listed keep everything.

    Returns:
      A new tf_keras model with the same layer names and topology and smaller
      kernels, biases, BN statistics and depthwise kernels. The original model
      is not modified.
    """
    model = analysis.model
    plans = {layer.name: _layer_plan(analysis, layer, keep) for layer in model.layers}

    def clone_layer(layer):
        config = _pruned_config(layer, plans.get(layer.name))
        return layer.__class__.from_config(config)

    with keras.utils.custom_object_scope(custom_objects()):
        pruned = keras.models.clone_model(model, clone_function=clone_layer)
    for layer in model.layers:
        new_layer = pruned.get_layer(layer.name)
        weights = slice_weights(layer.get_weights(), plans.get(layer.name))
        expected = [tuple(w.shape) for w in new_layer.get_weights()]
        got = [tuple(w.shape) for w in weights]
        if expected != got:
            raise RuntimeError(
                f"internal error: sliced weights of {layer.name!r} have shapes {got}, the pruned layer expects {expected}"
            )
        new_layer.set_weights(weights)
    return pruned
