"""Channel importance criteria: which channels of a group matter most, as objects.

One criterion object ranks channels for ``tfmc.prune``, for
``tfmc.amc.search`` and for AMC's masked model alike, so the channels a
search scores are the channels apply keeps. A criterion is named and
parameterised by a small dict (``to_config``), which the policies a search
writes carry in ``metadata["importance"]``; ``tfmc.prune`` applies a
policy with the criterion recorded there unless it is given one explicitly
(an explicit criterion wins; see ``resolve``).

Criteria (registry ``CRITERIA``; ``register_importance`` adds one):

- ``l1``: L1 norm of the weights that consume each channel, summed over the
  group's consumers (He et al., AMC, ECCV 2018, section 3.3; today's default).
- ``l2``: the same with the L2 norm of each consumer's weights.
- ``bn_scale``: |gamma| of the group's BatchNormalization members, summed
  (Liu et al., "Learning Efficient Convolutional Networks through Network
  Slimming", ICCV 2017); a group without a BatchNormalization (with scale)
  is ranked by ``l1``.
- ``taylor``: the first-order Taylor estimate of the loss change when a
  channel is removed, |sum over positions of a * dL/da| at the consumers'
  inputs (Molchanov et al., "Pruning Convolutional Neural Networks for
  Resource Efficient Inference", ICLR 2017), per batch of 32 calibration
  images, summed over batches. The loss is the cross-entropy against the
  model's own predicted classes, so no labels are needed; it needs
  calibration images.
- ``random``: seeded uniform scores (a baseline).
"""
import abc

import numpy as np

from tfmc.errors import UsageError


class Importance(abc.ABC):
    """Base criterion: ``scores(analysis, data)`` -> {prunable group name: one score per channel}.

    Subclasses set ``name`` and, when they read calibration images,
    ``needs_data = True``. Calling the object on an analysis gives its
    scores without data (the form ``tfmc.prunable(importance=...)`` takes).
    """

    name = None
    needs_data = False

    def to_config(self):
        """The criterion as a JSON-able dict: {"name": ..., parameters...}."""
        return {"name": self.name}

    @abc.abstractmethod
    def scores(self, analysis, data=None):
        """{prunable group name: one score per channel} of ``analysis`` (a ChannelGraph), reading ``data`` if needed."""

    def __call__(self, analysis):
        return self.scores(analysis)

    def __eq__(self, other):
        return isinstance(other, Importance) and self.to_config() == other.to_config()

    def __hash__(self):
        return hash(str(sorted(self.to_config().items())))

    def __repr__(self):
        params = ", ".join(f"{k}={v!r}" for k, v in self.to_config().items() if k != "name")
        return f"{type(self).__name__}({params})"


class L1(Importance):
    """L1 norm of the consuming weights (He et al., AMC, ECCV 2018, section 3.3)."""

    name = "l1"
    p = 1

    def scores(self, analysis, data=None):
        from tfmc.prune.select import consumer_importance, consumer_input_norm

        return consumer_importance(analysis, lambda layer: consumer_input_norm(layer, self.p))


class L2(L1):
    """L2 norm of each consumer's weights per input channel, summed over the group's consumers."""

    name = "l2"
    p = 2


class BNScale(Importance):
    """|gamma| of the group's BatchNormalization members (Liu et al., Network Slimming, ICCV 2017).

    Groups without a BatchNormalization that learns a scale are ranked by L1.
    """

    name = "bn_scale"

    def scores(self, analysis, data=None):
        from tfmc.layers import BatchNorm, handler_for

        result = L1().scores(analysis)
        for group in analysis.groups:
            if not group.prunable:
                continue
            total, found = np.zeros(group.channels), False
            for name in group.members:
                layer = analysis.model.get_layer(name)
                if not isinstance(handler_for(layer), BatchNorm) or not layer.scale:
                    continue
                gamma = np.abs(layer.gamma.numpy())
                for pos, (g, i) in enumerate(analysis.map_groups(analysis.layer_io(name)["out"][0])):
                    if g == group.name:
                        total[i] += gamma[pos]
                        found = True
            if found:
                result[group.name] = total
        return result


