r"""Trains a flow from the command line: `python -m tfp_flows.train --flow=glow --dataset=digits`.

One command loads the data (`tfp_flows.datasets`), builds the flow (`tfp_flows.families`), trains it
with a Keras progress bar, early stopping on validation bits/dim and TensorBoard logs, and
writes into `--output_dir`:

    config.json          the flags (and the changes a rerun made to them); the model and
                         data ones identify the run
    backup/              the resumable training state (weights, optimizer, epoch history)
    model.keras          the model with the best validation bits/dim so far
    logs/                TensorBoard logs
    metrics.json         train / validation / test NLL and bits/dim, epochs and optimizer
                         iterations, throughput, wall time
    training_curve.png   train and validation bits/dim per epoch
    samples.png          images: samples at several temperatures (a row per class with
                         --conditional)
    density.png          2-D data: data, samples and the learned density
    .lock                the PID and host of the command training there, while it runs

A run killed at any point (SIGKILL included) resumes when the same command is run again: the
training state is committed every `--checkpoint_steps` steps and at every epoch end, each
commit atomic (see `Checkpoint`). The resumed run goes on at the committed step with the
batches and dequantization noise an uninterrupted run sees there (each epoch's are a function
of the seed and the epoch number), so after any number of kills it ends with the optimizer
iterations, epoch history and weights (to float rounding) of a run never killed.

An `--output_dir` that holds a different model is refused, and so is one where another command
trains (see `_locked`). A rerun whose training settings would change what the run trains
(`_RUN_SETTINGS`, or fewer `--epochs` than it has trained) is refused too, naming them, unless
`--allow_changes` is given; config.json and metrics.json then list each change and where in
the run it was made. A damaged checkpoint, config.json or best model stops the command with a
one-line error, as bad input does.

The families and their size flags come from `tfp_flows.FAMILIES`. `--conditional` trains
p(x | label) on the dataset's class labels (the mixture components of the 2-D toys).

Examples:

    python -m tfp_flows.train --flow=realnvp --dataset=two_moons --batch_size=256 \
        --learning_rate=3e-3 --epochs=20 --output_dir=runs/two_moons
    python -m tfp_flows.train --flow=glow --dataset=digits --num_scales=2 --depth=4 \
        --hidden=64 --learning_rate=3e-3 --epochs=20 --output_dir=runs/glow_digits
    python -m tfp_flows.train --flow=realnvp --dataset=eight_gaussians --conditional \
        --output_dir=runs/conditional_eight_gaussians
    python -m tfp_flows.train --flow=glow --dataset=celeb_a --crop=148 --image_size=64 \
        --num_bits=5 --output_dir=runs/glow_celeba

TFDS datasets and directories of TFRecord or image files are streamed (`--num_bits`,
`--image_size`, `--crop`, `--shuffle_buffer`; see `tfp_flows.streaming`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import glob
import json
import math
import numbers
import os
import platform
import re
import signal
import socket
import sys
import time
import types
import typing
import warnings
import zipfile
from collections.abc import Iterable, Mapping
from typing import NoReturn

import keras
import numpy as np
import tensorflow as tf
from absl import app, flags

from tfp_flows import datasets, transforms
from tfp_flows.families import FAMILIES, MAF, TRANSFORM_ARGUMENTS
from tfp_flows.flow_model import FlowModel

__all__ = ["STRATEGIES", "Checkpoint", "ConfigError", "TrainConfig", "TrainingError", "run"]

STRATEGIES: tuple[str, ...] = ("default", "mirrored", "multi_worker")
# The size arguments of the families, for vectors or images: each is a flag.
SIZE_FLAGS: tuple[str, ...] = tuple(dict.fromkeys(
    argument.name for family in FAMILIES.values() for argument in family.arguments
    if argument.type is int))
# The flags of the coupling transform, for the families that offer a choice of it.
TRANSFORM_FLAGS: tuple[str, ...] = tuple(
    argument.name for argument in TRANSFORM_ARGUMENTS if argument.name != "scale_fn")
# The config.json entries that define the model and its data; a run directory holds one model.
_IDENTITY_KEYS = ("flow", "dataset", "seed", "num_examples", "event_shape", "num_levels",
                  "crop", "conditional", "model")
# The training settings that change what a run trains (its batches, its updates, when it
# stops): a rerun that changes one is refused unless --allow_changes. The others (more epochs,
# the strategy, XLA, how often it commits, the figures) may change between the commands that
# train one run directory: they change the weights by float rounding at most, except that a
# multi-worker run reads streamed data in batches of its own (see `tfp_flows.streaming`).
_RUN_SETTINGS = ("batch_size", "learning_rate", "patience", "shuffle_buffer")
# Those of them that decide an epoch's batches, which a committed step counts.
_EPOCH_SETTINGS = ("batch_size", "shuffle_buffer")
_MONITOR = "val_bits_per_dim"
# Sample grid: samples per row, and rows of an unconditional model (a conditional one has a
# row per class).
_SAMPLES_PER_ROW = 4
_UNCONDITIONAL_ROWS = 2
_DENSITY_GRID = 200
_DENSITY_SAMPLES = 4000
# The lock file of a run directory, which holds the PID and host of the command training in it.
_LOCK_NAME = ".lock"
# What reading a damaged weights or .keras file raises (h5py raises OSError).
_LOAD_ERRORS = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile)
# Longest reason quoted in an error message; Keras's can run to pages.
_REASON_CHARS = 200
# state.json entries added since the first release, with the values that older files imply.
_STATE_ADDED = {"epoch_metrics": None}
# Test hook: a command run with this environment variable set to a point's name SIGKILLs itself
# on reaching that point, so tests kill it at an exact moment instead of after a sleep. The
# points: "iteration:<n>" after the optimizer's n-th update (and its commit, if any),
# "commit:<n>" between writing the n-th commit's weights and publishing its state.json,
# "epoch_end:<n>" after epoch n's validation and best model and before its commit, and
# "evaluation" between the splits of the final evaluation.
_KILL_AT = "TFP_FLOWS_KILL_AT"


class ConfigError(ValueError):
    """Bad input: an unknown name, a missing file, a bad value, or a run directory in use."""


class TrainingError(RuntimeError):
    """Training cannot go on: a non-finite loss, weights or validation score."""


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything `run` needs; the command-line flags have the same names and defaults.

    Size and transform fields left as None take the family's default (see `tfp_flows.families`).
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
    conditional: bool = False
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
    verbose: int = 1


# --------------------------------------------------------------------------------- checkpoint

class Checkpoint(keras.callbacks.Callback):
    """The resumable state of a run: weights, optimizer, epoch history, best model, patience.

    This plays the part of `keras.callbacks.BackupAndRestore` plus `ModelCheckpoint` and
    `EarlyStopping`, which do not survive a kill: BackupAndRestore rewrites
    `latest.weights.h5` in place and its metadata as a second file, so a kill during a save
    leaves a corrupt or mismatched pair; after a restore it counts epochs from 0 again, so a
    mid-epoch save in the first resumed epoch records epoch 0; and ModelCheckpoint and
    EarlyStopping forget the best score and the patience used so far.

    A commit writes the weights (optimizer state and ActNorm's `data_initialized` flag
    included) to a file with a fresh name, then atomically replaces `state.json`, which names
    that file and holds the epoch history, the best epoch and, mid-epoch, the running means of
    the epoch's training metrics. A kill at any point leaves the previous commit whole.
    Commits happen every `every_steps` steps within an epoch and at each epoch end. A run
    resumed from a mid-epoch commit goes on from the committed step (`skipped` counts the
    steps before it, which `_fit` does not train again) with the epoch's metrics restored, so
    it ends with the iterations, history and weights of a run that was never killed.

    Each epoch end also writes the best model to `best_model_path` (atomically) when the
    validation bits/dim improves, and stops training after `patience` epochs without
    improvement. Weights that are not finite are never committed: a NaN or Inf loss or
    weights raise `TrainingError`.

    Args:
        directory: Where the state lives (created on the first commit).
        best_model_path: The `.keras` file for the best model.
        patience: Epochs without improvement before stopping; 0 never stops early.
        every_steps: Commit every this many steps within an epoch as well; 0 only at epoch ends.
        steps_per_epoch: Steps in an epoch, whose last step the epoch end commits (None:
            unknown, so every `every_steps`-th step commits).
        write: False on the non-chief workers of a multi-worker run, which track the same
            state but leave the files to the chief.
    """

    def __init__(self, directory: str, best_model_path: str, patience: int = 0,
                 every_steps: int = 0, steps_per_epoch: int | None = None, write: bool = True):
        super().__init__()
        self.directory = directory
        self.best_model_path = best_model_path
        self.patience = patience
        self.every_steps = every_steps
        self.steps_per_epoch = steps_per_epoch
        self.write = write
        self.state: dict = {**_STATE_ADDED, "commit": 0, "epoch": 0, "step": 0, "iterations": 0,
                            "weights": None, "history": [], "best_epoch": None,
                            "best_bits_per_dim": None, "stopped_early": False}
        self.epoch = 0
        self.step = 0
        # Steps of the current epoch trained before this `fit` began: a run resumed mid-epoch
        # skips them.
        self.skipped = 0

    @property
    def state_path(self) -> str:
        return os.path.join(self.directory, "state.json")

    def restore(self) -> bool:
        """Loads the last commit, if any, into the model (call inside the strategy scope).

        Returns:
            Whether a commit was found.

        Raises:
            ConfigError: When the commit or the best model it names is missing or damaged.
        """
        if not os.path.exists(self.state_path):
            return False
        advice = f"remove {self.directory} to start over, or restore it"
        state = {**_STATE_ADDED, **_read_json_object(
            self.state_path, "checkpoint", advice,
            keys=[key for key in self.state if key not in _STATE_ADDED])}
        optimizer = self.model.optimizer
        if not optimizer.built:
            # The optimizer's slots must exist (in the strategy scope) for their values to load.
            optimizer.build(self.model.trainable_variables)
        if state["best_epoch"] is not None:
            # Read now, though only used after training, so a damaged best model stops the run
            # before it trains; the commit's weights replace these next.
            self.load_best()
        weights_path = os.path.join(self.directory, state["weights"])
        try:
            self.model.load_weights(weights_path)
        except _LOAD_ERRORS as error:
            raise ConfigError(f"checkpoint {weights_path} is unreadable ({_reason(error)}); "
                              f"{advice}") from None
        self.state = state
        return True

    def load_best(self) -> None:
        """Loads the weights of the best model into the model.

        Raises:
            ConfigError: When the best model's file is missing or damaged.
        """
        try:
            self.model.load_weights(self.best_model_path)
        except _LOAD_ERRORS as error:
            raise ConfigError(f"the best model {self.best_model_path} is unreadable "
                              f"({_reason(error)}); restore it, or remove {self.directory} to "
                              f"start over") from None

    def kept(self) -> str:
        """Says which saved state survives, for the message of a run that stops."""
        if not self.state["commit"]:
            return "No checkpoint had been saved yet."
        return (f"The last good checkpoint (after {self.state['epoch']} epoch(s) and "
                f"{self.state['step']} step(s)) stays in {self.directory}; rerun to resume.")

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch, self.step = epoch, self.skipped
        if self.skipped and self.state["epoch_metrics"] is not None:
            # Keras has just reset the metrics; their means go on from the steps trained before.
            for metric, values in zip(self.model.metrics, self.state["epoch_metrics"],
                                      strict=True):
                for variable, value in zip(metric.variables, values, strict=True):
                    variable.assign(value)

    def on_train_batch_end(self, batch, logs=None):
        self.step = self.skipped + batch + 1
        # The model's train_step stops on a non-finite loss, but XLA drops that assertion.
        if logs and not math.isfinite(float(logs.get("loss", 0.0))):
            raise TrainingError(f"the loss became NaN or Inf at epoch {self.epoch + 1} step "
                                f"{self.step}; try a lower --learning_rate. {self.kept()}")
        # The epoch's last step is committed by on_epoch_end, with the epoch's validation.
        if (self.every_steps and self.step % self.every_steps == 0
                and self.step != self.steps_per_epoch):
            self._commit()
        if _KILL_AT in os.environ:
            _kill_point(f"iteration:{int(self.model.optimizer.iterations.numpy())}")

    def on_epoch_end(self, epoch, logs=None):
        record = {"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()}}
        value = record.get(_MONITOR)
        if value is None or not math.isfinite(value):
            raise TrainingError(f"validation bits/dim is {value} after epoch {epoch + 1}; the "
                                f"validation data or the model is broken. {self.kept()}")
        state = self.state
        state["history"] = [*state["history"][:epoch], record]
        if state["best_bits_per_dim"] is None or value < state["best_bits_per_dim"]:
            if self.write:
                _save_model_atomically(self.model, self.best_model_path)
            state["best_epoch"], state["best_bits_per_dim"] = epoch + 1, value
        elif self.patience and epoch + 1 - state["best_epoch"] >= self.patience:
            state["stopped_early"] = True
            self.model.stop_training = True
        _kill_point(f"epoch_end:{epoch + 1}")
        self.epoch, self.step = epoch + 1, 0
        self._commit()

    def _commit(self) -> None:
        values = (v.numpy() for v in [*self.model.weights, *self.model.optimizer.variables])
        if not all(np.isfinite(a).all() for a in values if np.issubdtype(a.dtype, np.floating)):
            raise TrainingError(f"the weights became NaN or Inf at epoch {self.epoch + 1} step "
                                f"{self.step}; try a lower --learning_rate. They were not "
                                f"saved. {self.kept()}")
        commit = self.state["commit"] + 1
        # At an epoch end the metrics hold the validation's means, which nothing resumes.
        epoch_metrics = [[np.asarray(v.numpy()).tolist() for v in metric.variables]
                         for metric in self.model.metrics] if self.step else None
        state = {**self.state, "commit": commit, "epoch": self.epoch, "step": self.step,
                 "iterations": int(self.model.optimizer.iterations.numpy()),
                 "weights": f"weights-{commit:08d}.weights.h5", "epoch_metrics": epoch_metrics}
        if self.write:
            os.makedirs(self.directory, exist_ok=True)
            weights_path = os.path.join(self.directory, state["weights"])
            self.model.save_weights(weights_path, overwrite=True)
            _fsync(weights_path)
            _kill_point(f"commit:{commit}")
            _write_json_atomically(self.state_path, state)
            # Files of older commits, and partial ones of commits that never completed.
            for path in glob.glob(os.path.join(self.directory, "weights-*.weights.h5")):
                if os.path.basename(path) != state["weights"]:
                    os.remove(path)
        self.state = state


def _kill_point(point: str) -> None:
    """The test hook (see `_KILL_AT`): SIGKILLs this process when `point` is the one named."""
    if os.environ.get(_KILL_AT) == point:
        os.kill(os.getpid(), signal.SIGKILL)


def _reason(error: BaseException) -> str:
    """An exception as one short line, for the one-line error of the command."""
    text = " ".join(f"{type(error).__name__}: {error}".split())
    return text if len(text) <= _REASON_CHARS else f"{text[:_REASON_CHARS - 3]}..."


def _read_json_object(path: str, what: str, advice: str, keys=()) -> dict:
    """The JSON object in `path`, which must have `keys`.

    Raises:
        ConfigError: Saying that `what` `path` is unreadable and why, then `advice`.
    """
    try:
        with open(path) as f:
            value = json.load(f)
    except (OSError, ValueError) as error:
        reason = _reason(error)
    else:
        if not isinstance(value, dict):
            reason = f"expected a JSON object, got a {type(value).__name__}"
        elif missing := [key for key in keys if key not in value]:
            reason = f"it lacks {', '.join(missing)}"
        else:
            return value
    raise ConfigError(f"{what} {path} is unreadable ({reason}); {advice}")


def _fsync(path: str) -> None:
    """Flushes a file to disk, so a rename that publishes it cannot outrun its contents."""
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _write_json_atomically(path: str, value) -> None:
    partial = os.path.join(os.path.dirname(path), f".partial-{os.path.basename(path)}")
    with open(partial, "w") as f:
        json.dump(value, f, indent=2)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(partial, path)


def _save_model_atomically(model: keras.Model, path: str) -> None:
    # Keras insists on the .keras suffix, so the partial file keeps it.
    partial = os.path.join(os.path.dirname(path), f".partial-{os.path.basename(path)}")
    model.save(partial, overwrite=True)
    _fsync(partial)
    os.replace(partial, path)


# -------------------------------------------------------------------------------- throughput

class _Throughput(keras.callbacks.Callback):
    """Training examples per second, timed per step from the second step (the first traces)."""

    def __init__(self, batch_size: int):
        super().__init__()
        self.batch_size = batch_size
        self.seconds = 0.0
        self.examples = 0
        self._steps = 0
        self._start = 0.0

    def on_train_batch_begin(self, batch, logs=None):
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self._steps += 1
        if self._steps > 1:
            self.seconds += time.perf_counter() - self._start
            self.examples += self.batch_size

    @property
    def examples_per_second(self) -> float | None:
        return self.examples / self.seconds if self.seconds > 0 else None


# ----------------------------------------------------------------------------------- set-up

def _renamed(values: Mapping) -> dict:
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


def _family_flags(flow: str, image: bool) -> tuple[str, ...]:
    """The model flags that the family `flow` takes, for images or for vectors."""
    declared = FAMILIES.get(flow).arguments_for(3 if image else 1)
    return tuple(argument.name for argument in declared
                 if argument.name in (*SIZE_FLAGS, *TRANSFORM_FLAGS))


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
    if typing.get_origin(kind) is tuple:
        item = typing.get_args(kind)[0]
        items = (None if isinstance(value, (str, bytes, Mapping))
                 or not isinstance(value, Iterable) else tuple(value))
        if items is None or not all(_is_a(v, item) for v in items):
            raise ConfigError(f"--{name} must be a sequence, each item {_EXPECTED[item]}, got "
                              f"{value!r}")
        return tuple(item(v) for v in items)
    if not _is_a(value, kind):
        raise ConfigError(f"--{name} must be {_EXPECTED[kind]}{optional}, got {value!r} of "
                          f"type {type(value).__name__}")
    return kind(value)


def _validated(config: TrainConfig | Mapping) -> TrainConfig:
    if isinstance(config, Mapping):
        config = _renamed(config)
        unknown = set(config) - {f.name for f in dataclasses.fields(TrainConfig)}
        if unknown:
            raise ConfigError(f"unknown settings {sorted(unknown)}")
        config = TrainConfig(**config)
    kinds = typing.get_type_hints(TrainConfig)
    config = TrainConfig(**{field.name: _typed(field.name, getattr(config, field.name),
                                               kinds[field.name])
                            for field in dataclasses.fields(TrainConfig)})
    if config.flow not in FAMILIES:
        raise ConfigError(f"unknown --flow {config.flow!r}; choose one of "
                          f"{', '.join(FAMILIES)}")
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
    if not 1 <= config.num_bits <= 8:
        raise ConfigError(f"--num_bits must be in 1..8 (2**num_bits pixel levels), got "
                          f"{config.num_bits}")
    if not 0 < config.learning_rate < math.inf:
        raise ConfigError(f"--learning_rate must be a finite number > 0, got "
                          f"{config.learning_rate}")
    if not config.temperatures or not all(t > 0 for t in config.temperatures):
        raise ConfigError(f"--temperatures must be positive numbers, got {config.temperatures}")
    if config.output_dir is None:
        name = os.path.splitext(os.path.basename(os.path.normpath(config.dataset)))[0]
        config = dataclasses.replace(config, output_dir=os.path.join("runs",
                                                                     f"{config.flow}_{name}"))
    return config


def _make_strategy(name: str) -> tf.distribute.Strategy:
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "multi_worker":
        # The cluster comes from TF_CONFIG; without it this is a one-worker cluster.
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if gpus:
        return tf.distribute.MirroredStrategy([d.name for d in gpus])
    # NCCL is GPU-only, and collective all-reduce on CPU breaks when a process makes a second
    # strategy; reducing on one device works on any number of logical CPUs.
    return tf.distribute.MirroredStrategy(
        [d.name for d in tf.config.list_logical_devices("CPU")],
        cross_device_ops=tf.distribute.ReductionToOneDevice())


def _load_data(config: TrainConfig, strategy: tf.distribute.Strategy):
    """The splits, flattened for the vector-only flows; returns (splits, image_shape).

    With `config.conditional` the batches are `(x, label)`.
    """
    try:
        splits = datasets.load(config.dataset, batch_size=config.batch_size,
                               data_dir=config.data_dir, seed=config.seed,
                               num_examples=config.num_examples, labels=config.conditional,
                               num_bits=config.num_bits, image_size=config.image_size,
                               crop=config.crop, shuffle_buffer=config.shuffle_buffer,
                               skip_bad_files=config.skip_bad_files)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    image_shape = splits.event_shape if len(splits.event_shape) == 3 else None
    # MADE orders the dimensions of a vector, so the autoregressive flows (MAF and its inverse,
    # IAF) see flattened images.
    if image_shape is not None and issubclass(FAMILIES.get(config.flow), MAF):
        size = math.prod(image_shape)

        def flatten(x, *label):
            x = tf.reshape(x, (-1, size))
            return (x, *label) if label else x

        # Bound now: `splits` is rebound below, and a lambda reading it would call itself.
        image_batches = splits.streamed.train_batches
        streamed = dataclasses.replace(
            splits.streamed, train_batches=lambda *args: image_batches(*args).map(flatten))
        splits = dataclasses.replace(splits, train=splits.train.map(flatten),
                                     validation=splits.validation.map(flatten),
                                     test=splits.test.map(flatten), event_shape=(size,),
                                     streamed=streamed)
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        # Each worker evaluates its share of every batch (training data is shared out by
        # `Streamed.train_batches`, in _fit).
        splits = dataclasses.replace(splits, train=_shared_by_batch(splits.train),
                                     validation=_shared_by_batch(splits.validation),
                                     test=_shared_by_batch(splits.test))
    return splits, image_shape


def _shared_by_batch(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """`dataset`, split between the workers of a multi-worker run batch by batch."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def _build_model(config: TrainConfig, splits) -> FlowModel:
    image = len(splits.event_shape) == 3
    takes = _family_flags(config.flow, image)
    given = {name: getattr(config, name) for name in (*SIZE_FLAGS, *TRANSFORM_FLAGS)
             if getattr(config, name) is not None}
    extra = [name for name in given if name not in takes]
    if extra:
        raise ConfigError(f"{', '.join('--' + n for n in extra)} does not apply to "
                          f"{config.flow} on {'images' if image else 'vectors'}; it takes "
                          f"{', '.join('--' + n for n in takes)}")
    num_classes = splits.num_classes if config.conditional else None
    try:
        return FlowModel(FAMILIES.get(config.flow)(
            splits.event_shape, num_levels=splits.num_levels, num_classes=num_classes, **given))
    except ValueError as error:
        raise ConfigError(str(error)) from None


