"""Build the smaller model: new layer configs, sliced weights copied across (each layer's handler slices)."""
from tfmc._keras import custom_objects, keras


def _layer_plan(analysis, layer, keep):
    """(handler, kept input positions, kept output positions) of ``layer``, or None if untouched."""
    try:
        role = analysis.layer_io(layer.name)
    except KeyError:
        return None  # input layers
    if role["handler"] is None or not role["in"]:
        return None
    in_map, out_map = role["in"][0], role["out"][0]
    in_keep = analysis.tensor_keep(in_map, keep)
    out_keep = analysis.tensor_keep(out_map, keep)
    if len(in_keep) == len(in_map[0]) and len(out_keep) == len(out_map[0]):
        return None
    return role["handler"], in_keep, out_keep


def _pruned_config(layer, plan):
    config = layer.get_config()
    if plan is None:
        return config
    handler, in_keep, out_keep = plan
    return handler.pruned_config(layer, config, in_keep, out_keep)


def slice_weights(layer, weights, plan):
    """``weights`` of ``layer`` cut down to the kept input / output channels of ``plan`` (its handler's rule)."""
    if plan is None:
        return weights
    handler, in_keep, out_keep = plan
    return handler.slice_weights(layer, weights, in_keep, out_keep)


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
        weights = slice_weights(layer, layer.get_weights(), plans.get(layer.name))
        expected = [tuple(w.shape) for w in new_layer.get_weights()]
        got = [tuple(w.shape) for w in weights]
        if expected != got:
            raise RuntimeError(
                f"internal error: sliced weights of {layer.name!r} have shapes {got}, the pruned layer expects {expected}"
            )
        new_layer.set_weights(weights)
    return pruned
