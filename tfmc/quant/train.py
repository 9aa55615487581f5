"""Quantization-aware fine-tuning and evaluation of a QAT model on a tfmc Dataset."""
from tfmc._keras import keras, tf


def outputs_probabilities(model):
    """Whether ``model`` ends in a softmax (so its outputs are probabilities, not logits)."""
    last = model.layers[-1]
    if hasattr(last, "layer"):  # a tfmot wrapper
        last = last.layer
    activation = getattr(last, "activation", None)
    return isinstance(last, keras.layers.Softmax) or getattr(activation, "__name__", "") == "softmax"


def fine_tune(qat, dataset, *, epochs, learning_rate=1e-3, batch_size=64, from_logits=None, strategy=None, verbose=0):
    """Train ``qat`` on ``dataset``'s training split with Adam; return the Keras History.

    Args:
      qat: a model from tfmc.quantize (or any tf_keras classifier).
      dataset: a tfmc.data.Dataset.
      epochs, learning_rate, batch_size: the training run.
      from_logits: whether outputs are logits; default: detected from the last layer.
      strategy: a tf.distribute.Strategy for the optimizer; None uses the default.
      verbose: passed to ``fit``.

    Example:
      >>> fine_tune(tfmc.quantize(model, policy), tfmc.data.load("digits"), epochs=3)
    """
    strategy = strategy or tf.distribute.get_strategy()
    if from_logits is None:
        from_logits = not outputs_probabilities(qat)
    with strategy.scope():
        qat.compile(
            keras.optimizers.Adam(learning_rate),
            keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits),
            metrics=["accuracy"],
        )
    return qat.fit(dataset.x_train, dataset.y_train, validation_data=(dataset.x_val, dataset.y_val), epochs=epochs,
                   batch_size=batch_size, verbose=verbose)


def accuracy(model, x, y, batch_size=256):
    """Top-1 accuracy of ``model`` on (x, y) as a float in [0, 1]."""
    scores = model.predict(x, batch_size=batch_size, verbose=0)
    return float((scores.argmax(axis=-1) == y).mean())
