"""Turn a float model and a BitPolicy into a tfmot quantization-aware-training model."""
import tensorflow_model_optimization as tfmot
from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
    default_8bit_quantize_configs as tfmot_configs,
)
from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
    default_8bit_quantize_registry as tfmot_registry,
)
from tensorflow_model_optimization.python.core.quantization.keras import quantize_layer as tfmot_quantize_layer

from tfmc import graph as graph_lib
from tfmc._keras import custom_objects, keras, require_graph_model, tf
from tfmc.bops import check_policy_layers
from tfmc.errors import PolicyError
from tfmc.layers import handler_for
from tfmc.policy import BitPolicy
from tfmc.quant.configs import LayerBitsQuantizeConfig, kernel_spec
from tfmc.quant.quantizers import activation_quantizer

_qk = tfmot.quantization.keras
_default8 = _qk.default_8bit
L = keras.layers


class _PolicyBits:
    """Where each quantizer of the QAT model sits and its width, decided on the float model.

    Attributes:
      annotated: names of the layers tfmot quantizes (every layer but the
        float ones and the BatchNorm / ReLU layers that fold into them).
      weight_bits: {policy layer: weight bits}.
      output_bits: {producer layer: bits of its output quantizer}: the
        highest activation bits among the policy layers that read it. A
        producer is the layer whose output tfmot quantizes, found by looking
        back from the reader through layers tfmot leaves unquantized
        (Dropout, Flatten, Reshape, MaxPooling, ZeroPadding, ...); for the
        model input it is the input layer (tfmot's QuantizeLayer follows it).
    """

    def __init__(self, model, policy, registry):
        self.weight_bits = {name: bits.weight_bits for name, bits in policy.items()}
        self._registry = registry
        calls = graph_lib.layer_calls(model)
        producer = {graph_lib._tensor_key(t): t._keras_history.layer for t in model.inputs}
        producer.update({out: call.layer for call in calls for out in call.outputs})
        self._inputs = {call.layer.name: [producer.get(key) for key in call.inputs] for call in calls}
        self._consumers = {}
        for call in calls:
            for source in self._inputs[call.layer.name]:
                if source is not None:
                    self._consumers.setdefault(source.name, []).append(call.layer)
        self._input_names = {layer.name for layer in model._input_layers}
        self.annotated = self._annotate(model, policy, calls)
        self.output_bits = {}
        for name, bits in policy.items():
            for source in self._producers(name):
                self.output_bits[source] = max(self.output_bits.get(source, 0), bits.activation_bits)

    def _is_weight_layer(self, layer):
        return handler_for(layer).weighted  # computes with weights of its own (tfmc.layers)

    def _folded_into(self, layer):
        """The BatchNorm and ReLU layers after weight layer ``layer`` that the converter folds into its op."""
        folded, current = [], layer
        for kind in (L.BatchNormalization, (L.ReLU, L.Activation)):
            consumers = self._consumers.get(current.name, [])
            if len(consumers) != 1 or not isinstance(consumers[0], kind):
                continue
            if isinstance(consumers[0], L.Activation) and consumers[0].get_config()["activation"] != "relu":
                continue
            current = consumers[0]
            folded.append(current)
        return folded

    def _reaches_policy(self, layer, step, policy):
        """Whether a policy layer lies next to ``layer`` in direction ``step``, across layers without weights."""
        seen, stack = set(), [layer]
        while stack:
            for other in step(stack.pop()):
                if other is None or other.name in seen:
                    continue
                seen.add(other.name)
                if other.name in policy:
                    return True
                if not self._is_weight_layer(other):
                    stack.append(other)
        return False

    def _annotate(self, model, policy, calls):
        float_folded = set()
        for call in calls:
            if self._is_weight_layer(call.layer) and call.layer.name not in policy:
                float_folded.update(layer.name for layer in self._folded_into(call.layer))
        annotated = set(policy)
        upstream = lambda layer: self._inputs.get(layer.name, [])  # noqa: E731
        downstream = lambda layer: self._consumers.get(layer.name, [])  # noqa: E731
        for call in calls:
            layer = call.layer
            if self._is_weight_layer(layer) or layer.name in float_folded:
                continue
            if isinstance(layer, L.BatchNormalization):
                # tfmot folds a BatchNorm only after a quantized Conv / Dense without activation.
                source = upstream(layer)[0]
                supported = (source is not None and source.name in annotated
                             and source.get_config().get("activation") == "linear")
            else:
                supported = self._registry.supports(layer)
            # Layers between float layers stay float: quantizing them would add a
            # QUANTIZE / DEQUANTIZE pair and nothing else.
            if supported and (self._reaches_policy(layer, upstream, policy)
                              or self._reaches_policy(layer, downstream, policy)):
                annotated.add(layer.name)
        return annotated

    def _passes_through(self, layer):
        """Whether tfmot leaves ``layer``'s output unquantized (its registry's no-quantize layers)."""
        if layer.name not in self.annotated or not self._registry.supports(layer):
            return False
        config = self._registry.get_quantize_config(layer)
        return (type(config) is tfmot_registry.Default8BitQuantizeConfig and not config.weight_attrs
                and not config.activation_attrs and not config.quantize_output)

    def _producers(self, name):
        found = []
        for source in self._inputs[name]:
            while source is not None and self._passes_through(source) and len(self._inputs[source.name]) == 1:
                source = self._inputs[source.name][0]
            if source is not None:
                found.append(source.name)
        return found

    def bits_config(self, name, config):
        """``config`` with ``name``'s weight and output bits, if the policy sets any (its quantizers are tfmot's at 8 / 8)."""
        if name not in self.weight_bits and name not in self.output_bits:
            return config
        return LayerBitsQuantizeConfig(config, self.weight_bits.get(name, 8), self.output_bits.get(name, 8))


