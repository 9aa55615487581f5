"""The one table of layer handlers, keyed by layer class; a lookup walks the class's MRO.

Every part of tfmc that needs to know what a layer does with channels,
weights, MACs or bits asks ``handler_for(layer)``: the graph analysis,
pruning (surgery, selection, masking, reconstruction), the cost model, the
AMC budget, latency tables, quantization, GMPQ, BOPs and export. A subclass
inherits its nearest registered base's handler, so ``MyConv(Conv2D)``
prunes like a Conv2D until it is registered itself.
"""
import inspect

from tfmc.errors import UsageError
from tfmc.layers.channelwise import Channelwise
from tfmc.layers.handler import LayerHandler
from tfmc.layers.structural import PassThrough

_TABLE = {}
_UNKNOWN = LayerHandler()

# Ready handlers a user may name instead of writing a LayerHandler.
READY = {
    "passthrough": PassThrough,
    "channelwise": Channelwise,
}


def register_layer(layer_class, handler):
    """Tell tfmc how ``layer_class`` (and its subclasses) treats channels.

    Args:
      layer_class: a tf_keras Layer subclass.
      handler: a ``tfmc.layers.LayerHandler`` instance, or the name of a
        ready one: "passthrough" (channels pass unchanged, no weights to
        slice: an element-wise activation, say) or "channelwise" (one weight
        per channel on the last axis, sliced as BatchNormalization's).

    Returns:
      The handler now registered for ``layer_class``.

    Raises:
      tfmc.UsageError: ``layer_class`` is not a class, or ``handler`` is
        neither a LayerHandler nor a ready name (the message lists them).

    Example:
      >>> class Scale(keras.layers.Layer):  # one learned factor per channel
      ...     def build(self, shape):
      ...         self.gamma = self.add_weight("gamma", shape[-1:], initializer="ones")
      ...     def call(self, x):
      ...         return x * self.gamma
      >>> tfmc.register_layer(Scale, "channelwise")  # doctest: +ELLIPSIS
      <tfmc.layers.channelwise.Channelwise object at ...>
    """
    if not inspect.isclass(layer_class):
        raise UsageError(f"register_layer needs a layer class, got {layer_class!r}")
    if isinstance(handler, str):
        if handler not in READY:
            raise UsageError(f"unknown ready handler {handler!r}; expected one of {sorted(READY)} "
                             "or a tfmc.layers.LayerHandler instance")
        handler = READY[handler]()
    if not isinstance(handler, LayerHandler):
        raise UsageError(f"handler must be a tfmc.layers.LayerHandler instance or one of {sorted(READY)}, "
                         f"got {type(handler).__name__}")
    _TABLE[layer_class] = handler
    return handler


def unregister_layer(layer_class):
    """Remove ``layer_class``'s own entry (its subclasses fall back to the next registered base)."""
    _TABLE.pop(layer_class, None)


def handler_for(layer):
    """The handler of ``layer``: its class's, or its nearest registered base class's, or the unknown-layer one."""
    for cls in type(layer).__mro__:
        handler = _TABLE.get(cls)
        if handler is not None:
            return handler
    return _UNKNOWN


def registered():
    """{layer class: handler} of every registered class (a copy)."""
    return dict(_TABLE)
