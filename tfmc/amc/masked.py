"""One reusable masked copy of a model: a policy is evaluated by reassigning weights, not by rebuilding.

A pruned model computes what the original computes when every consumer's
weights for the dropped input channels are zero (``tfmc.prune.masking``).
So an AMC episode only has to write the consumers' kernels of one clone
that was built (and its forward function traced) once, run the reward set
through it, and move on. With calibration images the kept rows of each
consumer are refitted by least squares on the *original* model's inputs, as
the authors' code does: the features are gathered once, and each fit is
cached by the input positions it keeps, so a count seen before costs
nothing. (``tfmc.prune`` refits on the pruned model's own inputs, layer after
layer; the search uses the cheaper per-layer fit.)
"""
import numpy as np

from tfmc._keras import keras, tf
from tfmc.prune.masking import dropped_input_positions, zero_input_channels
from tfmc.prune.reconstruct import refittable, sampled_patches
from tfmc.prune.select import channel_importance, select_channels


class MaskedModel:
    """A clone of ``model`` whose consumer kernels are rewritten for each policy.

    Args:
      model: the original tf_keras model (read, never changed).
      analysis: its ChannelGraph.
      calib_data: optional images; with them, consumers that lose inputs are
        refitted by least squares (conv with groups=1, dense).
      max_images: at most this many calibration images (AMC: 3000).
      points_per_image: sampled output positions per image (AMC: 10).
      seed: seeds the sampling.

    Example:
      >>> masked = MaskedModel(model, ChannelGraph(model), calib_data=x_train[:500])
      >>> masked.apply({"conv1": 8, "conv2": 16})
      >>> logits = masked.predict(x_val)
    """

    def __init__(self, model, analysis, calib_data=None, *, max_images=3000, points_per_image=10, seed=0):
        self.analysis = analysis
        self.clone = keras.models.clone_model(model)
        self.clone.set_weights(model.get_weights())
        self._forward = tf.function(lambda x: self.clone(x, training=False), reduce_retracing=True)
        self._importance = channel_importance(analysis)
        consumers = analysis.prunable_consumers()
        self._original = {name: model.get_layer(name).get_weights() for name in consumers}
        self._kind = {name: analysis.layer_io(name)["kind"] for name in consumers}
        self._dirty = set()
        self._fits = {}
        self._rows = {}
        if calib_data is not None:
            self._gather(model, consumers, np.asarray(calib_data, dtype=np.float32)[:max_images], points_per_image, seed)

    def _gather(self, model, consumers, x, points_per_image, seed):
        names = [n for n in consumers if refittable(model.get_layer(n), self._kind[n])]
        if not names:
            return
        probe = keras.Model(model.inputs, [model.get_layer(n).input for n in names])
        features = probe.predict(x, batch_size=256, verbose=0)
        features = features if isinstance(features, list) else [features]
        rng = np.random.default_rng(seed)
        for name, feature in zip(names, features):
            rows = sampled_patches(model.get_layer(name), feature, points_per_image, rng).astype(np.float64)
            kernel = self._original[name][0]
            self._rows[name] = (rows, rows @ kernel.reshape(-1, kernel.shape[-1]).astype(np.float64))

    def _refit(self, name, kept):
        """The consumer's kernel refitted to its kept input positions (zero elsewhere); cached."""
        key = (name, kept.tobytes())
        if key not in self._fits:
            rows, target = self._rows[name]
            kernel = self._original[name][0]
            cin = kernel.shape[-2]
            columns = (np.arange(rows.shape[1] // cin)[:, None] * cin + kept[None, :]).reshape(-1)
            solution, *_ = np.linalg.lstsq(rows[:, columns], target, rcond=None)
            refitted = np.zeros((rows.shape[1], kernel.shape[-1]))
            refitted[columns] = solution
            self._fits[key] = refitted.reshape(kernel.shape).astype(kernel.dtype)
        return self._fits[key]

    def masks(self, counts):
        """{group: bool mask}: each group keeps its ``counts[group]`` channels of largest L1 norm."""
        return select_channels(self.analysis, counts, importance=self._importance)

    def apply(self, counts):
        """Write the weights that make the clone compute the model pruned to ``counts`` ({group: kept count})."""
        dropped = dropped_input_positions(self.analysis, self.masks(counts))
        for name in list(self._dirty):
            if name not in dropped:
                self.clone.get_layer(name).set_weights(self._original[name])
                self._dirty.discard(name)
        for name, positions in dropped.items():
            weights = self._original[name]
            if name in self._rows:
                kept = np.setdiff1d(np.arange(weights[0].shape[-2]), positions)
                weights = [self._refit(name, kept)] + weights[1:]
            else:
                weights = zero_input_channels(weights, self._kind[name], positions)
            self.clone.get_layer(name).set_weights(weights)
            self._dirty.add(name)

    def restore(self):
        """Put the original weights back (the clone then computes the unpruned model)."""
        self.apply({})

    def predict(self, x, batch_size=512):
        """Logits of the clone on ``x`` as a numpy array, through the one traced forward function."""
        x = np.asarray(x, dtype=np.float32)
        out = [self._forward(tf.constant(x[i:i + batch_size])).numpy() for i in range(0, len(x), batch_size)]
        return np.concatenate(out)
