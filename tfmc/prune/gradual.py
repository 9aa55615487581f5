"""Pruning during training: mask channels step by step while the model trains, then strip them.

The Keras-native counterpart of tfmot's prune_low_magnitude /
UpdatePruningStep / strip_pruning for channels instead of weights:
``prunable`` inserts one ChannelMask per prunable channel group in front
of the group's consumers, ``UpdateMasks`` re-selects the kept channels by
importance as the schedule lowers the keep ratio, and ``strip`` removes the
masked channels for real with tfmc.prune's surgery.
"""
import numpy as np

from tfmc._keras import custom_objects, keras, require_graph_model, tf
from tfmc.errors import UsageError
from tfmc.graph import ChannelGraph, _tensor_key as _key
from tfmc.prune.mask_layers import ChannelMask
from tfmc.prune.schedules import ConstantKeepRatio, KeepRatioSchedule, PolynomialDecay
from tfmc.prune.select import channel_importance, resolve_keep_ratios, select_channels
from tfmc.prune.surgery import build_pruned


def mask_layers(model):
    """The ChannelMask layers of ``model``, in layer order (empty for a model without masks)."""
    return [layer for layer in model.layers if isinstance(layer, ChannelMask)]


def _require_masks(model, what):
    require_graph_model(model)
    masks = mask_layers(model)
    if not masks:
        raise UsageError(f"{what}: model {model.name!r} holds no ChannelMask layers; "
                         "make it with tfmc.prunable(model, ratios) first")
    return masks


def _fresh_layer(layer):
    with keras.utils.custom_object_scope(custom_objects()):
        if isinstance(layer, keras.Model):
            return keras.models.clone_model(layer)
        return layer.__class__.from_config(layer.get_config())


def _rebuild(model, keep_layer, read=None):
    """A functional model with ``model``'s graph, built from fresh copies of its layers and weights.

    Args:
      model: a functional or Sequential model.
      keep_layer: whether a layer is copied; a layer that is not copied
        passes its input on (how masks are taken out).
      read: optional ``read(layer, original input, new input)`` returning
        what the copy of ``layer`` reads instead (how masks go in).
    """
    tensors, copies = {}, {}
    for inp in model.inputs:
        tensors[_key(inp)] = keras.Input(batch_shape=tuple(inp.shape), dtype=inp.dtype, name=inp._keras_history[0].name)

    def lookup(t):
        return tensors[_key(t)] if hasattr(t, "_keras_history") else t

    for depth in sorted(model._nodes_by_depth, reverse=True):
        for node in model._nodes_by_depth[depth]:
            if node.is_input:
                continue
            layer = node.layer
            original, args, kwargs = layer._call_spec.split_out_first_arg(node.call_args, node.call_kwargs)
            inputs, args, kwargs = tf.nest.map_structure(lookup, (original, tuple(args), dict(kwargs)))
            if not keep_layer(layer):
                outputs = inputs
            else:
                if id(layer) not in copies:
                    copies[id(layer)] = (layer, _fresh_layer(layer))
                if read is not None:
                    inputs = read(layer, original, inputs)
                outputs = copies[id(layer)][1](inputs, *args, **kwargs)
            for old, new in zip(tf.nest.flatten(node.outputs), tf.nest.flatten(outputs)):
                tensors[_key(old)] = new
    rebuilt = keras.Model(tf.nest.map_structure(lookup, model._nested_inputs),
                          tf.nest.map_structure(lookup, model._nested_outputs), name=model.name)
    for layer, copy in copies.values():
        copy.set_weights(layer.get_weights())
    return rebuilt


def _mask_name(group, taken):
    name, n = f"{group}_channel_mask", 1
    while name in taken:
        n += 1
        name = f"{group}_channel_mask_{n}"
    taken.add(name)
    return name


def _importance(analysis, importance):
    """{group: scores} from ``importance``: None (L1 of the consumers), a callable of the analysis, or a dict."""
    if importance is None:
        return channel_importance(analysis)
    scores = importance(analysis) if callable(importance) else importance
    if not isinstance(scores, dict):
        raise UsageError(f"importance must give a dict of group name -> scores, got {type(scores).__name__}")
    return scores


def update_masks(model, *, step=None, importance=None, analysis=None):
    """Re-select every group's kept channels for ``step`` of the schedule.

    Each ChannelMask keeps ``scheduled_count(step)`` channels, the most
    important ones (tfmc.prune's selection: ties go to the lower index).

    Args:
      model: a model made by ``prunable``.
      step: the schedule step; default: the step the masks hold.
      importance: None (the L1 norm of the weights that consume each channel,
        as tfmc.prune ranks them), a callable ``importance(analysis) ->
        {group: scores}`` given the model's ChannelGraph, or such a dict.
      analysis: the model's ChannelGraph, when the caller keeps one.

    Returns:
      {group: bool mask} now in force.

    Raises:
      UsageError: a model without ChannelMask layers, or importance scores
        missing a group or of the wrong length.

    Example:
      >>> keep = update_masks(masked, step=1000)
      >>> {group: int(m.sum()) for group, m in keep.items()}
      {'conv1': 8, 'conv2': 16}
    """
    masks = _require_masks(model, "update_masks")
    analysis = ChannelGraph(model) if analysis is None else analysis
    step = masks[0].step if step is None else int(step)
    scores = _importance(analysis, importance)
    for mask in masks:
        if np.shape(scores.get(mask.group)) != (mask.channels,):
            raise UsageError(f"importance of group {mask.group!r} must have {mask.channels} scores, "
                             f"got {np.shape(scores.get(mask.group))}")
    keep = select_channels(analysis, {m.group: m.scheduled_count(step) for m in masks}, importance=scores)
    for mask in masks:
        mask.set_mask(keep[mask.group])
    return keep


