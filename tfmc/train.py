"""Training steps shared by fine-tuning, QAT and the searches: fit and evaluate under a strategy."""
import numpy as np

from tfmc._keras import keras, tf

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
    raise ValueError(f"unknown strategy {name!r}; expected one of {', '.join(STRATEGIES)}")


def _dataset(x, y, batch_size, shuffle, seed):
    data = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle:
        data = data.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    return data.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def _clone_under(model, strategy):
    with strategy.scope():
        clone = keras.models.clone_model(model)
        clone.set_weights(model.get_weights())
    return clone


def fit(model, x, y, *, epochs=3, batch_size=64, learning_rate=1e-3, validation=None, strategy=None,
        seed=0, verbose=0, copy=True):
    """Train a classifier (integer labels, logits output) with Adam under ``strategy``.

    Args:
      model: the model to train. With ``copy=True`` (the default) it is cloned
        under the strategy's scope and the clone is trained and returned, so
        the caller's model is never changed.
      x, y: training images and integer labels.
      epochs, batch_size, learning_rate: the usual; the learning rate decays
        by a cosine schedule over the run.
      validation: optional (x_val, y_val).
      strategy: a tf.distribute.Strategy or its name (see make_strategy).

    Returns:
      (trained model, keras History).
    """
    strategy = make_strategy(strategy)
    keras.utils.set_random_seed(seed)
    trained = _clone_under(model, strategy) if copy else model
    steps = max(1, int(np.ceil(len(x) / batch_size))) * max(1, epochs)
    with strategy.scope():
        schedule = keras.optimizers.schedules.CosineDecay(learning_rate, steps)
        trained.compile(
            optimizer=keras.optimizers.Adam(schedule),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
    history = trained.fit(
        _dataset(x, y, batch_size, True, seed),
        epochs=epochs,
        validation_data=_dataset(*validation, batch_size, False, seed) if validation is not None else None,
        verbose=verbose,
    )
    return trained, history


def accuracy(model, x, y, batch_size=256):
    """Top-1 accuracy of ``model``'s logits on (x, y), in [0, 1]."""
    logits = model.predict(x, batch_size=batch_size, verbose=0)
    return float(np.mean(np.argmax(logits, axis=-1) == np.asarray(y)))
