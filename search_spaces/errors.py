"""Errors a user can cause, at the bottom layer so every package may raise them. The CLI prints their message on one line and exits with code 2.

Anything else is a bug in this project and keeps its traceback.
"""


class UserError(Exception):
    """Base for problems the user can fix: the message names the problem and the fix."""


class DataError(UserError):
    """A data set (a user's Parquet file or simulator settings) is unusable."""


class ConfigError(UserError):
    """A command-line option or setting is invalid."""