class _PolicyRegistry(_qk.QuantizeRegistry):
    """tfmot's Default8BitQuantizeRegistry with the policy's bit widths.

    For a layer with bits it returns tfmot's config wrapped in a
    LayerBitsQuantizeConfig; for a float layer whose output a quantized layer
    reads (tfmot asks for it to place the float -> int8 boundary), a config
    that quantizes only the output, at the reader's activation bits.
    """

    def __init__(self, bits=None):
        self._default = _default8.Default8BitQuantizeRegistry()
        self.bits = bits

    def supports(self, layer):
        if self.bits is not None and layer.name not in self.bits.annotated and layer.name in self.bits.output_bits:
            return True
        return self._default.supports(layer)

    def get_quantize_config(self, layer):
        if self.bits is None:
            return self._default.get_quantize_config(layer)
        if layer.name not in self.bits.annotated:
            config = tfmot_registry.Default8BitQuantizeConfig([], [], True)
        else:
            config = self._default.get_quantize_config(layer)
        return self.bits.bits_config(layer.name, config)


class _PolicyLayout(_default8.Default8BitQuantizeLayoutTransform):
    """tfmot's 8-bit layout transforms, then the policy's bits on the configs they set.

    The transforms give fused layers their own configs (a BatchNorm's output
    quantizer after Conv-BatchNorm, no quantizer on a Conv before its ReLU)
    and add a QuantizeLayer after the model input; those configs get the
    policy's widths here. A Conv whose ReLU the transforms fuse is left with
    no quantizer at all by tfmot (the converter then quantizes its weights to
    8 bits); a policy layer keeps its weight quantizer so its weights are
    trained on its grid.
    """

    def __init__(self, bits, registry):
        self.bits = bits
        self._registry = registry

    def apply(self, model, layer_quantize_map):
        model, layer_quantize_map = super().apply(model, layer_quantize_map)
        for layer in model.layers:
            if isinstance(layer, tfmot_quantize_layer.QuantizeLayer):
                source = layer._inbound_nodes[0].inbound_layers
                bits = self.bits.output_bits.get(getattr(source, "name", None), 8)
                if bits != 8:
                    quantizer = activation_quantizer(bits, input_layer=True)
                    entry = layer_quantize_map.setdefault(layer.name, {})
                    entry["quantizer"] = keras.utils.serialize_keras_object(quantizer)
                continue
            entry = layer_quantize_map.get(layer.name)
            if entry is None:
                continue
            config = entry.get("quantize_config")
            if config is None:
                continue
            if isinstance(config, tfmot_configs.NoOpQuantizeConfig) and layer.name in self.bits.weight_bits:
                kernel_only = self._registry._default.get_quantize_config(layer)
                config = type(kernel_only)(kernel_only.weight_attrs, [], False)
            entry["quantize_config"] = self.bits.bits_config(layer.name, config)
        return model, layer_quantize_map


class _PolicyScheme(_qk.QuantizeScheme):
    """tfmot's Default8BitQuantizeScheme with per-layer bit widths from a BitPolicy."""

    def __init__(self, bits):
        self._registry = _PolicyRegistry(bits)
        self._layout = _PolicyLayout(bits, self._registry)

    def get_layout_transformer(self):
        return self._layout

    def get_quantize_registry(self):
        return self._registry