def _identity(config: TrainConfig, splits, model: FlowModel) -> dict:
    takes = _family_flags(config.flow, len(splits.event_shape) == 3)
    # The family's values, its defaults included (bins and bound are absent unless a spline).
    flow = model.flow.get_config()
    if isinstance(flow.get("transform"), dict):
        # The transform as its flags name it.
        flow = {**flow, **flow["transform"], "transform": flow["transform"]["name"]}
    return {"flow": config.flow, "dataset": config.dataset, "seed": config.seed,
            "num_examples": config.num_examples, "event_shape": list(splits.event_shape),
            "num_levels": splits.num_levels, "crop": config.crop,
            "conditional": config.conditional,
            "model": {name: flow.get(name) for name in takes}}


def _upgraded(stored: dict) -> dict:
    """The identity in a config.json written before --num_scales, --transform, --conditional.

    Those runs named the number of scales `levels`, and trained unconditional flows with the
    affine transform (the default of every family that offers a choice).
    """
    if "conditional" in stored:
        return stored
    model = dict(stored.get("model", {}))
    if "levels" in model:
        model["num_scales"] = model.pop("levels")
    if stored.get("flow") in FAMILIES and "transform" in _family_flags(stored["flow"], False):
        model["transform"] = "affine"
    return {**stored, "conditional": False, "model": model}


