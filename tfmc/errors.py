"""The error family: every mistake in what a user gives tfmc is a TfmcError.

The command line prints a TfmcError as one line and exits with code 2; any
other exception is a bug in tfmc and keeps its traceback (exit code 1). Each
class is a ValueError, so code that caught ValueError before still does.
"""


class TfmcError(ValueError):
    """Base of the errors caused by tfmc's input: the message says what was wrong and what was expected."""


class UsageError(TfmcError):
    """An option or argument has a value tfmc cannot use (out of range, not finite, wrong combination)."""


class DataError(TfmcError):
    """The data spec cannot be read, or the data are unusable or do not fit the model."""


class ModelLoadError(TfmcError):
    """The model file could not be read as a tf_keras model, or it may not be loaded safely."""


class PolicyError(TfmcError):
    """A pruning or bit policy is malformed or does not fit the model."""


class BudgetError(TfmcError):
    """A MACs, parameter, latency or BOPs budget is malformed or cannot be met."""


class ExportError(TfmcError):
    """The model cannot be exported as asked; the message says why and what was expected."""


class OutputError(TfmcError):
    """The output location cannot be used: it holds files tfmc did not write, is not writable, or holds another run."""


__all__ = ["BudgetError", "DataError", "ExportError", "ModelLoadError", "OutputError", "PolicyError", "TfmcError",
           "UsageError"]
