"""The two ways a training run stops with a one-line message: bad input, or training gone bad."""

from __future__ import annotations

__all__ = ["ConfigError", "TrainingError", "reason"]

# Longest reason quoted in an error message; Keras's can run to pages.
_REASON_CHARS = 200


class ConfigError(ValueError):
    """Bad input: an unknown name, a missing file, a bad value, or a run directory in use."""


class TrainingError(RuntimeError):
    """Training cannot go on: a non-finite loss, weights or validation score."""


def reason(error: BaseException) -> str:
    """An exception as one short line, for the one-line error of the command."""
    text = " ".join(f"{type(error).__name__}: {error}".split())
    return text if len(text) <= _REASON_CHARS else f"{text[:_REASON_CHARS - 3]}..."
