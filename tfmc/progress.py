"""Progress on the terminal: one bar per long stage (training epochs), on stderr."""
import sys

from tfmc._keras import keras


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
        from tqdm.auto import tqdm

        self.bar = tqdm(total=self.total_steps, desc=self.description, unit="step", file=self.stream or sys.stderr,
                        dynamic_ncols=True, leave=True)

    def on_train_batch_end(self, batch, logs=None):
        self.bar.update(1)

    def on_epoch_end(self, epoch, logs=None):
        shown = {"loss": "loss", "accuracy": "acc", "val_accuracy": "val_acc"}
        self.bar.set_postfix({label: f"{logs[key]:.4f}" for key, label in shown.items() if key in (logs or {})},
                             refresh=True)

    def on_train_end(self, logs=None):
        self.bar.close()
