"""The settings of a training run (`TrainConfig`), their checks, and the family flags.

The families and the arguments they declare come from `tfp_flows.FAMILIES`, read when a run
is checked, so a family that a `--plugin` module adds is a valid `--flow` (and its arguments
valid `--flow_args`) once that module is imported.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
import types
import typing
import warnings
from collections.abc import Iterable, Mapping

import numpy as np
from absl import flags

from tfp_flows import transforms
from tfp_flows.dequantizers import DEQUANTIZERS, UNIFORM
from tfp_flows.families import FAMILIES, PRECISION, TRANSFORM_ARGUMENTS, Flow
from tfp_flows.training.errors import ConfigError

__all__ = ["MONITOR", "SIZE_FLAGS", "STRATEGIES", "TRANSFORM_FLAGS", "TrainConfig",
           "family", "family_args", "family_flags", "flag_name", "flow_arguments",
           "renamed", "typed_config", "validated"]

STRATEGIES: tuple[str, ...] = ("default", "mirrored", "multi_worker")
"""The values of `TrainConfig.strategy` (the training command's `--strategy`)."""
# The flags of the coupling transform, for the families that offer a choice of it (the
# affine transform's scale_fn is a Python shortcut only; --flow_args takes it).
TRANSFORM_FLAGS: tuple[str, ...] = ("transform", "bins", "bound")
# The score that picks the best model and that patience waits on.
MONITOR = "val_bits_per_dim"


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything `run` needs; the command-line flags have the same names and defaults.

    Size and transform fields left as None take the family's default (see
    `tfp_flows.families`). `flow_args` holds arguments of the family by name, for those
    without a flag of their own (a plugin family's); a string value is read as the type the
    family declares (`tfp_flows.Argument`).
    `plugins` (the repeatable `--plugin`) names modules imported before the settings are
    checked. `precision` is the family's `precision=` (float32, bfloat16 or float16), and
    `dequantization` its `dequantization=` ("uniform", "variational" or another registered
    dequantizer's name; see `tfp_flows.dequantizers`), both part of the run's identity.
    `verbose` (the Keras progress bar: 1, or 0 for none) has no flag.
    """

    flow: str = "realnvp"
    dataset: str = "two_moons"
    output_dir: str | None = None
    data_dir: str | None = None
    epochs: int = 20
    batch_size: int = 64
    learning_rate: float = 1e-3
    seed: int = 0
    num_examples: int | None = None
    num_scales: int | None = None
    depth: int | None = None
    hidden: int | None = None
    num_couplings: int | None = None
    num_layers: int | None = None
    num_hidden: int | None = None
    num_blocks: int | None = None
    transform: str | None = None
    bins: int | None = None
    bound: float | None = None
    flow_args: dict[str, bool | int | float | str] = dataclasses.field(default_factory=dict)
    conditional: bool = False
    precision: str = "float32"
    dequantization: str = UNIFORM
    patience: int = 10
    strategy: str = "default"
    jit_compile: bool = False
    temperatures: tuple[float, ...] = (0.5, 0.7, 1.0)
    checkpoint_steps: int = 100
    num_bits: int = 8
    image_size: int | None = None
    crop: int | None = None
    shuffle_buffer: int = 10_000
    skip_bad_files: bool = False
    allow_changes: bool = False
    plugins: tuple[str, ...] = ()
    verbose: int = 1


# The settings that are integer (size) arguments of the families: each is a flag of its own.
SIZE_FLAGS: tuple[str, ...] = tuple(
    field.name for field in dataclasses.fields(TrainConfig)
    if any(argument.name == field.name and argument.type is int
           for family_ in FAMILIES.values() for argument in family_.arguments))


def flag_name(field: str) -> str:
    """The command-line flag of a `TrainConfig` field."""
    return "plugin" if field == "plugins" else field


def family(name: str) -> type[Flow]:
    """The family called `name`.

    Raises:
        ConfigError: When there is none, listing those there are.
    """
    if name not in FAMILIES:
        raise ConfigError(f"unknown --flow {name!r}; choose one of {', '.join(FAMILIES)}")
    return FAMILIES.get(name)


def family_args(flow: str, image: bool) -> tuple[str, ...]:
    """The model arguments that the family `flow` takes, for images or for vectors (those
    that say which model a run directory holds: not the Python-only transform shortcuts)."""
    python_only = {argument.name for argument in TRANSFORM_ARGUMENTS} - set(TRANSFORM_FLAGS)
    return tuple(argument.name for argument in family(flow).arguments_for(3 if image else 1)
                 if argument.name not in python_only)


def family_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Defines the flags of the families' arguments.

    A named flag for each size and transform argument of the built-in families, and
    `--flow_args` for any argument of any family, a plugin's included (a plugin is imported
    after the flags are parsed, so its arguments cannot have flags of their own).
    """
    for name in SIZE_FLAGS:
        users = [(flow, argument) for flow, family_ in FAMILIES.items()
                 for argument in family_.arguments if argument.name == name]
        flags.DEFINE_integer(name, None, f"{users[0][1].help} Taken by "
                             f"{', '.join(flow for flow, _ in users)}; default: "
                             f"the family's.", flag_values=flag_values)
    flags.DEFINE_integer("levels", None, "Deprecated name of --num_scales.",
                         flag_values=flag_values)
    users = ", ".join(flow for flow in FAMILIES if "transform" in family_args(flow, False))
    flags.DEFINE_string("transform", None,
                        f"Coupling transform: {', '.join(transforms.TRANSFORMS)}, or one a "
                        f"--plugin registers. Taken by {users}; default: the family's.",
                        flag_values=flag_values)
    flags.DEFINE_integer("bins", None, "Bins of a spline transform; default: the family's.",
                         flag_values=flag_values)
    flags.DEFINE_float("bound", None, "A spline transform acts on [-bound, bound] (the "
                       "identity outside); default: the family's.", flag_values=flag_values)
    flags.DEFINE_list("flow_args", [],
                      "Arguments of the --flow family by name, as name=value pairs separated "
                      "by commas (--flow_args=hidden=64,temperature=0.5): any argument the "
                      "family declares (its `arguments`, and transform, scale_fn, bins and "
                      "bound when it has a choice of transform), a --plugin family's "
                      "included. Each value is read as the type the family declares for it "
                      "(an integer, a number, true or false, or a string). An argument with a "
                      "flag of its own may be given either way, not both.", flag_values=flag_values)


def renamed(values: Mapping) -> dict:
    """The settings with the deprecated `levels` (until the next release) as `num_scales`."""
    values = dict(values)
    levels = values.pop("levels", None)
    if levels is None:
        return values
    if values.get("num_scales") is not None:
        raise ConfigError("--levels is the deprecated name of --num_scales; pass only "
                          "--num_scales")
    # A FutureWarning, unlike a DeprecationWarning, is shown to the users of a command.
    warnings.warn("--levels is deprecated and will be removed in the next release; use "
                  "--num_scales", FutureWarning, stacklevel=3)
    return {**values, "num_scales": levels}


# What a setting of each type must be.
_EXPECTED = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def _is_a(value, kind: type) -> bool:
    """Whether `value` is a `kind` (bool, int, float or str); a bool is no number."""
    if kind is bool:
        return isinstance(value, (bool, np.bool_))
    if kind in (int, float):
        return (isinstance(value, numbers.Integral if kind is int else numbers.Real)
                and not isinstance(value, (bool, np.bool_)))
    return isinstance(value, kind)


def _typed(name: str, value, kind):
    """`value` as the type `kind` of the setting `name` (a TrainConfig field's annotation).

    Raises:
        ConfigError: When `value` is not of that type.
    """
    options = typing.get_args(kind) if isinstance(kind, types.UnionType) else (kind,)
    if value is None and type(None) in options:
        return None
    kind = next(option for option in options if option is not type(None))
    optional = " or None" if type(None) in options else ""
    flag = flag_name(name)
    if typing.get_origin(kind) is tuple:
        item = typing.get_args(kind)[0]
        items = (None if isinstance(value, (str, bytes, Mapping))
                 or not isinstance(value, Iterable) else tuple(value))
        if items is None or not all(_is_a(v, item) for v in items):
            raise ConfigError(f"--{flag} must be a sequence, each item {_EXPECTED[item]}, got "
                              f"{value!r}")
        return tuple(item(v) for v in items)
    if typing.get_origin(kind) is dict:
        if not isinstance(value, Mapping) or not all(
                isinstance(k, str) and any(_is_a(v, t) for t in _EXPECTED)
                for k, v in value.items()):
            raise ConfigError(f"--{flag} must map argument names to values (each true or "
                              f"false, a number or a string), got {value!r}")
        return dict(value)
    if not _is_a(value, kind):
        raise ConfigError(f"--{flag} must be {_EXPECTED[kind]}{optional}, got {value!r} of "
                          f"type {type(value).__name__}")
    return kind(value)


def typed_config(config: TrainConfig | Mapping) -> TrainConfig:
    """`config` as a `TrainConfig` whose every field has its declared type, with an
    `output_dir` (default `runs/<flow>_<dataset>`); names are checked by `validated`.

    Raises:
        ConfigError: For an unknown setting or a value of the wrong type.
    """
    if isinstance(config, Mapping):
        config = renamed(config)
        unknown = set(config) - {f.name for f in dataclasses.fields(TrainConfig)}
        if unknown:
            raise ConfigError(f"unknown settings {sorted(unknown)}")
        config = TrainConfig(**config)
    kinds = typing.get_type_hints(TrainConfig)
    config = TrainConfig(**{field.name: _typed(field.name, getattr(config, field.name),
                                               kinds[field.name])
                            for field in dataclasses.fields(TrainConfig)})
    if config.output_dir is None:
        name = os.path.splitext(os.path.basename(os.path.normpath(config.dataset)))[0]
        config = dataclasses.replace(config, output_dir=os.path.join("runs",
                                                                     f"{config.flow}_{name}"))
    return config


def validated(config: TrainConfig) -> TrainConfig:
    """A `typed_config` checked against the families (import the plugins first) and the
    ranges of its values, with the `flow_args` given as strings read as their types.

    Raises:
        ConfigError: Naming the setting and what it must be.
    """
    flow_args = _flow_args(family(config.flow), config)
    if config.strategy not in STRATEGIES:
        raise ConfigError(f"unknown --strategy {config.strategy!r}; choose one of "
                          f"{', '.join(STRATEGIES)}")
    positive = {"epochs": config.epochs, "batch_size": config.batch_size,
                **{name: getattr(config, name) for name in SIZE_FLAGS},
                "num_examples": config.num_examples, "image_size": config.image_size,
                "crop": config.crop, "shuffle_buffer": config.shuffle_buffer}
    for name, value in positive.items():
        if value is not None and value < 1:
            raise ConfigError(f"--{name} must be a positive integer, got {value}")
    for name in ("patience", "checkpoint_steps", "seed"):
        if getattr(config, name) < 0:
            raise ConfigError(f"--{name} must be >= 0, got {getattr(config, name)}")
    if config.precision not in PRECISION.choices:
        raise ConfigError(f"--precision must be one of {', '.join(PRECISION.choices)}, got "
                          f"{config.precision!r}")
    if config.dequantization != UNIFORM and config.dequantization not in DEQUANTIZERS:
        raise ConfigError(f"--dequantization must be {UNIFORM}, a registered dequantizer "
                          f"({', '.join(DEQUANTIZERS.names())}) or one a --plugin registers; "
                          f"got {config.dequantization!r}")
    if not 1 <= config.num_bits <= 8:
        raise ConfigError(f"--num_bits must be in 1..8 (2**num_bits pixel levels), got "
                          f"{config.num_bits}")
    if not 0 < config.learning_rate < math.inf:
        raise ConfigError(f"--learning_rate must be a finite number > 0, got "
                          f"{config.learning_rate}")
    if not config.temperatures or not all(t > 0 for t in config.temperatures):
        raise ConfigError(f"--temperatures must be positive numbers, got {config.temperatures}")
    return dataclasses.replace(config, flow_args=flow_args)


def _flow_args(family_: type[Flow], config: TrainConfig) -> dict:
    """`config.flow_args`, each a declared argument of `family_`, strings read as its type."""
    kinds = {argument.name: argument.type
             for argument in (*family_.arguments_for(1), *family_.arguments_for(3))}
    declared = tuple(kinds)
    args = {}
    for name, value in config.flow_args.items():
        if name not in declared:
            raise ConfigError(f"--flow_args names {name!r}, which --flow {config.flow} does not "
                              f"take; it takes {', '.join(declared) or 'none'}")
        if name in (*SIZE_FLAGS, *TRANSFORM_FLAGS) and getattr(config, name) is not None:
            raise ConfigError(f"{name} is given twice, as --{name} and in --flow_args; give "
                              f"it once")
        kind = kinds[name]
        if isinstance(value, str) and kind is not str:
            value = _parsed(value, kind, name)
        elif not _is_a(value, kind):
            raise ConfigError(f"--flow_args {name} must be {_EXPECTED[kind]}, got {value!r} of "
                              f"type {type(value).__name__}")
        args[name] = kind(value)
    return args


def _parsed(text: str, kind: type, name: str):
    """The `--flow_args` value `text` read as `kind`."""
    try:
        if kind is bool:
            return {"true": True, "false": False}[text.strip().lower()]
        return kind(text)
    except (KeyError, ValueError):
        raise ConfigError(f"--flow_args {name} must be {_EXPECTED[kind]}, got {text!r}") from None


def flow_arguments(config: TrainConfig) -> dict:
    """The family arguments that `config` gives: its set flags and its `flow_args`."""
    named = {name: getattr(config, name) for name in (*SIZE_FLAGS, *TRANSFORM_FLAGS)
             if getattr(config, name) is not None}
    return {**named, **config.flow_args}
