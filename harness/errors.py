"""User-facing errors: one paragraph naming the file, key or value and what was expected."""


class HarnessError(Exception):
    """An error caused by the user's input or environment; the CLI prints it without a traceback."""


class ConfigError(HarnessError):
    """A configuration key or value is unknown or invalid."""


class DataError(HarnessError):
    """A dataset root, split list, image or mask is missing or malformed."""


class NonFiniteLossError(HarnessError):
    """Training produced a NaN/Inf loss; the run stops and keeps its last good checkpoint."""
