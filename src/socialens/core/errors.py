"""User-facing errors: each carries one line that names the file, row or field and what was expected.

The CLI prints ``str(error)`` and exits with status 2; it never shows a traceback for these.
"""


class SocialensError(Exception):
    """Base class of every error the user can fix by changing their input."""


class DataError(SocialensError):
    """A data file, column, row or label is not what was expected."""


class ConfigError(SocialensError):
    """An experiment or dataset YAML has a bad field."""


def where(path, line: int | None = None, field: str | None = None) -> str:
    """Format a location prefix such as ``data.csv:12 (column 'label')``."""
    text = str(path)
    if line is not None:
        text += f":{line}"
    if field is not None:
        text += f" (column '{field}')"
    return text
