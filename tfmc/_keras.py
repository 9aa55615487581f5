"""The single place tfmc imports Keras from (Keras 2, ``tf_keras``)."""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

_CUSTOM_OBJECTS = {}


def register(obj):
    """Register a tfmc layer or config so saved models that use it load back."""
    _CUSTOM_OBJECTS[obj.__name__] = obj
    return keras.utils.register_keras_serializable(package="tfmc")(obj)


def custom_objects():
    """All tfmc classes saved models may reference, by class name."""
    return dict(_CUSTOM_OBJECTS)


def require_graph_model(model):
    """Raise a clear error unless ``model`` is a functional or built Sequential tf_keras model."""
    if not isinstance(model, keras.Model):
        kind = type(model).__module__ + "." + type(model).__name__
        hint = " (a Keras 3 model? tfmc needs tf_keras, Keras 2)" if kind.startswith("keras.") else ""
        raise TypeError(f"expected a tf_keras Model, got {kind}{hint}")
    if isinstance(model, keras.Sequential) and not model._is_graph_network:
        raise ValueError(
            f"Sequential model {model.name!r} has no known input shape; build it with an "
            "Input layer or input_shape=... so its graph can be analysed"
        )
    if not getattr(model, "_is_graph_network", False):
        raise TypeError(
            f"model {model.name!r} is a subclassed {type(model).__name__}; tfmc needs a functional "
            "or Sequential model, because channel coupling is read from the layer graph"
        )
    return model
