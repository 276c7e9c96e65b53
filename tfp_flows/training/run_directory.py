"""The settings file of a run directory (config.json): which model the directory holds, the
settings it was trained with and the changes made to them, and the plugins it needs."""

from __future__ import annotations

import dataclasses
import math
import os

from tfp_flows import dequantizers
from tfp_flows.families import FAMILIES
from tfp_flows.flow_model import FlowModel
from tfp_flows.training.config import TrainConfig, family_args
from tfp_flows.training.errors import ConfigError
from tfp_flows.training.files import read_json_object, write_json_atomically
from tfp_flows.training.lock import LOCK_NAME

__all__ = ["RUN_SETTINGS", "SETTINGS_NAME", "check_output_dir", "identity", "read_settings",
           "setting_changes", "trained_plugins", "write_settings"]

SETTINGS_NAME = "config.json"
# The config.json entries that define the model and its data; a run directory holds one model.
_IDENTITY_KEYS = ("flow", "dataset", "seed", "num_examples", "event_shape", "num_levels",
                  "crop", "conditional", "precision", "dequantization", "model")
# The training settings that change what a run trains (its batches, its updates, when it
# stops): a rerun that changes one is refused unless --allow_changes. The others (more epochs,
# the strategy, XLA, how often it commits, the figures, the plugins) may change between the
# commands that train one run directory: they change the weights by float rounding at most,
# except that a multi-worker run reads streamed data in batches of its own (see
# `tfp_flows.datasets.streamed`).
RUN_SETTINGS = ("batch_size", "learning_rate", "patience", "shuffle_buffer")
# Those of them that decide an epoch's batches, which a committed step counts.
_EPOCH_SETTINGS = ("batch_size", "shuffle_buffer")


def identity(config: TrainConfig, splits, model: FlowModel) -> dict:
    """The config.json entries that say which model, on which data, a run trains."""
    takes = family_args(config.flow, len(splits.event_shape) == 3)
    # The family's values, its defaults included (bins and bound are absent unless a spline).
    flow = model.flow.get_config()
    transform = flow.get("transform")
    if isinstance(transform, dict):
        # The transform as its flags name it (the flat form that run directories store).
        options = {key: value for key, value in transform.items() if key != "name"}
        flow = {**options, **flow, "transform": transform["name"]}
    return {"flow": config.flow, "dataset": config.dataset, "seed": config.seed,
            "num_examples": config.num_examples, "event_shape": list(splits.event_shape),
            "num_levels": splits.num_levels, "crop": config.crop,
            "conditional": config.conditional, "precision": model.flow.precision,
            # The dequantizer with its options ("uniform" for the pipeline's noise).
            "dequantization": dequantizers.serialize(model.dequantizer),
            "model": {name: flow.get(name) for name in takes}}


def read_settings(output_dir: str) -> dict | None:
    """The config.json of the run in `output_dir` (as today's version writes it), or None.

    Raises:
        ConfigError: When config.json is damaged.
    """
    path = os.path.join(output_dir, SETTINGS_NAME)
    if not os.path.exists(path):
        return None
    return _upgraded(read_json_object(path, "the run's",
                                      "restore it, or pick another --output_dir"))


def _upgraded(stored: dict) -> dict:
    """The identity in a config.json written by an earlier version.

    Runs before --num_scales, --transform and --conditional named the number of scales
    `levels`, and trained unconditional flows with the affine transform (the default of every
    family that offers a choice). An argument the family declares now and the file lacks was
    not a setting then: the run trained with its default. Runs before --precision trained in
    float32. The flows that see images as vectors (MAF, IAF) were given flattened images by
    the command; they flatten them themselves now, so the identity names the image shape.
    Runs before --dequantization had the pipeline's uniform noise.
    """
    model = dict(stored.get("model", {}))
    stored = {"precision": "float32", "dequantization": dequantizers.UNIFORM, **stored}
    if "conditional" not in stored:
        stored = {**stored, "conditional": False}
        if "levels" in model:
            model["num_scales"] = model.pop("levels")
        if stored.get("flow") in FAMILIES and "transform" in family_args(stored["flow"],
                                                                          False):
            model["transform"] = "affine"
    family = FAMILIES.get(stored["flow"]) if stored.get("flow") in FAMILIES else None
    shape = stored.get("event_shape")
    if family is not None and isinstance(shape, list) and len(shape) in (1, 3):
        image = len(shape) == 3
        for argument in family.arguments_for(len(shape)):
            if argument.name not in model and argument.name in family_args(stored["flow"],
                                                                           image):
                model[argument.name] = argument.default_for(len(shape))
    return {**stored, "model": model}