class Taylor(Importance):
    """First-order Taylor estimate of the loss change per channel (Molchanov et al., ICLR 2017).

    Args:
      batch_size: images per batch; the absolute value is taken per batch.
      max_images: at most this many calibration images are read.
    """

    name = "taylor"
    needs_data = True

    def __init__(self, batch_size=32, max_images=512):
        self.batch_size = int(batch_size)
        self.max_images = int(max_images)

    def to_config(self):
        return {"name": self.name, "batch_size": self.batch_size, "max_images": self.max_images}

    def scores(self, analysis, data=None):
        from tfmc._keras import keras, tf
        from tfmc.prune.gradual import prunable

        if data is None:
            raise UsageError("the taylor importance criterion needs calibration images: give calib_data "
                             "(tfmc.prune / tfmc.amc.search) or --data on the command line")
        x = np.asarray(data[0] if isinstance(data, (tuple, list)) else data, dtype=np.float32)[: self.max_images]
        names = [g.name for g in analysis.groups if g.prunable]
        gated = prunable(analysis.model, {name: 1.0 for name in names}, round_to=1)  # masks of ones: a * 1
        masks = {layer.group: layer.mask_variable for layer in gated.layers if hasattr(layer, "mask_variable")}
        variables = [masks[name] for name in names]
        probabilities = _outputs_probabilities(analysis.model)
        loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=not probabilities)
        totals = [np.zeros(v.shape[0]) for v in variables]
        for start in range(0, len(x), self.batch_size):
            batch = tf.constant(x[start:start + self.batch_size])
            with tf.GradientTape() as tape:
                tape.watch(variables)
                out = gated(batch, training=False)
                loss = loss_fn(tf.argmax(out, axis=-1), out) * float(len(batch))
            for total, grad in zip(totals, tape.gradient(loss, variables)):
                total += np.abs(grad.numpy())
        return dict(zip(names, totals))


def _outputs_probabilities(model):
    layer = model.layers[-1]
    activation = getattr(layer, "activation", None)
    return getattr(activation, "__name__", "") == "softmax" or type(layer).__name__ == "Softmax"


class Random(Importance):
    """Seeded uniform scores: channel c of the k-th prunable group gets draw c of Generator([seed, k])."""

    name = "random"

    def __init__(self, seed=0):
        self.seed = int(seed)

    def to_config(self):
        return {"name": self.name, "seed": self.seed}

    def scores(self, analysis, data=None):
        prunable = [g for g in analysis.groups if g.prunable]
        return {g.name: np.random.default_rng([self.seed, k]).random(g.channels) for k, g in enumerate(prunable)}


CRITERIA = {cls.name: cls for cls in (L1, L2, BNScale, Taylor, Random)}


def register_importance(cls):
    """Add criterion class ``cls`` (an Importance subclass with a unique ``name``) to ``CRITERIA``."""
    if not (isinstance(cls, type) and issubclass(cls, Importance) and cls.name):
        raise UsageError(f"an importance criterion is an Importance subclass with a name, got {cls!r}")
    CRITERIA[cls.name] = cls
    return cls


def get_importance(spec):
    """An Importance from ``spec``: None (L1), a name, a config dict ({"name": ..., params}) or an Importance.

    Raises:
      tfmc.UsageError: an unknown name (the message lists the known ones) or bad parameters.
    """
    if spec is None:
        return L1()
    if isinstance(spec, Importance):
        return spec
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, dict) or "name" not in spec:
        raise UsageError(f"importance must be a criterion name ({', '.join(CRITERIA)}), a config dict or an "
                         f"Importance object, got {spec!r}")
    params = {k: v for k, v in spec.items() if k != "name"}
    cls = CRITERIA.get(spec["name"])
    if cls is None:
        raise UsageError(f"unknown importance criterion {spec['name']!r}; expected one of {', '.join(CRITERIA)}")
    try:
        return cls(**params)
    except TypeError as exc:
        raise UsageError(f"bad parameters {params} for importance criterion {spec['name']!r}: {exc}") from None


def resolve(importance, policy=None):
    """The criterion to apply: ``importance`` when given, else the one ``policy`` records, else L1.

    The rule: a policy searched with a criterion is applied with it (its
    ``metadata["importance"]``); an explicit ``importance`` overrides it.
    """
    if importance is not None:
        return get_importance(importance)
    recorded = getattr(policy, "metadata", {}).get("importance") if policy is not None else None
    return get_importance(recorded)


__all__ = ["BNScale", "CRITERIA", "Importance", "L1", "L2", "Random", "Taylor", "get_importance", "register_importance",
           "resolve"]
