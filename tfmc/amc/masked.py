"""One reusable masked copy of a model: a policy is evaluated by reassigning weights, not by rebuilding.

A pruned model computes what the original computes when every consumer's
weights for the dropped input channels are zero (``tfmc.prune.masking``).
So an AMC episode only has to rewrite the consumers of one clone that was
built (and whose forward functions were traced) once, run the reward set
through it, and move on.

With calibration images, the consumers that lose inputs are refitted by
least squares exactly as ``tfmc.prune`` refits them: layer after layer, on
the inputs the *pruned* model gives them (so a refit sees the effect of the
refits before it), at the same sampled positions and with the same
formula (``tfmc.prune.reconstruct.least_squares``). The refit runs inside
the clone: each refittable consumer is cloned as a subclass whose call, in
the fitting pass, solves for its kernel from the calibration rows it
receives and assigns it before convolving. One forward pass of the
calibration images therefore refits every layer in topological order, and
the reward an episode gets is the accuracy of the very model
``tfmc.prune(model, policy, calib_data)`` builds.

Why not the cheaper per-layer fit of the authors' code (each layer fitted
on the *original* model's inputs, so fits can be cached)? On the digits
CNN of bench/bench_amc.py at 50 % MACs its accuracies over 40 random
policies (0.09-0.75) ranked the policies with a Spearman correlation of
only 0.62 against the test accuracy of the models ``tfmc.prune`` builds
(0.72-0.96); an agent rewarded by it optimises something else.
"""
import types
import warnings

import numpy as np

from tfmc._keras import keras, tf
from tfmc.graph import layer_calls
from tfmc.prune.masking import dropped_input_positions, zero_input_channels
from tfmc.prune.reconstruct import RIDGE, consumer_seeds, gather_patches, patch_positions, refittable
from tfmc.prune.importance import get_importance
from tfmc.prune.select import select_channels


class _Refitting:
    """Mixin for a cloned Conv2D / Dense: in the fitting pass, solve for the kernel from the inputs, then run."""

    def call(self, inputs):
        state = getattr(self, "_tfmc_refit", None)  # set after the clone is built
        if state is not None and state.mode.fitting:  # a Python flag read while the fitting function is traced
            kernel = tf.cond(state.active, lambda: _solve(state, inputs), lambda: state.original)
            self.kernel.assign(kernel)
        return super().call(inputs)


def _solve(state, inputs):
    """``least_squares`` in the graph, over the kept columns only; the dropped rows of the kernel are exactly zero.

    Only the sampled taps are read from the input (no padded copy of the
    whole feature map), then only the kept channels of them, so the rows,
    their Gram matrix and the solve have the pruned layer's size (at a
    third of the channels, a ninth of the Gram's work), as in
    ``tfmc.prune``'s own refit. ``inputs`` are the calibration images' only:
    the fitting pass runs nothing else.
    """
    channels = tf.reshape(tf.where(state.mask[: state.channels]), [-1])
    if state.index is None:
        rows = tf.gather(tf.reshape(inputs, [-1, state.channels]), channels, axis=1)
    else:  # the sampled taps from the unpadded map: a tap in the padding reads zero
        patches = tf.gather_nd(inputs, state.index) * state.inside
        rows = tf.reshape(tf.gather(patches, channels, axis=2), [state.index.shape[0], -1])
    rows = tf.cast(rows, tf.float64)
    gram = tf.matmul(rows, rows, transpose_a=True)
    kept = tf.shape(gram)[0]
    ridge = RIDGE * tf.maximum(tf.linalg.trace(gram) / tf.cast(tf.maximum(kept, 1), tf.float64), 1e-12)
    gram += ridge * tf.eye(kept, dtype=tf.float64)
    solution = tf.linalg.solve(gram, tf.matmul(rows, state.target, transpose_a=True))
    columns = tf.where(state.mask)  # (kept columns, 1): tap-major, channel-minor, the order of the rows
    full = tf.scatter_nd(columns, solution, [state.mask.shape[0], state.target.shape[1]])
    return tf.reshape(tf.cast(full, state.original.dtype), state.original.shape)