def _same_events(flow: str, old, new) -> bool:
    """Whether a run's stored event shape is the one this command's data has: equal, or, for
    a family that sees images as vectors (MAF, IAF), the flattened image an earlier version
    of the command stored."""
    if old == new:
        return True
    return (flow in FAMILIES and FAMILIES.get(flow).flattens_images and isinstance(old, list)
            and len(old) == 1 and len(new) == 3 and old[0] == math.prod(new))


def trained_plugins(stored: dict | None) -> tuple[str, ...]:
    """The plugin modules a run's config.json names (none before --plugin existed).

    Raises:
        ConfigError: When they are not a list of module names.
    """
    training = (stored or {}).get("training")
    plugins = training.get("plugins", []) if isinstance(training, dict) else []
    if not isinstance(plugins, list) or not all(isinstance(p, str) for p in plugins):
        raise ConfigError(f"the run's {SETTINGS_NAME} names plugins {plugins!r}, not a list of "
                          f"module names; restore it, or pick another --output_dir")
    return tuple(plugins)


def check_output_dir(output_dir: str, identity_: dict, chief: bool) -> dict | None:
    """Refuses a directory that holds another model, or files that are not a run's.

    Returns:
        The run's config.json, or None for a new run.
    """
    stored = read_settings(output_dir)
    if stored is not None:
        differences = []
        for key in _IDENTITY_KEYS:
            old, new = stored.get(key), identity_[key]
            if isinstance(old, dict) and isinstance(new, dict):
                # The model's arguments by their flags' names; others (a dequantizer's
                # options) under their entry's.
                prefix = "" if key == "model" else f"{key} "
                differences += [f"{prefix}{k} {old.get(k)} -> {new.get(k)}"
                                for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
            elif old != new and not (key == "event_shape"
                                     and _same_events(identity_["flow"], old, new)):
                differences.append(f"{key} {old} -> {new}")
        if differences:
            raise ConfigError(f"{output_dir} holds a different model ({'; '.join(differences)});"
                              f" pick another --output_dir, or delete {output_dir} to start over")
    elif chief and os.path.isdir(output_dir) and [
            name for name in os.listdir(output_dir)
            if name != LOCK_NAME and not name.startswith(".partial-")]:
        raise ConfigError(f"{output_dir} is not empty and holds no {SETTINGS_NAME} of a "
                          f"training run; pick another --output_dir")
    return stored


def setting_changes(config: TrainConfig, stored: dict | None, state: dict) -> dict:
    """The training settings of `config` that differ from those the run was trained with.

    Args:
        config: The settings of this command.
        stored: The run's config.json, or None for a new run.
        state: The run's checkpoint state (`Checkpoint.state`).

    Returns:
        `{name: [old, new]}` for each setting in `RUN_SETTINGS` that changed, and for
        `epochs` when fewer than the run has trained; empty for a new run.

    Raises:
        ConfigError: When some changed and `config.allow_changes` is false, or when a setting
            that decides an epoch's batches changes in the middle of an epoch.
    """
    if stored is None:
        return {}
    trained = stored.get("training", {})
    changes = {name: [trained[name], getattr(config, name)] for name in RUN_SETTINGS
               if name in trained and trained[name] != getattr(config, name)}
    if state["epoch"] > config.epochs:
        changes["epochs"] = [trained.get("epochs"), config.epochs]
    if not changes:
        return {}
    listed = "; ".join(f"{name} {old} -> {new}" for name, (old, new) in changes.items())
    out = config.output_dir
    if not config.allow_changes:
        trained_epochs = (f", and it has trained {state['epoch']} epochs"
                          if "epochs" in changes else "")
        raise ConfigError(f"{out} was trained with other settings ({listed}{trained_epochs}); "
                          f"rerun with the settings it was trained with, pass --allow_changes "
                          f"to go on with these, or pick another --output_dir")
    mid_epoch = [name for name in _EPOCH_SETTINGS if name in changes]
    if mid_epoch and state["step"]:
        old = " ".join(f"--{name}={changes[name][0]}" for name in mid_epoch)
        raise ConfigError(f"{', '.join('--' + n for n in mid_epoch)} can change only between "
                          f"epochs, and {out} stopped {state['step']} steps into epoch "
                          f"{state['epoch'] + 1}; finish that epoch first (rerun with {old} "
                          f"--epochs={state['epoch'] + 1})")
    return changes


def write_settings(config: TrainConfig, identity_: dict, changes: list) -> None:
    """Writes config.json: the identity, the other settings of `config`, and the changes."""
    os.makedirs(config.output_dir, exist_ok=True)
    training = {k: v for k, v in dataclasses.asdict(config).items() if k not in identity_}
    write_json_atomically(os.path.join(config.output_dir, SETTINGS_NAME),
                          {**identity_, "training": training, "changes": changes})