def prunable(model, ratios, *, schedule=None, importance=None, round_to=8):
    """Return a new model in which every channel group to prune carries a ChannelMask.

    Each mask layer is called on every tensor its group's consumers read, so
    a zero in the mask acts exactly as removing the channel: ``strip`` then
    gives a smaller model with the same outputs. Masks start at the
    schedule's step 0 (all channels for a PolynomialDecay, the target for
    the default ConstantKeepRatio), chosen by ``importance``.

    Args:
      model: a functional or built Sequential tf_keras model; not modified.
        Build it under ``strategy.scope()`` (and call prunable there) to
        train it under a tf.distribute strategy.
      ratios: the final keep ratio for every prunable group (float), a
        {group name: keep ratio} dict (other groups get no mask), or a
        PrunePolicy (an AMC result included).
      schedule: a KeepRatioSchedule (ConstantKeepRatio, PolynomialDecay)
        shared by every mask; default ConstantKeepRatio().
      importance: how the first masks rank channels; see ``update_masks``.
        UpdateMasks takes its own, since a callable does not save with the model.
      round_to: kept counts are multiples of this (a PrunePolicy's own wins),
        as in tfmc.prune, so ``strip`` keeps the channel counts it would.

    Returns:
      A new functional model (same layer names, plus ``<group>_channel_mask``
      layers) with the model's weights.

    Raises:
      UsageError: the model already holds ChannelMask layers, or schedule is
        not a KeepRatioSchedule.
      PolicyError: a ratio outside (0, 1], an unknown group, or a keep ratio
        below 1 for a frozen group (the message gives the reason).
      TypeError: a subclassed model.

    Example:
      >>> masked = tfmc.prunable(model, 0.5, schedule=tfmc.PolynomialDecay(0, 1000))
      >>> masked.compile("adam", "sparse_categorical_crossentropy")
      >>> masked.fit(x, y, epochs=3, callbacks=[tfmc.UpdateMasks(update_every=100)])
      >>> small = tfmc.strip(masked)
    """
    require_graph_model(model)
    existing = mask_layers(model)
    if existing:
        raise UsageError(f"prunable: model {model.name!r} already holds ChannelMask layers "
                         f"({', '.join(m.name for m in existing)}); train it with UpdateMasks or strip it first")
    schedule = ConstantKeepRatio() if schedule is None else schedule
    if not isinstance(schedule, KeepRatioSchedule):
        raise UsageError(f"schedule must be a tfmc keep-ratio schedule (ConstantKeepRatio, PolynomialDecay), "
                         f"got {type(schedule).__name__}")
    analysis = ChannelGraph(model)
    keep_ratios, round_to = resolve_keep_ratios(analysis, ratios, round_to)
    taken = {layer.name for layer in model.layers}
    masks = {
        name: ChannelMask(name, analysis.group(name).channels, keep_ratio=ratio,
                          round_to=analysis.group(name).granularity(round_to), schedule=schedule,
                          name=_mask_name(name, taken))
        for name, ratio in keep_ratios.items()
    }
    consumers = set(analysis.prunable_consumers())
    masked_tensors = {}

    def read(layer, original, tensor):
        if layer.name not in consumers:
            return tensor
        if _key(original) not in masked_tensors:
            positions = analysis.map_groups(analysis.layer_io(layer.name)["in"][0])
            for group in dict.fromkeys(g for g, _ in positions):
                if group in masks:
                    index = [i if g == group else -1 for g, i in positions]
                    identity = index == list(range(masks[group].channels))
                    tensor = masks[group](tensor, channel_index=None if identity else index)
            masked_tensors[_key(original)] = tensor
        return masked_tensors[_key(original)]

    masked = _rebuild(model, lambda layer: True, read)
    update_masks(masked, step=0, importance=_importance(analysis, importance), analysis=analysis)
    return masked


def strip(model):
    """Return the physically smaller model that a masked model computes.

    The ChannelMask layers go, and the channels they zero are removed from
    every member and consumer of their groups as tfmc.prune removes them
    (kernels, biases, BatchNormalization, depthwise kernels).

    Args:
      model: a model made by ``prunable`` (trained or not, loaded or not).

    Returns:
      A new functional model without mask layers whose outputs equal the
      masked model's.

    Raises:
      UsageError: the model holds no ChannelMask layers, or a mask keeps no channel.

    Example:
      >>> small = tfmc.strip(masked)
      >>> tfmc.count_macs(small) < tfmc.count_macs(model)
      True
    """
    masks = _require_masks(model, "strip")
    keep = {}
    for mask in masks:
        keep[mask.group] = mask.mask > 0.5
        if not keep[mask.group].any():
            raise UsageError(f"strip: the mask of group {mask.group!r} keeps no channel")
    plain = _rebuild(model, lambda layer: not isinstance(layer, ChannelMask))
    return build_pruned(ChannelGraph(plain), keep)


