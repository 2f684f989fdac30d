"""The one error type the command line turns into a message and a non-zero exit."""

__all__ = ["HarnessError"]


class HarnessError(Exception):
    """Bad input or an unusable resource: the message names the file, line, key or name."""
