"""The run directory's files: written so that a kill at any point leaves the old file whole,
and read back with a one-line error when damaged."""

from __future__ import annotations

import json
import os

import keras

from tfp_flows.training.errors import ConfigError, reason

__all__ = ["fsync", "read_json_object", "save_model_atomically", "write_json_atomically"]


def read_json_object(path: str, what: str, advice: str, keys=()) -> dict:
    """The JSON object in `path`, which must have `keys`.

    Raises:
        ConfigError: Saying that `what` `path` is unreadable and why, then `advice`.
    """
    try:
        with open(path) as f:
            value = json.load(f)
    except (OSError, ValueError) as error:
        why = reason(error)
    else:
        if not isinstance(value, dict):
            why = f"expected a JSON object, got a {type(value).__name__}"
        elif missing := [key for key in keys if key not in value]:
            why = f"it lacks {', '.join(missing)}"
        else:
            return value
    raise ConfigError(f"{what} {path} is unreadable ({why}); {advice}")


def fsync(path: str) -> None:
    """Flushes a file to disk, so a rename that publishes it cannot outrun its contents."""
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _partial(path: str) -> str:
    """Where `path` is written before a rename publishes it (a run directory ignores these)."""
    return os.path.join(os.path.dirname(path), f".partial-{os.path.basename(path)}")


def write_json_atomically(path: str, value) -> None:
    """Writes `value` as JSON to `path`: a reader sees the old file or the new one, whole."""
    partial = _partial(path)
    with open(partial, "w") as f:
        json.dump(value, f, indent=2)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(partial, path)


def save_model_atomically(model: keras.Model, path: str) -> None:
    """Saves `model` to the `.keras` file `path`, as `write_json_atomically` writes JSON."""
    # Keras insists on the .keras suffix, so the partial file keeps it.
    partial = _partial(path)
    model.save(partial, overwrite=True)
    fsync(partial)
    os.replace(partial, path)