class UpdateMasks(keras.callbacks.Callback):
    """Keras callback: count training steps and re-select the masks as the schedule says.

    At the start of each training batch, when the masks' schedule updates at
    the current step (every ``update_every`` steps inside its window, and at
    its end step), every group keeps its scheduled count of the most
    important channels. The step is stored in the model's ChannelMask
    layers, so a model saved mid-training resumes where it stopped.
    Works under a tf.distribute strategy (the masks are written in
    cross-replica context).

    Args:
      update_every: re-select every this many steps (tfmot's frequency).
      importance: None (L1 norm of the consuming weights), a callable
        ``importance(analysis) -> {group: scores}`` or a fixed dict; see
        ``update_masks``.

    Raises:
      UsageError: ``update_every`` not a positive integer; at the start of
        training, a model without ChannelMask layers or compiled with
        ``steps_per_execution`` other than 1.

    Example:
      >>> masked.fit(x, y, epochs=5, callbacks=[tfmc.UpdateMasks(update_every=50)])
    """

    def __init__(self, update_every=1, importance=None):
        super().__init__()
        if isinstance(update_every, bool) or not isinstance(update_every, (int, np.integer)) or update_every < 1:
            raise UsageError(f"UpdateMasks: update_every must be an integer >= 1, got {update_every!r}")
        self.update_every = int(update_every)
        self.importance = importance
        self.updated_at = []  # the steps at which masks were re-selected, for inspection

    def on_train_begin(self, logs=None):
        self._masks = _require_masks(self.model, "UpdateMasks")
        per_call = getattr(self.model, "_steps_per_execution", None)
        if per_call is not None and int(per_call.numpy()) != 1:
            # batch callbacks then run once per several steps, and the schedule would count calls, not steps
            raise UsageError(f"UpdateMasks counts steps in per-batch callbacks: compile with steps_per_execution=1, "
                             f"not {int(per_call.numpy())}")
        self._analysis = ChannelGraph(self.model)
        self._step = self._masks[0].step

    def on_train_batch_begin(self, batch, logs=None):
        if any(mask.schedule.updates_at(self._step, self.update_every) for mask in self._masks):
            update_masks(self.model, step=self._step, importance=self.importance, analysis=self._analysis)
            self.updated_at.append(self._step)

    def on_train_batch_end(self, batch, logs=None):
        self._step += 1
        for mask in self._masks:
            mask.step_variable.assign(self._step)


# The keep ratio reaches its target after this share of the training steps; the rest trains the final
# architecture, so the last cut is recovered from before the model is stripped.
DECAY_SHARE = 0.75
# Masks are re-selected about this many times while the keep ratio decays.
UPDATES = 20


def prune_during_training(model, ratios, x, y, *, epochs, batch_size=64, learning_rate=1e-3, validation=None,
                          strategy=None, seed=0, round_to=8, importance=None, verbose=0):
    """Prune a classifier while it trains, and return the stripped model.

    The keep ratio of every group decays from 1.0 to its target
    (PolynomialDecay, power 3) over the first three quarters of the steps;
    masks are re-selected about twenty times on the way (UpdateMasks); the
    last quarter trains at the target. Training is tfmc.train.fit's (Adam,
    cosine learning rate) under ``strategy``.

    Args:
      model: a functional or Sequential tf_keras classifier; not modified.
      ratios: final keep ratios, as ``prunable`` takes them.
      x, y: training images and integer labels.
      epochs: training epochs (>= 1).
      batch_size, learning_rate, validation, strategy, seed: as tfmc.train.fit.
      round_to, importance: as ``prunable``.
      verbose: Keras fit verbosity.

    Returns:
      (stripped model, Keras History of the masked training).

    Raises:
      UsageError: epochs not an integer >= 1; anything ``prunable`` or
        tfmc.train.fit refuse.

    Example:
      >>> small, history = prune_during_training(model, 0.5, x_train, y_train, epochs=5)
    """
    from tfmc import train

    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 1:
        raise UsageError(f"epochs must be an integer >= 1, got {epochs!r}")
    steps = int(np.ceil(len(x) / batch_size)) * int(epochs)
    end_step = max(1, int(round(DECAY_SHARE * steps)))
    masked = prunable(model, ratios, schedule=PolynomialDecay(0, end_step), round_to=round_to, importance=importance)
    trained, history = train.fit(masked, x, y, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
                                 validation=validation, strategy=strategy, seed=seed, verbose=verbose,
                                 callbacks=[UpdateMasks(update_every=max(1, end_step // UPDATES), importance=importance)])
    return strip(trained), history
