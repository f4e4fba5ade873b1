"""Errors a user can cause. The CLI prints ``str(error)`` on one line and exits 2."""

from __future__ import annotations


class XMetaError(Exception):
    """Base class: a mistake in the user's input, files or flags (never a bug in xmeta)."""

    exit_code = 2


class DataError(XMetaError):
    """A data file, column, label, language or split that cannot be used as given."""


class TaskCardError(XMetaError):
    """An unknown task name or a malformed task card."""


class EncoderError(XMetaError):
    """An encoder that cannot be found, converted or loaded."""


class ModelFolderError(XMetaError):
    """A model folder that is missing, corrupt, unsafe (pickle) or from a newer xmeta."""


class ArgumentError(XMetaError):
    """A flag or argument value outside what makes sense (negative steps, lr 0, ...)."""


class TrainingInterrupted(XMetaError):
    """SIGINT/SIGTERM stopped meta-training after a finished step (and a checkpoint was written)."""

    def __init__(self, message: str, signal_number: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signal_number  # the shell's convention for "killed by this signal"


class XMetaWarning(UserWarning):
    """Something xmeta did on the user's behalf that they should know of (the CLI prints it on one line)."""


def warn(message: str) -> None:
    import warnings

    warnings.warn(message, XMetaWarning, stacklevel=3)