def _unpadded_taps(positions, shape):
    """``patch_positions``' taps as indices into the unpadded input: {"index": (rows, taps, 3), "inside": (rows, taps, 1)}.

    A tap that falls into the zero padding gets index 0 and ``inside`` 0.
    """
    if positions is None:
        return {"index": None, "inside": None}
    pads, index = positions
    index = np.array(index, np.int64)
    index[..., 1] -= pads[1][0]
    index[..., 2] -= pads[2][0]
    inside = (index[..., 1] >= 0) & (index[..., 1] < shape[1]) & (index[..., 2] >= 0) & (index[..., 2] < shape[2])
    index[~inside] = 0
    return {"index": tf.constant(index, tf.int32), "inside": tf.constant(inside[..., None].astype(np.float32))}


def _refitting_clone(layer):
    cls = type(f"Refitting{type(layer).__name__}", (_Refitting, type(layer)), {})
    return cls.from_config(layer.get_config())


_FIT_BYTES = 2**31


def fitting_batch_limit(model, budget_bytes=_FIT_BYTES):
    """How many images one fitting pass may take: the largest activation, float32, four alive at once."""
    largest = max(int(np.prod([d or 1 for d in call.output_shapes[0][1:]])) for call in layer_calls(model))
    return max(1, budget_bytes // (16 * largest))


def _plain_clone(layer):
    return layer.__class__.from_config(layer.get_config())


class MaskedModel:
    """A clone of ``model`` whose consumer kernels are rewritten for each policy.

    Args:
      model: the original tf_keras model (read, never changed).
      analysis: its ChannelGraph.
      calib_data: optional images; with them, consumers that lose inputs are
        refitted by least squares (conv with groups=1, dense), as
        ``tfmc.prune`` does. They go through the clone in one batch, so
        only as many as ``fitting_batch_limit`` allows are used (with a
        warning when that cuts them).
      max_images: at most this many calibration images (AMC: 3000).
      points_per_image: sampled output positions per image (AMC: 10).
      seed: seeds the sampling (``tfmc.prune`` uses 0).
      importance: the channel criterion (``tfmc.prune.importance``; default
        L1), given the calibration images; ``tfmc.prune`` must be given the
        same one for the reward to be its model's (an AMC policy records it).

    Example:
      >>> masked = MaskedModel(model, ChannelGraph(model), calib_data=x_train[:500])
      >>> masked.apply({"conv1": 8, "conv2": 16})
      >>> logits = masked.predict(x_val)
    """

    def __init__(self, model, analysis, calib_data=None, *, max_images=3000, points_per_image=10, seed=0,
                 importance=None):
        self.analysis = analysis
        self.importance = get_importance(importance)
        self._importance = self.importance.scores(analysis, calib_data)
        consumers = analysis.prunable_consumers()
        refit = set()
        if calib_data is not None:
            refit = {n for n in consumers if refittable(model.get_layer(n))}
        self.clone = keras.models.clone_model(
            model, clone_function=lambda layer: (_refitting_clone if layer.name in refit else _plain_clone)(layer))
        self.clone.set_weights(model.get_weights())
        self._original = {name: model.get_layer(name).get_weights() for name in consumers}
        self._refit = [n for n in consumers if n in refit]
        self._states = []  # the refitted layers' fitting state, in the order of _refit
        self._dirty = set()
        self._mode = types.SimpleNamespace(fitting=False)
        self._forward = tf.function(lambda x: self.clone(x, training=False), reduce_retracing=True, autograph=False)
        if self._refit:
            x = np.asarray(calib_data, dtype=np.float32)[:max_images]
            fits = fitting_batch_limit(model, _FIT_BYTES)
            if len(x) > fits:
                warnings.warn(f"AMC refits pruned layers from the first {fits} of the {len(x)} calibration images "
                              f"(they go through the model in one batch of at most {_FIT_BYTES / 2**30:g} GiB); "
                              f"give tfmc.prune those {fits} images to build the searched model exactly",
                              RuntimeWarning, stacklevel=2)
                x = x[:fits]
            self._calib = tf.constant(x)
            self._prepare(model, x, points_per_image, seed)
            self._fit = tf.function(self._fitting_pass, autograph=False)
            self._states = [self.clone.get_layer(name)._tfmc_refit for name in self._refit]
            # one call writes every refitted layer's column mask and switch (32 eager assigns cost 4 ms an episode)
            self._set_masks = tf.function(self._assign_masks, autograph=False)

    def _assign_masks(self, masks, active):
        for state, mask, on in zip(self._states, masks, active):
            state.mask.assign(mask)
            state.active.assign(on)

    def _prepare(self, model, x, points_per_image, seed):
        """Sample each refitted layer's rows and compute its targets from the original model's inputs."""
        probe = keras.Model(model.inputs, [model.get_layer(n).input for n in self._refit])
        features = probe.predict(x, batch_size=256, verbose=0)
        features = features if isinstance(features, list) else [features]
        seeds = consumer_seeds(self.analysis, seed)
        for name, feature in zip(self._refit, features):
            original_layer = model.get_layer(name)
            positions = patch_positions(original_layer, feature.shape, points_per_image,
                                        np.random.default_rng(seeds[name]))
            kernel = self._original[name][0]
            rows = gather_patches(feature, positions).astype(np.float64)
            target = rows @ kernel.reshape(-1, kernel.shape[-1]).astype(np.float64)
            layer = self.clone.get_layer(name)
            layer._tfmc_refit = types.SimpleNamespace(
                mode=self._mode, target=tf.constant(target),
                **_unpadded_taps(positions, feature.shape),
                original=tf.constant(kernel), active=tf.Variable(False, trainable=False),
                mask=tf.Variable(np.ones(rows.shape[1], bool), trainable=False),
                taps=rows.shape[1] // kernel.shape[-2], channels=kernel.shape[-2],
            )

    def _fitting_pass(self, x):
        self._mode.fitting = True  # only while tracing: the traced graph keeps the fitting branch
        try:
            return self.clone(x, training=False)
        finally:
            self._mode.fitting = False

    def masks(self, counts):
        """{group: bool mask}: each group keeps its ``counts[group]`` most important channels (``importance``)."""
        return select_channels(self.analysis, counts, importance=self._importance)

    def apply(self, counts):
        """Write the weights that make the clone compute the model pruned to ``counts`` ({group: kept count})."""
        dropped = dropped_input_positions(self.analysis, self.masks(counts))
        masks = []
        for name, state in zip(self._refit, self._states):
            kept = np.ones(state.channels, bool)
            kept[dropped.get(name, [])] = False
            masks.append(np.tile(kept, state.taps))
        if self._refit:
            self._set_masks(masks, [np.bool_(name in dropped) for name in self._refit])
        for name in list(self._dirty):
            if name not in dropped:
                self.clone.get_layer(name).set_weights(self._original[name])
                self._dirty.discard(name)
        for name, positions in dropped.items():
            if name not in self._refit:
                layer = self.clone.get_layer(name)
                layer.set_weights(zero_input_channels(layer, self._original[name], positions))
                self._dirty.add(name)
        if self._refit:
            self._fit(self._calib)

    def restore(self):
        """Put the original weights back (the clone then computes the unpruned model)."""
        self.apply({})

    def predict(self, x, batch_size=512):
        """Logits of the clone on ``x`` as a numpy array, through the one traced forward function."""
        x = np.asarray(x, dtype=np.float32)
        out = [self._forward(tf.constant(x[i:i + batch_size])).numpy() for i in range(0, len(x), batch_size)]
        return np.concatenate(out)
