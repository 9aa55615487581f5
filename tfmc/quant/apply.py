"""Turn a float model and a BitPolicy into a tfmot quantization-aware-training model."""
import tensorflow_model_optimization as tfmot

from tfmc._keras import custom_objects, keras, require_graph_model, tf
from tfmc.bops import check_policy_layers
from tfmc.errors import PolicyError
from tfmc.policy import BitPolicy
from tfmc.quant.configs import LayerBitsQuantizeConfig, quantizable_class

_qk = tfmot.quantization.keras


class _KeepLayout:
    """A layout transform that changes nothing.

    tfmot's 8-bit transforms fold BatchNormalization and add 8-bit quantizers
    to neighbours of quantized layers (ReLUs, the model input); a policy
    names exactly the layers to quantize, so the graph is left as it is.
    """

    def apply(self, model, layer_quantize_map):
        return model, layer_quantize_map


class _OnlyAnnotated:
    """A registry that supports no layer by itself.

    tfmot adds 8-bit output quantizers to the layers feeding an annotated
    one when its registry supports them; here each quantized layer
    quantizes its own input at its own width, so nothing else is added.
    """

    def supports(self, layer):
        return False

    def get_quantize_config(self, layer):
        return None


class _PolicyScheme(_qk.QuantizeScheme):
    """Quantize exactly the annotated layers, with their configs, and leave the graph as it is."""

    def get_layout_transformer(self):
        return _KeepLayout()

    def get_quantize_registry(self):
        return _OnlyAnnotated()


def quantize(model, policy):
    """A quantization-aware-training copy of ``model`` with per-layer bit widths.

    Each Conv2D, DepthwiseConv2D or Dense layer that ``policy`` names gets
    fake-quantized weights (``weight_bits``) and fake-quantized input
    activations (``activation_bits``) through tfmot (quantize_annotate,
    quantize_scope, quantize_apply); layers the policy leaves out stay float.
    The result trains with ``model.fit`` and saves / loads with tfmc.io
    (its configs are registered Keras objects). ``model`` is not changed.

    Args:
      model: a functional or Sequential tf_keras model.
      policy: a BitPolicy, or a dict BitPolicy accepts.

    Returns:
      A new tf_keras model whose quantized layers are tfmot QuantizeWrapperV2
      named ``quant_<layer name>``, holding the float model's weights.

    Raises:
      ValueError: the policy names a layer the model lacks, or a layer that
        is not a Conv2D, DepthwiseConv2D or Dense, or bits outside 2..16.

    Example:
      >>> qat = tfmc.quantize(model, tfmc.BitPolicy({"conv1": (8, 8), "conv2": (4, 8)}))
      >>> qat.compile("adam", "sparse_categorical_crossentropy"); qat.fit(x, y)
    """
    require_graph_model(model)
    policy = policy if isinstance(policy, BitPolicy) else BitPolicy(policy)
    check_policy_layers(model, policy)
    for name in policy:
        layer = model.get_layer(name)
        if quantizable_class(layer) is None:
            raise PolicyError(
                f"layer {name!r} is a {type(layer).__name__}; tfmc.quantize supports Conv2D, "
                "DepthwiseConv2D and Dense"
            )

    def clone(layer):
        if layer.name not in policy:
            return layer.__class__.from_config(layer.get_config())
        cls, kernel_attr, per_axis = quantizable_class(layer)
        bits = policy[layer.name]
        config = LayerBitsQuantizeConfig(bits.weight_bits, bits.activation_bits, kernel_attr, per_axis)
        return _qk.quantize_annotate_layer(cls.from_config(layer.get_config()), config)

    annotated = keras.models.clone_model(model, clone_function=clone)
    # clone_model keeps the layer order; annotation wrappers get their own names
    for layer, target in zip(model.layers, annotated.layers):
        if layer.weights:
            (target.layer if hasattr(target, "quantize_config") else target).set_weights(layer.get_weights())
    with _qk.quantize_scope(custom_objects()):
        return _qk.quantize_apply(annotated, scheme=_PolicyScheme())


def quantized_kernel(wrapper):
    """The kernel of a QAT layer as inference sees it: fake-quantized with its stored ranges.

    Args:
      wrapper: a tfmot QuantizeWrapperV2 made by ``quantize``.

    Returns:
      A numpy array shaped like the float kernel.
    """
    for weight, quantizer, quantizer_vars in wrapper._weight_vars:
        return quantizer(tf.convert_to_tensor(weight), training=False, weights=quantizer_vars).numpy()
    raise ValueError(f"layer {wrapper.name!r} has no quantized weights")


def qat_custom_objects():
    """The classes a saved QAT model refers to: tfmot's wrappers and quantizers, and tfmc's configs.

    Pass them to ``tfmc.io.load_model(path, custom_objects=...)``.

    Example:
      >>> qat = tfmc.io.load_model("qat.keras", custom_objects=qat_custom_objects())
    """
    objects = {}
    for mapping in _qk.quantize_scope().custom_objects:
        objects.update(mapping)
    objects.update(custom_objects())
    return objects
