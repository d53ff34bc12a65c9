"""User-facing errors.

Anything raised as a `SaganError` is a problem with the user's input or environment (a wrong path, a bad
config value, a checkpoint of another model). The CLI prints its message on one line and exits non-zero,
without a traceback unless `--debug` is given. Bugs stay ordinary exceptions.
"""

from __future__ import annotations

import difflib


class SaganError(Exception):
    """A problem the user can fix; the message says what it is and how to fix it."""

    exit_code = 2


class ConfigError(SaganError):
    """A bad model name, config key or value."""


class DataError(SaganError):
    """A data set that cannot be found, read or used."""


class CheckpointError(SaganError):
    """A checkpoint that is missing, corrupt, unsafe or from another model or format."""


def did_you_mean(word: str, choices: list[str] | tuple[str, ...]) -> str:
    """' (did you mean: a, b?)' for the closest choices, or '' when nothing is close."""
    close = difflib.get_close_matches(word, list(choices), n=3, cutoff=0.5)
    return f" (did you mean: {', '.join(close)}?)" if close else ""
