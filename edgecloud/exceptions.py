"""Exception types raised by edgecloud."""


class EdgecloudError(Exception):
    """Base class for every error edgecloud raises on purpose."""


class ConfigError(EdgecloudError, ValueError):
    """A run or node configuration value is missing, unknown or out of range."""


class CheckpointError(EdgecloudError):
    """A checkpoint cannot be used to resume the requested run."""


class DatasetNotFoundError(EdgecloudError, FileNotFoundError):
    """A dataset is not on disk and may not (or could not) be downloaded."""


class InconsistentRepliesError(EdgecloudError):
    """Replies from clients cannot be decoded or aggregated consistently."""
