"""Training steps shared by fine-tuning, QAT and the searches: fit and evaluate under a strategy."""
import math
import numbers

import numpy as np

from tfmc._keras import keras, tf
from tfmc.errors import UsageError

STRATEGIES = ("default", "mirrored", "multiworker")


def make_strategy(name="default"):
    """A tf.distribute strategy by command-line name.

    ``default`` is the no-op strategy (one device); ``mirrored`` replicates
    over every local GPU, or the CPU; ``multiworker`` reads the cluster from
    ``TF_CONFIG`` as MultiWorkerMirroredStrategy does.

    Raises:
      ValueError: an unknown name (the message lists the accepted ones).
    """
    if isinstance(name, tf.distribute.Strategy):
        return name
    if name in (None, "default"):
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise UsageError(f"unknown strategy {name!r}; expected one of {', '.join(STRATEGIES)}")


def outputs_probabilities(model):
    """Whether ``model`` ends in a softmax (so its outputs are probabilities, not logits)."""
    last = model.layers[-1]
    if hasattr(last, "layer"):  # a tfmot wrapper
        last = last.layer
    activation = getattr(last, "activation", None)
    return isinstance(last, keras.layers.Softmax) or getattr(activation, "__name__", "") == "softmax"


def _clone_under(model, strategy):
    with strategy.scope():
        clone = keras.models.clone_model(model)
        clone.set_weights(model.get_weights())
    return clone


def fit(model, x, y, *, epochs=3, batch_size=64, learning_rate=1e-3, validation=None, strategy=None,
        seed=0, verbose=0, copy=True, from_logits=None, callbacks=None, progress=None):
    """Train a classifier (integer labels) with Adam under ``strategy``.

    Args:
      model: the model to train. With ``copy=True`` (the default) it is cloned
        under the strategy's scope and the clone is trained and returned, so
        the caller's model is never changed. With ``copy=False`` the model
        itself is trained and must have been built under ``strategy.scope()``.
      x, y: training images and integer labels.
      epochs, batch_size, learning_rate: the usual; the learning rate decays
        by a cosine schedule over the run.
      validation: optional (x_val, y_val).
      strategy: a tf.distribute.Strategy or its name (see make_strategy).
      from_logits: whether the outputs are logits; default: detected from
        the last layer (a softmax means probabilities).
      callbacks: optional Keras callbacks for ``fit`` (e.g. tfmc.UpdateMasks).
      progress: a stage name ("training", "QAT"): show one progress bar
        over the whole run on stderr (``tfmc.progress.TrainingBar``), and
        no per-epoch lines; None (the default) shows what ``verbose`` says.

    Returns:
      (trained model, keras History).

    Raises:
      UsageError: a learning rate that is not a finite number > 0.
    """
    if isinstance(learning_rate, bool) or not isinstance(learning_rate, numbers.Real) or not (
            math.isfinite(learning_rate) and learning_rate > 0):
        raise UsageError(f"learning_rate must be a finite number > 0, got {learning_rate!r}")
    strategy = make_strategy(strategy)
    keras.utils.set_random_seed(seed)
    from tfmc.data import as_tf_dataset

    trained = _clone_under(model, strategy) if copy else model
    if from_logits is None:
        from_logits = not outputs_probabilities(trained)
    steps = max(1, int(np.ceil(len(x) / batch_size))) * max(1, epochs)
    if progress is not None:
        from tfmc.progress import TrainingBar

        callbacks = list(callbacks or []) + [TrainingBar(progress, steps)]
        verbose = 0
    with strategy.scope():
        schedule = keras.optimizers.schedules.CosineDecay(learning_rate, steps)
        trained.compile(
            optimizer=keras.optimizers.Adam(schedule),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits),
            metrics=["accuracy"],
        )
    history = trained.fit(
        as_tf_dataset(x, y, batch_size=batch_size, shuffle=True, seed=seed),
        epochs=epochs,
        validation_data=as_tf_dataset(*validation, batch_size=batch_size) if validation is not None else None,
        verbose=verbose,
        callbacks=callbacks,
    )
    return trained, history


def accuracy(model, x, y, batch_size=256):
    """Top-1 accuracy of ``model``'s outputs (logits or probabilities) on (x, y), in [0, 1]."""
    logits = model.predict(x, batch_size=batch_size, verbose=0)
    return float(np.mean(np.argmax(logits, axis=-1) == np.asarray(y)))
