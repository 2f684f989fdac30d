"""The one error type: bad input or an unusable resource, turned into a message and a non-zero exit."""

__all__ = ["WorkbenchError"]


class WorkbenchError(Exception):
    """Bad input or an unusable resource: the message names the file, line, key or name."""
