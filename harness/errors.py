"""User-facing errors: one paragraph naming the file, key or value and what was expected."""


class HarnessError(Exception):
    """An error caused by the user's input or environment; the CLI prints it without a traceback."""


class ConfigError(HarnessError):
    """A configuration key or value is unknown or invalid."""


class DataError(HarnessError):
    """A dataset root, split list, image or mask is missing or malformed."""


class NonFiniteLossError(HarnessError):
    """Training produced a NaN/Inf loss; the run stops and keeps its last good checkpoint."""


class CheckpointError(HarnessError):
    """A run's ``latest.pt`` cannot be read or does not belong to the run."""


class WriteError(HarnessError):
    """A file of a run cannot be written (full disk, read-only or foreign folder); ``path``, ``errno``."""

    def __init__(self, message: str, path: str = "", errno: int | None = None):
        super().__init__(message)
        self.path = path
        self.errno = errno