def quantize(model, policy):
    """A quantization-aware-training copy of ``model`` with per-layer bit widths.

    The QAT model is built as tfmot's ``quantize_model`` builds it (its
    Default8BitQuantizeScheme: Conv-BatchNorm-ReLU folding, an input
    QuantizeLayer, output quantizers where TFLite keeps int8 tensors), so
    with every layer at 8 / 8 it is tfmot's model and converts to the same
    int8 .tflite. The policy then sets, per layer: the width of its weight
    quantizer (``weight_bits``) and the width of the quantizer on the
    activations it reads (``activation_bits``), which is the output quantizer
    of the layer producing them after fusion (the ReLU after a Conv-BN, an
    Add, the input QuantizeLayer, looking through Dropout / Flatten /
    Reshape / MaxPooling). When several policy layers read one tensor with
    different widths, the highest wins (no reader gets fewer bits than it
    asked for). Activations below 8 bits use LearnedRangeQuantizer.

    Layers the policy leaves out stay float, with the BatchNorm and ReLU
    that fold into them; layers without weights are quantized when they
    touch a quantized layer, so QUANTIZE / DEQUANTIZE appear only at
    float-int8 boundaries. A float layer between two quantized ones reads
    and writes fake-quantized tensors, which the TFLite converter alone
    would turn int8; ``tfmc.export.to_tflite(mode="qat")`` then converts in
    the converter's strict QDQ mode, so it stays float with a DEQUANTIZE
    before and a QUANTIZE after it. One limit comes from tfmot: it keeps the
    input QuantizeLayer at 8 bits when the model input feeds several
    layers. Weights below 8 bits use
    StoredGridWeightsQuantizer, so the .tflite stores them (INT4 at 4 bits
    or fewer) on exactly the trained grid. The result trains with ``model.fit`` (also under
    a tf.distribute strategy) and saves / loads with tfmc.io
    (``qat_custom_objects``). ``model`` is not changed.

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
        if kernel_spec(layer) is None:
            raise PolicyError(
                f"layer {name!r} is a {type(layer).__name__}; tfmc.quantize supports Conv2D, "
                "DepthwiseConv2D and Dense"
            )
    bits = _PolicyBits(model, policy, _default8.Default8BitQuantizeRegistry())

    def annotate(layer):
        clone = layer.__class__.from_config(layer.get_config())
        return _qk.quantize_annotate_layer(clone) if layer.name in bits.annotated else clone

    annotated = keras.models.clone_model(model, clone_function=annotate)
    for layer, target in zip(model.layers, annotated.layers):
        if layer.weights:
            getattr(target, "layer", target).set_weights(layer.get_weights())
    with _qk.quantize_scope({**_TFMOT_CONFIGS, **custom_objects()}):
        return _qk.quantize_apply(annotated, scheme=_PolicyScheme(bits))


class QuantizeLayer(tfmot_quantize_layer.QuantizeLayer):
    """tfmot's QuantizeLayer (the model-input quantizer) that a saved .keras model loads back into.

    tfmot's ``QuantizeLayer.build`` never marks the layer built, so loading a
    .keras file builds it twice (once from the stored build config, once when
    the graph is rebuilt) and the saved variables no longer match ("expected
    5 variables, but received 3"); tfmot's own ``quantize_model`` output fails
    the same way. This class builds only with the graph. It keeps tfmot's
    class name, because a .keras file stores each layer's variables under it.
    ``qat_custom_objects`` loads QuantizeLayer as this class.
    """

    def build_from_config(self, config):
        # The functional graph's rebuild calls build; building here as well
        # would create the variables twice.
        del config


class QuantizeWrapperV2(_qk.QuantizeWrapperV2):
    """tfmot's QuantizeWrapperV2 that a saved .keras model loads back into.

    ``quantize_apply`` wraps layers that are already built, so the wrapper
    lists the layer's weights before its own; a loaded wrapper builds its
    layer later and lists fewer, and .keras loading, which matches variables
    by count and order, fails ("expected 4 variables, but received 6").
    Building the layer first restores the order. Same class name as tfmot's,
    because a .keras file stores each layer's variables under it.
    """

    def build(self, input_shape):
        if not self.layer.built:
            self.layer.build(input_shape)
        super().build(input_shape)


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
    """The classes a saved QAT model refers to: tfmot's wrappers, quantizers and configs, and tfmc's.

    Pass them to ``tfmc.io.load_model(path, custom_objects=...)``.

    Example:
      >>> qat = tfmc.io.load_model("qat.keras", custom_objects=qat_custom_objects())
    """
    objects = {}
    for mapping in _qk.quantize_scope().custom_objects:
        objects.update(mapping)
    objects.update(_TFMOT_CONFIGS)
    objects["QuantizeLayer"] = QuantizeLayer
    objects["QuantizeWrapperV2"] = QuantizeWrapperV2
    objects.update(custom_objects())
    return objects


# tfmot's 8-bit configs that LayerBitsQuantizeConfig wraps; quantize_scope does not list them all.
_TFMOT_CONFIGS = {
    cls.__name__: cls for cls in (
        tfmot_registry.Default8BitQuantizeConfig, tfmot_registry.Default8BitConvQuantizeConfig,
        tfmot_registry.Default8BitActivationQuantizeConfig, tfmot_configs.Default8BitOutputQuantizeConfig,
        tfmot_configs.NoOpQuantizeConfig,
    )
}
