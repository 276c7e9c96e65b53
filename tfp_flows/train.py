r"""Trains a flow from the command line: `python -m tfp_flows.train --flow=glow --dataset=digits`.

One command loads the data (`tfp_flows.datasets`), builds the flow (`tfp_flows.families`), trains it
with a Keras progress bar, early stopping on validation bits/dim and TensorBoard logs, and
writes into `--output_dir`:

    config.json          the flags (and the changes a rerun made to them); the model and
                         data ones identify the run
    backup/              the resumable training state (weights, optimizer, epoch history)
    model.keras          the model with the best validation bits/dim so far
    logs/                TensorBoard logs
    metrics.json         train / validation / test NLL and bits/dim (and what they are:
                         `nll_estimate`), epochs and optimizer iterations, throughput,
                         wall time
    training_curve.png   train and validation bits/dim per epoch
    samples.png          images: test images beside 8 x 8 samples per temperature (with
                         --conditional a row of 8 per class)
    density.png          2-D data: data, samples and the learned density
    .lock                the PID and host of the command training there, while it runs

A run killed at any point (SIGKILL included) resumes when the same command is run again: the
training state is committed every `--checkpoint_steps` steps and at every epoch end, each
commit atomic (see `tfp_flows.training.Checkpoint`). The resumed run goes on at the committed
step with the batches and dequantization noise an uninterrupted run sees there (each epoch's
are a function of the seed and the epoch number), so after any number of kills it ends with
the optimizer iterations, epoch history and weights (to float rounding) of a run never killed.

An `--output_dir` that holds a different model is refused, and so is one where another command
trains (see `tfp_flows.training.lock`). A rerun whose training settings would change what the
run trains (`RUN_SETTINGS` of `tfp_flows.training.run_directory`, or fewer `--epochs` than it
has trained) is refused too, naming them, unless `--allow_changes` is given; config.json and
metrics.json then list each change and where in the run it was made. A damaged checkpoint,
config.json or best model stops the command with a one-line error, as bad input does.

The families and their size flags come from `tfp_flows.FAMILIES`. `--conditional` trains
p(x | label) on the dataset's class labels (the mixture components of the 2-D toys).
`--dequantization=variational` (or a dequantizer a plugin registers) trains a learned
dequantizer q(u | x) with an image flow, on the integer pixels; its bits/dim are then the
variational bound, and metrics.json adds the importance-weighted estimate on the test split
(see `tfp_flows.dequantizers`).

`--plugin=module` (repeatable) imports a module of your own before the flags are checked, so
the families, transforms, data sources and dequantizers it registers work with `--flow`,
`--transform`, `--dataset` and `--dequantization`; a family's arguments without a flag of
their own go in `--flow_args=name=value,...`. The run directory remembers its plugins: a rerun
imports them again.

Examples:

    python -m tfp_flows.train --flow=realnvp --dataset=two_moons --batch_size=256 \
        --learning_rate=3e-3 --epochs=20 --output_dir=runs/two_moons
    python -m tfp_flows.train --flow=glow --dataset=digits --num_scales=2 --depth=4 \
        --hidden=64 --learning_rate=3e-3 --epochs=20 --output_dir=runs/glow_digits
    python -m tfp_flows.train --flow=glow --dataset=digits --num_scales=2 --depth=4 \
        --hidden=64 --dequantization=variational --output_dir=runs/glow_digits_variational
    python -m tfp_flows.train --flow=realnvp --dataset=eight_gaussians --conditional \
        --output_dir=runs/conditional_eight_gaussians
    python -m tfp_flows.train --flow=glow --dataset=celeb_a --crop=148 --image_size=64 \
        --num_bits=5 --output_dir=runs/glow_celeba
    python -m tfp_flows.train --plugin=my_flows --flow=my_flow --flow_args=temperature=0.5

TFDS datasets and directories of TFRecord or image files are streamed (`--num_bits`,
`--image_size`, `--crop`, `--shuffle_buffer`; see `tfp_flows.datasets.streamed`).

The command line is this module; the training itself is `tfp_flows.training`, whose public
names this module also exports.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from typing import NoReturn

from absl import app, flags

from tfp_flows import datasets
from tfp_flows.dequantizers import DEQUANTIZERS, UNIFORM
from tfp_flows.families import FAMILIES, PRECISION
from tfp_flows.training import STRATEGIES, Checkpoint, ConfigError, TrainConfig, TrainingError, run
from tfp_flows.training.config import family_flags, flag_name, renamed
from tfp_flows.training.run_directory import RUN_SETTINGS

__all__ = ["STRATEGIES", "Checkpoint", "ConfigError", "TrainConfig", "TrainingError",
           "config_from_flags", "define_flags", "main", "run"]


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Defines the command-line flags (done by `main`, so importing this module defines none)."""
    d = TrainConfig()
    flags.DEFINE_multi_string("plugin", list(d.plugins),
                              "A module to import first (repeatable), for the families, "
                              "transforms, data sources and dequantizers it registers; a rerun "
                              "also imports those the run was trained with.",
                              flag_values=flag_values)
    flags.DEFINE_string("flow", d.flow, f"Flow family: {', '.join(FAMILIES)}, or one a "
                        f"--plugin adds.", flag_values=flag_values)
    flags.DEFINE_string("dataset", d.dataset,
                        f"Read by the first data source that recognises it: "
                        f"{datasets.describe_sources()}. SOURCE:SPEC picks a source.",
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
    family_flags(flag_values)
    flags.DEFINE_boolean("conditional", d.conditional,
                         "Learn p(x | class label) on the dataset's labels (the mixture "
                         "components of the 2-D toys).", flag_values=flag_values)
    flags.DEFINE_string("precision", d.precision, PRECISION.help, flag_values=flag_values)
    flags.DEFINE_string("dequantization", d.dequantization,
                        f"Images: {UNIFORM} (the data pipeline adds uniform noise), "
                        f"{', '.join(DEQUANTIZERS.names())} (a learned noise q(u | x), trained "
                        f"with the flow, which then takes the integer pixels; see "
                        f"tfp_flows.dequantizers), or a dequantizer a --plugin registers.",
                        flag_values=flag_values)
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
    run_settings = ", ".join(f"--{name}" for name in RUN_SETTINGS)
    flags.DEFINE_boolean("allow_changes", d.allow_changes,
                         f"Go on with a run in --output_dir although {run_settings} differ "
                         f"from the settings it was trained with, or --epochs is below the "
                         f"epochs it has trained; config.json and metrics.json list the "
                         f"changes.", flag_values=flag_values)


def config_from_flags(flag_values: flags.FlagValues = flags.FLAGS) -> TrainConfig:
    """The `TrainConfig` of parsed flags (checked by `run`, after it imports the plugins)."""
    values = {name: flag_values[flag_name(name)].value
              for name in [*(f.name for f in dataclasses.fields(TrainConfig)), "levels"]
              if flag_name(name) in flag_values}
    try:
        values["temperatures"] = tuple(float(t) for t in values["temperatures"])
    except ValueError:
        raise ConfigError(f"--temperatures must be numbers, got "
                          f"{','.join(values['temperatures'])}") from None
    values["plugins"] = tuple(values.get("plugins") or ())
    values["flow_args"] = _name_value_pairs(values.get("flow_args") or [])
    return TrainConfig(**renamed(values))


def _name_value_pairs(items: list[str]) -> dict[str, str]:
    """`--flow_args`' items `name=value` as a dict; the values are typed by `run`."""
    pairs = {}
    for item in items:
        name, equals, value = item.partition("=")
        name = name.strip()
        if not equals or not name.isidentifier():
            raise ConfigError(f"--flow_args must be name=value pairs separated by commas, got "
                              f"{item!r}")
        if name in pairs:
            raise ConfigError(f"--flow_args gives {name} twice")
        pairs[name] = value.strip()
    return pairs


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
