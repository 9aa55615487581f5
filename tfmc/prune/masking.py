"""Channel masks as weights: zero what consumers read from dropped channels.

A pruned model computes exactly what the original computes when every
consumer's weights for the dropped input channels are zero. This is the
reference the tests compare against, and it lets a search evaluate a policy
by reassigning weights of one model instead of rebuilding it.
"""
import numpy as np

from tfmc.layers import handler_for


def dropped_input_positions(analysis, keep):
    """{consumer layer name: input positions it no longer reads} under ``keep`` masks."""
    result = {}
    for name in analysis.prunable_consumers():
        channel_map = analysis.layer_io(name)["in"][0]
        kept = analysis.tensor_keep(channel_map, keep)
        dropped = np.setdiff1d(np.arange(len(channel_map[0])), kept)
        if len(dropped):
            result[name] = dropped
    return result


def zero_input_channels(layer, weights, positions):
    """Copy of ``weights`` (``layer.get_weights()``) with input ``positions`` zeroed, by ``layer``'s handler."""
    return handler_for(layer).zero_inputs(layer, weights, positions)


def masked_copy(model, analysis, keep):
    """A clone of ``model`` (same shapes) computing what the pruned model computes."""
    from tfmc._keras import keras

    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    for name, positions in dropped_input_positions(analysis, keep).items():
        layer = clone.get_layer(name)
        layer.set_weights(zero_input_channels(layer, layer.get_weights(), positions))
    return clone
