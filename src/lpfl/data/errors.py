"""Exceptions raised while finding and reading datasets.

They subclass the built-in errors callers would catch anyway (a missing dataset *is* a missing
file, a malformed one *is* a bad value), so generic handlers keep working while the CLI can
still tell the two apart and print the long explanatory message.
"""


class DatasetNotFoundError(FileNotFoundError):
    """No accepted layout of a dataset exists under the data directory."""


class DataFormatError(ValueError):
    """A dataset file exists but its content cannot be trusted."""
