"""Progress on the terminal: one bar per long stage (training, a search, a table of measurements), on stderr."""
import sys

from tfmc._keras import keras


def bar(description, total, *, unit="step", stream=None, enabled=True, initial=0):
    """One tqdm bar for a long stage, drawn on ``stream`` (default sys.stderr); a disabled one draws nothing.

    Example:
      >>> import io
      >>> terminal = io.StringIO()
      >>> with bar("search", 2, stream=terminal) as b:
      ...     b.update(2)
      >>> "search: 100%|" in terminal.getvalue()
      True
    """
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=description, unit=unit, file=stream or sys.stderr,
                dynamic_ncols=True, leave=True, disable=not enabled)


def layer_callback(progress_bar):
    """A ``progress(layer, done, total)`` callback (tfmc.gmpq.costs.build_precision_table) that moves ``progress_bar``."""

    def progress(layer, done, total):
        progress_bar.total = total
        progress_bar.update(done - progress_bar.n)
        progress_bar.set_postfix(layer=layer, refresh=False)

    return progress


class TrainingBar(keras.callbacks.Callback):
    """One tqdm bar over every training step of a ``fit``, with the last epoch's loss and accuracies beside it.

    It replaces Keras' own per-epoch output (``verbose``), so a training
    stage shows one line that updates in place instead of one per epoch.

    Args:
      description: the stage, as the bar names it ("training", "QAT").
      total_steps: batches in the whole run (epochs x batches per epoch).
      stream: where the bar is drawn (default sys.stderr).
    """

    def __init__(self, description, total_steps, stream=None):
        super().__init__()
        self.description, self.total_steps, self.stream = description, int(total_steps), stream
        self.bar = None

    def on_train_begin(self, logs=None):
        self.bar = bar(self.description, self.total_steps, stream=self.stream)

    def on_train_batch_end(self, batch, logs=None):
        self.bar.update(1)

    def on_epoch_end(self, epoch, logs=None):
        shown = {"loss": "loss", "accuracy": "acc", "val_accuracy": "val_acc"}
        self.bar.set_postfix({label: f"{logs[key]:.4f}" for key, label in shown.items() if key in (logs or {})},
                             refresh=True)

    def on_train_end(self, logs=None):
        self.bar.close()
