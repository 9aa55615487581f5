"""LayerHandler: everything tfmc knows about one layer class, in one object.

A handler answers, for the layers of its class:

- the channel rule in the graph (``visit``): whether the layer produces new
  channels, passes them, merges, concatenates, reshapes or freezes them;
- how its weights slice on the input and output channel axes
  (``pruned_config``, ``slice_weights``) and how its input channels are
  zeroed (``zero_inputs``, the masked twin of slicing);
- its contribution to channel importance (``input_norm``: the norm of the
  weights that read each input channel);
- its MACs and parameters at given channel counts (``macs``, ``params``);
- whether it can be refitted by least squares (``refittable``);
- which bit widths and LiteRT ops it maps to (``bits_kind``, ``takes_bits``,
  ``litert_ops``), whether it computes with weights of its own for the
  quantizer (``weighted``), and whether latency tables cover it
  (``latency``).

The defaults describe a layer tfmc knows nothing about: it freezes every
channel group it touches and costs nothing. Handlers are registered by class
in ``tfmc.layers.registry``; ``tfmc.register_layer`` adds a user's own.
"""
import numpy as np


class LayerHandler:
    """Base handler: an unknown layer, frozen with a reason that says how to register it.

    Attributes:
      kind: a short name for the layer family ("conv", "dense", "batchnorm",
        ...); ``tfmc.graph.layer_kind`` returns it.
      weighted: the layer computes with weights of its own (the quantizer
        annotates around it as around a conv).
      bits_kind: the key under which bit-width search spaces list it
        ("conv", "dense", "depthwise"), or None.
      litert_ops: the LiteRT builtin ops its weights end up in.
      latency: latency tables measure it on a channel grid.
      feature_map: its 4-D output is a convolution feature map (Grad-CAM).
      shared_ok: it may be called more than once and still be analysed.
    """

    kind = "other"
    weighted = False
    bits_kind = None
    litert_ops = ()
    latency = False
    feature_map = False
    shared_ok = False

    def kind_of(self, layer):
        """The kind of this particular ``layer`` (a handler may tell configurations apart)."""
        return self.kind

    # ---- the channel rule --------------------------------------------------------
    def visit(self, graph, call, in_maps):
        """Record ``call`` in ``graph`` (a ChannelGraph): here, freeze everything it touches."""
        layer = call.layer
        name = type(layer).__name__
        graph.freeze(call, in_maps, f"passes through unsupported layer {name} {layer.name!r} "
                                    f"(tell tfmc how it treats channels with tfmc.register_layer({name}, ...))")

    # ---- pruning -------------------------------------------------------------------
    def pruned_config(self, layer, config, in_keep, out_keep):
        """``layer``'s config when it keeps input positions ``in_keep`` and output positions ``out_keep``."""
        return config

    def slice_weights(self, layer, weights, in_keep, out_keep):
        """``weights`` (``layer.get_weights()``) cut down to the kept input / output positions."""
        return weights

    def zero_inputs(self, layer, weights, positions):
        """Copy of ``weights`` with every weight that reads input ``positions`` zeroed (consumers only)."""
        raise ValueError(f"layer {layer.name!r} ({type(layer).__name__}) does not consume channels")

    def input_norm(self, layer, weights, p=1):
        """Per input position: the Lp norm of the weights that read it (consumers only).

        With p=1 this is the L1 criterion of He et al. (AMC, ECCV 2018, section 3.3).
        """
        raise ValueError(f"layer {layer.name!r} ({type(layer).__name__}) does not consume channels")

    def refittable(self, layer):
        """Whether a consumer of this class can be refitted by least squares (``tfmc.prune.reconstruct``)."""
        return False

    # ---- costs ---------------------------------------------------------------------
    def macs(self, layer, input_shape, output_shape, cin, cout):
        """Multiply-accumulates of one call at batch 1 with ``cin`` input and ``cout`` output channels."""
        return 0

    def params(self, layer, kin, kout):
        """Weights of ``layer`` when it keeps ``kin`` input and ``kout`` output channels."""
        return int(layer.count_params())

    # ---- bits ------------------------------------------------------------------------
    def takes_bits(self, layer):
        """Whether a BitPolicy may give ``layer`` bit widths (tfmc.quantize and GMPQ can quantize it)."""
        return False


def norm_over(values, axes, p):
    """The Lp norm of ``values`` over ``axes``; p=1 sums absolute values exactly as numpy's sum does."""
    if p == 1:
        return np.abs(values).sum(axis=axes)
    return np.sqrt(np.square(values.astype(np.float64)).sum(axis=axes))


def other_axes(array, keep_axis):
    """Every axis of ``array`` except ``keep_axis`` (negative indices allowed)."""
    keep_axis %= array.ndim
    return tuple(a for a in range(array.ndim) if a != keep_axis)
