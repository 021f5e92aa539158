"""User-facing errors. Each message names the file, key or value at fault and what to do."""


class ESegError(Exception):
    """Base class for every error eseg raises on purpose."""


class ConfigError(ESegError, ValueError):
    """A config file, key or value is wrong."""


class DataError(ESegError, ValueError):
    """An image, mask or dataset folder cannot be used."""


class CheckpointError(ESegError, ValueError):
    """A saved model or checkpoint is missing, corrupt or does not match."""