def _check_output_dir(output_dir: str, identity: dict, chief: bool) -> dict | None:
    """Refuses a directory that holds another model, or files that are not a run's.

    Returns:
        The run's config.json, or None for a new run.
    """
    config_path = os.path.join(output_dir, "config.json")
    stored = None
    if os.path.exists(config_path):
        stored = _upgraded(_read_json_object(
            config_path, "the run's", "restore it, or pick another --output_dir"))
        differences = []
        for key in _IDENTITY_KEYS:
            old, new = stored.get(key), identity[key]
            if isinstance(old, dict) and isinstance(new, dict):
                differences += [f"{k} {old.get(k)} -> {new.get(k)}"
                                for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
            elif old != new:
                differences.append(f"{key} {old} -> {new}")
        if differences:
            raise ConfigError(f"{output_dir} holds a different model ({'; '.join(differences)});"
                              f" pick another --output_dir, or delete {output_dir} to start over")
    elif chief and os.path.isdir(output_dir) and [
            name for name in os.listdir(output_dir)
            if name != _LOCK_NAME and not name.startswith(".partial-")]:
        raise ConfigError(f"{output_dir} is not empty and holds no config.json of a training "
                          f"run; pick another --output_dir")
    return stored


def _setting_changes(config: TrainConfig, stored: dict | None, state: dict) -> dict:
    """The training settings of `config` that differ from those the run was trained with.

    Args:
        config: The settings of this command.
        stored: The run's config.json, or None for a new run.
        state: The run's checkpoint state (`Checkpoint.state`).

    Returns:
        `{name: [old, new]}` for each setting in `_RUN_SETTINGS` that changed, and for
        `epochs` when fewer than the run has trained; empty for a new run.

    Raises:
        ConfigError: When some changed and `config.allow_changes` is false, or when a setting
            that decides an epoch's batches changes in the middle of an epoch.
    """
    if stored is None:
        return {}
    trained = stored.get("training", {})
    changes = {name: [trained[name], getattr(config, name)] for name in _RUN_SETTINGS
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


@contextlib.contextmanager
def _locked(output_dir: str):
    """Holds the lock of `output_dir` (creating the directory) while the block runs.

    Two commands training in one directory would delete each other's checkpoints. The lock
    file is created atomically (O_CREAT | O_EXCL) and holds the PID and host of its holder; it
    is removed however the block ends. A lock left by a process that is gone from this host
    (killed, say) is taken over; one from another host cannot be checked, so it is refused.

    Raises:
        ConfigError: When `output_dir` is in use, a file, or not writable.
    """
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise ConfigError(f"--output_dir {output_dir} is a file, not a directory; pick another "
                          f"--output_dir")
    path = os.path.join(output_dir, _LOCK_NAME)
    holder = {"pid": os.getpid(), "host": socket.gethostname()}
    try:
        os.makedirs(output_dir, exist_ok=True)
        while True:
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                other = _lock_holder(path)
                if not _is_stale(other):
                    held_by = (f"process {other['pid']} on host {other['host']}" if other
                               else "an unknown process (the lock file is empty or garbled)")
                    raise ConfigError(
                        f"{output_dir} is in use by {held_by}, which holds its lock {path}; "
                        f"wait for that command to end or pick another --output_dir (if no "
                        f"command runs there, delete the lock file)") from None
                print(f"note: taking over the lock {path} of process {other['pid']}, which no "
                      f"longer runs on this host", file=sys.stderr)
                # Gone already when another command took it over first; then try again.
                with contextlib.suppress(FileNotFoundError):
                    os.remove(path)
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(holder, f)
            break
    except OSError as error:
        raise ConfigError(f"cannot write in --output_dir {output_dir} ({_reason(error)}); pick a "
                          f"writable --output_dir") from None
    try:
        yield
    finally:
        # A lock someone deleted by hand may have been taken by another command since.
        if _lock_holder(path) == holder:
            os.remove(path)


def _lock_holder(path: str) -> dict | None:
    """The PID and host in a lock file, or None when it is gone, empty or garbled."""
    try:
        with open(path) as f:
            holder = json.load(f)
    except (OSError, ValueError):
        return None
    if (isinstance(holder, dict) and isinstance(holder.get("pid"), int)
            and isinstance(holder.get("host"), str)):
        return holder
    return None


def _is_stale(holder: dict | None) -> bool:
    """Whether the holder of a lock is a process of this host that no longer runs.

    A lock naming this very process is stale too: this process does not hold it, so the PID
    was reused (as in a restarted container).
    """
    if holder is None or holder["host"] != socket.gethostname():
        return False
    if holder["pid"] == os.getpid():
        return True
    try:
        # Signal 0 is not sent: it only asks whether the process exists.
        os.kill(holder["pid"], 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # it exists, as another user's
    return False


# ------------------------------------------------------------------------------- evaluation

def _evaluator(model: FlowModel, strategy: tf.distribute.Strategy):
    """A function of a dataset: exact mean NLL (nats) and bits/dim over all its examples.

    Sums run on every replica (and worker) and are all-reduced, so a partial last batch and
    a multi-worker split of the data are counted exactly. One traced function serves all
    splits.
    """

    def replica_sums(x, context=None):
        log_prob = model.log_prob(x, context)
        return -tf.reduce_sum(log_prob), tf.cast(tf.size(log_prob), tf.float32)

    @tf.function(reduce_retracing=True)
    def batch_sums(batch):
        # A batch is x, or (x, label) for a conditional model.
        total, count = strategy.run(replica_sums,
                                    args=batch if isinstance(batch, tuple) else (batch,))
        return (strategy.reduce(tf.distribute.ReduceOp.SUM, total, axis=None),
                strategy.reduce(tf.distribute.ReduceOp.SUM, count, axis=None))

    def evaluate(dataset: tf.data.Dataset) -> dict:
        total, count = 0.0, 0.0
        for batch in strategy.experimental_distribute_dataset(dataset):
            batch_total, batch_count = batch_sums(batch)
            total += float(batch_total)
            count += float(batch_count)
        nll = total / count
        return {"nll_nats": nll, "bits_per_dim": float(model.bits_per_dim(-nll))}

    return evaluate


def _machine() -> dict:
    return {"platform": platform.platform(), "processor": platform.processor() or None,
            "cpu_count": os.cpu_count(), "python": platform.python_version(),
            "tensorflow": tf.__version__, "keras": keras.__version__,
            "gpus": [d.name for d in tf.config.list_logical_devices("GPU")]}


# ---------------------------------------------------------------------------------- figures

def _training_curve(history: list[dict], best_epoch: int | None, path: str) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.add_subplot()
    epochs = [r["epoch"] for r in history]
    ax.plot(epochs, [r.get("bits_per_dim") for r in history], "o-", label="train")
    ax.plot(epochs, [r.get(_MONITOR) for r in history], "o-", label="validation")
    if best_epoch is not None:
        ax.axvline(best_epoch, color="gray", linestyle=":", label=f"best (epoch {best_epoch})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("bits / dim")
    ax.legend()
    fig.savefig(path, dpi=100)


def _sample_grid(model: FlowModel, image_shape: tuple[int, ...], num_levels: int,
                 temperatures: tuple[float, ...], seed: int, path: str) -> None:
    """A panel of samples per temperature; a conditional model's panels have a row per class."""
    from matplotlib.figure import Figure

    height, width, channels = image_shape
    num_classes = model.flow.num_classes
    rows = num_classes or _UNCONDITIONAL_ROWS
    labels = None if num_classes is None else np.repeat(np.arange(num_classes), _SAMPLES_PER_ROW)
    fig = Figure(figsize=(len(temperatures) * (_SAMPLES_PER_ROW * 0.5 + 0.3) + 0.6,
                          rows * 0.5 + 0.8), layout="constrained")
    for column, temperature in enumerate(temperatures):
        x = model.sample(rows * _SAMPLES_PER_ROW, context=labels, temperature=temperature,
                         seed=seed)
        # Samples are pixel values in [0, num_levels); out-of-range values are clipped.
        x = np.clip(np.reshape(x.numpy(), (rows, _SAMPLES_PER_ROW, *image_shape)) / num_levels,
                    0.0, 1.0)
        # Tiled with a white line between images: (rows * (H + 1) - 1, columns * (W + 1) - 1).
        x = np.pad(x, ((0, 0), (0, 0), (0, 1), (0, 1), (0, 0)), constant_values=1.0)
        tiled = x.transpose(0, 2, 1, 3, 4).reshape(rows * (height + 1),
                                                   _SAMPLES_PER_ROW * (width + 1),
                                                   channels)[:-1, :-1]
        ax = fig.add_subplot(1, len(temperatures), column + 1)
        ax.imshow(tiled[..., 0] if channels == 1 else tiled, cmap="gray", vmin=0.0, vmax=1.0,
                  interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"T = {temperature:g}")
        if num_classes is not None and column == 0:
            ax.set_yticks([(row + 0.5) * (height + 1) for row in range(rows)],
                          [f"class {row}" for row in range(rows)])
    fig.suptitle(f"samples at temperature T ({height}x{width})")
    fig.savefig(path, dpi=100)


def _density_figure(model: FlowModel, data: np.ndarray, labels: np.ndarray | None, seed: int,
                    path: str) -> None:
    """Data, samples and the learned density; a conditional model's is the mixture over the
    labels, p(x) = sum_c p(c) p(x | c), with p(c) the labels' frequencies."""
    from matplotlib.figure import Figure

    low, high = data.min(axis=0), data.max(axis=0)
    margin = 0.1 * (high - low)
    low, high = low - margin, high + margin
    # One sample per data point, of the point's class for a conditional model.
    samples = model.sample(len(data), context=labels, seed=seed).numpy()
    gx, gy = np.meshgrid(np.linspace(low[0], high[0], _DENSITY_GRID),
                         np.linspace(low[1], high[1], _DENSITY_GRID))
    grid = np.stack([gx.ravel(), gy.ravel()], axis=1).astype(np.float32)
    if labels is None:
        log_density = model.log_prob(grid)
    else:
        frequencies = np.bincount(labels) / len(labels)
        log_density = tf.reduce_logsumexp(
            [math.log(frequencies[c]) + model.log_prob(grid, context=np.full(len(grid), c))
             for c in np.flatnonzero(frequencies)], axis=0)
    density = np.exp(log_density.numpy()).reshape(gx.shape)
    extent = (low[0], high[0], low[1], high[1])
    bins = [np.linspace(low[0], high[0], 80), np.linspace(low[1], high[1], 80)]
    fig = Figure(figsize=(12, 4), layout="constrained")
    for i, (title, points) in enumerate([("data", data), ("samples", samples)]):
        ax = fig.add_subplot(1, 3, i + 1)
        ax.hist2d(points[:, 0], points[:, 1], bins=bins, cmap="viridis")
        ax.set_title(f"{title} ({len(points)} points)")
    ax = fig.add_subplot(1, 3, 3)
    ax.imshow(density, origin="lower", extent=extent, aspect="auto", cmap="viridis")
    ax.set_title("learned density p(x)" if labels is None
                 else r"learned density $\sum_c\, p(c)\, p(x \mid c)$")
    for ax in fig.axes:
        ax.set_xlim(low[0], high[0])
        ax.set_ylim(low[1], high[1])
    fig.savefig(path, dpi=100)


# -------------------------------------------------------------------------------------- run

def run(config: TrainConfig | Mapping) -> dict:
    """Trains, evaluates and writes the outputs of one run; resumes a run it finds unfinished.

    Args:
        config: A `TrainConfig`, or a mapping of its field names.

    Returns:
        The metrics written to `metrics.json`.

    Raises:
        ConfigError: For bad input, including an `output_dir` holding another model or in
            use by another command (nothing is written then), or a damaged checkpoint.
        TrainingError: When the loss, the weights or the validation score stop being finite;
            the last good checkpoint stays.
    """
    start = time.perf_counter()
    config = _validated(config)
    strategy = _make_strategy(config.strategy)
    keras.utils.set_random_seed(config.seed)
    splits, image_shape = _load_data(config, strategy)
    with strategy.scope():
        model = _build_model(config, splits)
        model.compile(optimizer=keras.optimizers.Adam(config.learning_rate),
                      jit_compile=config.jit_compile)
    # Only the chief writes, so only it locks; the other workers of a multi-worker run compute
    # the same things.
    chief = strategy.extended.should_checkpoint
    with _locked(config.output_dir) if chief else contextlib.nullcontext():
        metrics = _train(config, strategy, chief, splits, image_shape, model, start)
    if splits.skipped:
        print(f"skipped {len(splits.skipped)} unreadable file(s) of {config.dataset}: "
              f"{'; '.join(splits.skipped)}")
    return metrics


def _train(config: TrainConfig, strategy: tf.distribute.Strategy, chief: bool, splits,
           image_shape: tuple[int, ...] | None, model: FlowModel, start: float) -> dict:
    """The part of `run` that reads and writes the run directory."""
    out = config.output_dir
    identity = _identity(config, splits, model)
    stored = _check_output_dir(out, identity, chief)
    best_model_path = os.path.join(out, "model.keras")
    checkpoint = Checkpoint(os.path.join(out, "backup"), best_model_path,
                            patience=config.patience, every_steps=config.checkpoint_steps,
                            steps_per_epoch=splits.streamed.steps_per_epoch, write=chief)
    checkpoint.set_model(model)
    with strategy.scope():
        resumed = checkpoint.restore()
    state = checkpoint.state
    changes = [*(stored or {}).get("changes", [])]
    if changed := _setting_changes(config, stored, state):
        changes.append({"epoch": state["epoch"], "step": state["step"],
                        "iterations": state["iterations"], "settings": changed})
    if chief:
        os.makedirs(out, exist_ok=True)
        training = {k: v for k, v in dataclasses.asdict(config).items() if k not in identity}
        _write_json_atomically(os.path.join(out, "config.json"),
                               {**identity, "training": training, "changes": changes})

    initial_epoch, initial_step = state["epoch"], state["step"]
    throughput = _Throughput(config.batch_size)
    done = initial_epoch >= config.epochs or state["stopped_early"]
    if resumed and done:
        print(f"{out} finished training after {initial_epoch} epochs; evaluating its best model")
    elif resumed:
        print(f"Resuming {out} at epoch {initial_epoch + 1} step {initial_step + 1} (optimizer "
              f"iteration {state['iterations'] + 1})")
    train_start = time.perf_counter()
    if not done:
        callbacks = [throughput, checkpoint]
        if chief:
            callbacks.append(keras.callbacks.TensorBoard(os.path.join(out, "logs"),
                                                         write_graph=False))
        try:
            _fit(model, config, strategy, splits, checkpoint, initial_epoch, callbacks)
        except tf.errors.InvalidArgumentError as error:
            # FlowModel.train_step asserts a finite batch and a finite update before it updates.
            where = f"at epoch {checkpoint.epoch + 1} step {checkpoint.step + 1}"
            if "the batch holds NaN or Inf" in error.message:
                raise TrainingError(f"the training data holds NaN or Inf values ({where}); "
                                    f"clean the data. {checkpoint.kept()}") from None
            if "step refused" in error.message:
                raise TrainingError(f"the loss or the gradients became NaN or Inf {where}; "
                                    f"try a lower --learning_rate. {checkpoint.kept()}") from None
            raise
    train_seconds = time.perf_counter() - train_start

    state = checkpoint.state
    if os.path.exists(best_model_path):
        checkpoint.load_best()
    evaluate = _evaluator(model, strategy)
    scores = {}
    for split in ("train", "validation", "test"):
        scores[split] = evaluate(getattr(splits, split))
        _kill_point("evaluation")
    broken = [split for split, score in scores.items() if not math.isfinite(score["nll_nats"])]
    if broken:
        raise TrainingError(f"the best model's NLL on the {' and '.join(broken)} data is not "
                            f"finite; check those data for NaN or Inf values")
    metrics = {
        "flow": config.flow, "dataset": config.dataset,
        "event_shape": list(image_shape or splits.event_shape), "num_levels": splits.num_levels,
        "num_classes": model.flow.num_classes,
        **scores,
        "train_evaluation": "the best weights over one pass of the training split, with "
                            "fresh dequantization noise as in training",
        "epochs": len(state["history"]), "epochs_requested": config.epochs,
        "iterations": state["iterations"],
        "resumed_from_epoch": initial_epoch if resumed else None,
        "resumed_from_step": initial_step if resumed else None,
        "setting_changes": changes,
        "best_epoch": state["best_epoch"], "stopped_early": state["stopped_early"],
        "examples_per_second": throughput.examples_per_second,
        "train_time_s": train_seconds, "wall_time_s": None,
        "num_parameters": int(sum(math.prod(v.shape) for v in model.trainable_variables)),
        "strategy": config.strategy, "num_replicas": strategy.num_replicas_in_sync,
        "machine": _machine(),
    }
    written = ["config.json", "model.keras", "backup/", "logs/"]
    if chief:
        written += ["metrics.json", "training_curve.png"]
        _training_curve(state["history"], state["best_epoch"],
                        os.path.join(out, "training_curve.png"))
        if image_shape is not None:
            _sample_grid(model, image_shape, splits.num_levels, config.temperatures, config.seed,
                         os.path.join(out, "samples.png"))
            written.append("samples.png")
        elif splits.event_shape == (2,):
            test = list(splits.test.as_numpy_iterator())
            if config.conditional:
                data, labels = (np.concatenate(column)[:_DENSITY_SAMPLES]
                                for column in zip(*test, strict=True))
            else:
                data, labels = np.concatenate(test)[:_DENSITY_SAMPLES], None
            _density_figure(model, data, labels, config.seed, os.path.join(out, "density.png"))
            written.append("density.png")
        metrics["wall_time_s"] = time.perf_counter() - start
        _write_json_atomically(os.path.join(out, "metrics.json"), metrics)
        print(f"test: {metrics['test']['nll_nats']:.4f} nats, "
              f"{metrics['test']['bits_per_dim']:.4f} bits/dim (best epoch "
              f"{state['best_epoch']} of {len(state['history'])}); "
              f"{metrics['wall_time_s']:.0f} s")
        print(f"outputs in {out}: {', '.join(written)} "
              f"(tensorboard --logdir {os.path.join(out, 'logs')})")
    return metrics


def _fit(model: FlowModel, config: TrainConfig, strategy: tf.distribute.Strategy, splits,
         checkpoint: Checkpoint, initial_epoch: int, callbacks: list) -> None:
    """Trains from `initial_epoch` on, from the committed step of a run resumed mid-epoch.

    The data give each epoch's batches by number, so a run resumed mid-epoch trains the rest
    of that epoch first, without the steps trained before, then the later epochs: the batches
    of an uninterrupted run. Under `MultiWorkerMirroredStrategy` each worker reads its share of
    the training data.
    """
    fit = functools.partial(model.fit, validation_data=splits.validation, callbacks=callbacks,
                            verbose=config.verbose, shuffle=False)
    streamed = splits.streamed

    def batches(first: int, last: int, skip: int = 0):
        if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
            return strategy.distribute_datasets_from_function(
                lambda context: streamed.train_batches(first, last, skip, context))
        return streamed.train_batches(first, last, skip)

    # ActNorm's data-dependent initialisation on the first batch of training (FlowModel.fit
    # takes a tf.data.Dataset for it, not a distributed one); done already when resumed.
    model.initialize_from_data(_shared_by_batch(streamed.train_batches(0, 1).take(1)))
    skip = checkpoint.state["step"]
    if skip:
        checkpoint.skipped = skip
        fit(batches(initial_epoch, initial_epoch + 1, skip), epochs=initial_epoch + 1,
            initial_epoch=initial_epoch, steps_per_epoch=streamed.steps_per_epoch - skip)
        checkpoint.skipped = 0
        initial_epoch += 1
        if checkpoint.state["stopped_early"] or initial_epoch >= config.epochs:
            return
    fit(batches(initial_epoch, config.epochs), epochs=config.epochs, initial_epoch=initial_epoch,
        steps_per_epoch=streamed.steps_per_epoch)


# ------------------------------------------------------------------------------ command line

def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Defines the command-line flags (done by `main`, so importing this module defines none)."""
    d = TrainConfig()
    flags.DEFINE_string("flow", d.flow, f"Flow family: {', '.join(FAMILIES)}.",
                        flag_values=flag_values)
    flags.DEFINE_string("dataset", d.dataset,
                        f"{', '.join(datasets.TOY_DATASETS)}, digits, a directory of IDX, "
                        f"TFRecord or image files, an .npz file, or a TFDS image dataset name.",
                        flag_values=flag_values)
    flags.DEFINE_string("output_dir", d.output_dir,
                        "Run directory (default runs/<flow>_<dataset>); rerun to resume.",
                        flag_values=flag_values)
    flags.DEFINE_string("data_dir", d.data_dir, "TFDS data directory.", flag_values=flag_values)
    flags.DEFINE_integer("epochs", d.epochs, "Epochs to train.", flag_values=flag_values)
    flags.DEFINE_integer("batch_size", d.batch_size, "Global batch size.",
                         flag_values=flag_values)
    flags.DEFINE_float("learning_rate", d.learning_rate, "Adam learning rate.",
                       flag_values=flag_values)
    flags.DEFINE_integer("seed", d.seed, "Seed for data, initialisation and samples.",
                         flag_values=flag_values)
    flags.DEFINE_integer("num_examples", d.num_examples,
                         "Keep at most this many examples (train + test).",
                         flag_values=flag_values)
    sizes = {"num_scales": "Scales of the multi-scale architecture, on images.",
             "depth": "Steps per scale.",
             "hidden": "Hidden units or channels of the conditioner networks.",
             "num_couplings": "Coupling layers, on vectors.",
             "num_layers": "Autoregressive layers.",
             "num_hidden": "Hidden layers per conditioner.",
             "num_blocks": "Stacked ODE blocks."}
    for name in SIZE_FLAGS:
        users = [flow for flow, family in FAMILIES.items()
                 if name in (a.name for a in family.arguments)]
        flags.DEFINE_integer(name, None, f"{sizes[name]} Taken by {', '.join(users)}; default: "
                             f"the family's.", flag_values=flag_values)
    flags.DEFINE_integer("levels", None, "Deprecated name of --num_scales.",
                         flag_values=flag_values)
    users = ", ".join(flow for flow in FAMILIES if "transform" in _family_flags(flow, False))
    flags.DEFINE_string("transform", d.transform,
                        f"Coupling transform: {', '.join(transforms.TRANSFORMS)}. Taken by "
                        f"{users}; default: the family's.", flag_values=flag_values)
    flags.DEFINE_integer("bins", d.bins, "Bins of a spline transform; default: the family's.",
                         flag_values=flag_values)
    flags.DEFINE_float("bound", d.bound, "A spline transform acts on [-bound, bound] (the "
                       "identity outside); default: the family's.", flag_values=flag_values)
    flags.DEFINE_boolean("conditional", d.conditional,
                         "Learn p(x | class label) on the dataset's labels (the mixture "
                         "components of the 2-D toys).", flag_values=flag_values)
    flags.DEFINE_integer("patience", d.patience,
                         "Stop after this many epochs without a better validation bits/dim "
                         "(0: never); the best weights are kept.", flag_values=flag_values)
    flags.DEFINE_enum("strategy", d.strategy, STRATEGIES,
                      "default; mirrored (all local GPUs, else CPUs); multi_worker (TF_CONFIG).",
                      flag_values=flag_values)
    flags.DEFINE_boolean("jit_compile", d.jit_compile, "Compile the training step with XLA.",
                         flag_values=flag_values)
    flags.DEFINE_list("temperatures", [f"{t:g}" for t in d.temperatures],
                      "Sampling temperatures of the image sample grid.",
                      flag_values=flag_values)
    flags.DEFINE_integer("checkpoint_steps", d.checkpoint_steps,
                         "Also save the training state every this many steps (0: epoch ends "
                         "only).", flag_values=flag_values)
    flags.DEFINE_integer("num_bits", d.num_bits,
                         "Streamed data: bits kept per pixel (2**num_bits levels; Glow's "
                         "CelebA: 5).", flag_values=flag_values)
    flags.DEFINE_integer("image_size", d.image_size,
                         "Streamed data: resize the images to image_size x image_size.",
                         flag_values=flag_values)
    flags.DEFINE_integer("crop", d.crop, "Streamed data: first crop the central crop x crop "
                         "pixels.", flag_values=flag_values)
    flags.DEFINE_integer("shuffle_buffer", d.shuffle_buffer,
                         "Streamed data: training records held for shuffling.",
                         flag_values=flag_values)
    flags.DEFINE_boolean("skip_bad_files", d.skip_bad_files,
                         "Directories of TFRecord or image files: leave out the files that "
                         "cannot be read (named at the end) instead of refusing the data.",
                         flag_values=flag_values)
    run_settings = ", ".join(f"--{name}" for name in _RUN_SETTINGS)
    flags.DEFINE_boolean("allow_changes", d.allow_changes,
                         f"Go on with a run in --output_dir although {run_settings} differ "
                         f"from the settings it was trained with, or --epochs is below the "
                         f"epochs it has trained; config.json and metrics.json list the "
                         f"changes.", flag_values=flag_values)


def config_from_flags(flag_values: flags.FlagValues = flags.FLAGS) -> TrainConfig:
    """The `TrainConfig` of parsed flags."""
    values = {name: flag_values[name].value
              for name in [*(f.name for f in dataclasses.fields(TrainConfig)), "levels"]
              if name in flag_values}
    try:
        values["temperatures"] = tuple(float(t) for t in values["temperatures"])
    except ValueError:
        raise ConfigError(f"--temperatures must be numbers, got "
                          f"{','.join(values['temperatures'])}") from None
    return TrainConfig(**_renamed(values))


# What a value of each type of flag must be, for a value absl could not parse.
_FLAG_TYPES = {"int": "an integer", "float": "a number", "bool": "true or false"}


def _parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing, answering a bad command line as any bad input: one line, exit 2.

    absl's own parser prints "FATAL Flags parsing error: ..." and a second line and exits 1
    (a flag of the wrong type, an unknown flag, a value outside an enum); `--help` and
    `--helpshort` still print the usage.
    """
    try:
        argv = flags.FLAGS(argv)
    except flags.Error as error:
        message = " ".join(str(error).split())
        bad_value = re.fullmatch(r"flag --(\w+)=(.*?): .*", message)
        if bad_value and bad_value[1] in flags.FLAGS:
            name, value = bad_value.groups()
            expected = _FLAG_TYPES.get(flags.FLAGS[name].flag_type())
            if expected:
                message = f"--{name} must be {expected}, got {value!r}"
        _refuse(message)
    if len(argv) > 1:
        _refuse(f"expected only --flags, got the arguments {' '.join(argv[1:])}")
    return argv


def _refuse(what: str) -> NoReturn:
    print(f"error: {what}; see --helpshort", file=sys.stderr)
    sys.exit(2)


def main(argv: list[str]) -> int:
    """Trains as the parsed flags say; `argv` is the program name alone (see `_parse_flags`)."""
    try:
        run(config_from_flags())
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except TrainingError as error:
        # Ends the progress bar's unfinished line, so the message stands on its own.
        print(flush=True)
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    define_flags()
    app.run(main, flags_parser=_parse_flags)
