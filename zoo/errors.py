"""zoo's error types. Every error a user can cause (a bad name, value, file or option) is a `ZooError`, so the
`zoo` command prints it as one line and exits 2, while a bug still shows its traceback.

Each type also derives from the builtin it refines, so `except ValueError` / `except FileNotFoundError` code keeps
working (as requests' and numpy's exceptions do).
"""


class ZooError(Exception):
    """Base of every error zoo raises on purpose; the message names what was wrong and what is allowed."""


class InputError(ZooError, ValueError):
    """An argument, option, setting, name or piece of data outside what is allowed."""


class InputTypeError(InputError, TypeError):
    """An argument of the wrong type."""


class MissingFileError(ZooError, FileNotFoundError):
    """A file or directory zoo was pointed at, or needs inside one, does not exist."""


class UnsafeFileError(ZooError, ValueError):
    """A file zoo refuses to read because reading it could run code (a pickle)."""


class CorruptFileError(ZooError, ValueError):
    """A weights, config, manifest or checkpoint file that is malformed or does not fit what it should hold."""


class TrainingError(ZooError, RuntimeError):
    """A training run that had to stop (non-finite steps, a failed sub-run, a checkpoint it could not write)."""


class CheckpointError(TrainingError):
    """A checkpoint that could not be written (disk full, ...) or read; the previous one is left as it was."""
