"""Errors archsim reports to users: one clear line, never a traceback.

Every error names where the problem is (a file and, for config data, the dotted key path)
and what was expected. The CLI prints ``str(error)`` and exits with code 2.
"""

from __future__ import annotations


class ArchsimError(Exception):
    """Base class of all user-facing errors."""

    exit_code = 2


class ConfigError(ArchsimError):
    """A configuration or workload file is missing, malformed or invalid."""

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None):
        if file or key:  # one problem: one line, whatever text from the input it quotes
            message, file, key = (_one_line(t) if t else t for t in (message, file, key))
        self.file = file
        self.key = key
        self.message = message
        where = ": ".join(part for part in (file, key) if part)
        super().__init__(f"{where}: {message}" if where else message)


class UnitError(ValueError):
    """A quantity string could not be parsed or has the wrong dimension.

    Subclasses ValueError so pydantic turns it into a validation error with the key path.
    """


class FieldError(ValueError):
    """A cross-field check failed; ``key`` (dotted, relative to the model that raised it) names
    the field to blame, so the error points there rather than at the whole mapping."""

    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(message)


# Every character str.splitlines() breaks at, escaped.
_LINE_BREAKS = {ord(c): repr(c)[1:-1] for c in "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"}


def _one_line(text: str) -> str:
    return text.translate(_LINE_BREAKS)


class ArchsimWarning(UserWarning):
    """Something a run may have got wrong without failing (a key no reader takes); the CLI
    prints it as one line on stderr."""
