"""The user-error classes for code in trainables/ and above (defined in search_spaces/errors.py,
the bottom layer, so the search-space loader raises the same classes without importing upward)."""
from search_spaces.errors import ConfigError, DataError, UserError

__all__ = ["ConfigError", "DataError", "UserError"]
