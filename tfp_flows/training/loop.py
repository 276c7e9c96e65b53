"""One training run from its settings to its outputs: `run` wires the other modules of
`tfp_flows.training` together (set-up, resume, fit, evaluate, figures)."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import os
import time
from collections.abc import Mapping

import keras
import tensorflow as tf

from tfp_flows.flow_model import FlowModel
from tfp_flows.machine import describe as describe_machine
from tfp_flows.training import run_directory
from tfp_flows.training.callbacks import BestModel, NonFiniteCheck, Patience, Throughput
from tfp_flows.training.checkpoint import Checkpoint
from tfp_flows.training.config import (
    TrainConfig,
    family,
    family_args,
    flow_arguments,
    typed_config,
    validated,
)
from tfp_flows.training.data import load_splits
from tfp_flows.training.errors import ConfigError, TrainingError
from tfp_flows.training.evaluation import IMPORTANCE_SAMPLES, SPLITS, estimate, evaluator
from tfp_flows.training.figures import write_figures
from tfp_flows.training.files import write_json_atomically
from tfp_flows.training.kill_points import kill_point
from tfp_flows.training.lock import locked
from tfp_flows.training.plugins import import_plugins
from tfp_flows.training.strategies import is_multi_worker, make_strategy, shared_by_batch

__all__ = ["run"]


def run(config: TrainConfig | Mapping) -> dict:
    """Trains, evaluates and writes the outputs of one run; resumes a run it finds unfinished.

    The plugins (`config.plugins`, and those the run in `output_dir` was trained with) are
    imported before the settings are checked, so the families they add are valid `flow`s.

    Args:
        config: A `TrainConfig`, or a mapping of its field names.

    Returns:
        The metrics written to `metrics.json`.

    Raises:
        ConfigError: For bad input, including an `output_dir` holding another model or in
            use by another command (nothing is written then), a plugin that cannot be
            imported, or a damaged checkpoint.
        TrainingError: When the loss, the weights or the validation score stop being finite;
            the last good checkpoint stays.
    """
    start = time.perf_counter()
    config = typed_config(config)
    trained = run_directory.trained_plugins(run_directory.read_settings(config.output_dir))
    config = validated(dataclasses.replace(
        config, plugins=import_plugins(config.plugins, trained)))
    strategy = make_strategy(config.strategy)
    keras.utils.set_random_seed(config.seed)
    splits, image_shape = load_splits(config, strategy)
    with strategy.scope():
        model = _build_model(config, splits)
        # A learned dequantizer's noise keyed by the seed and the step, as the pipeline's is.
        seeded = {} if model.dequantizer is None else {"dequantization_seed": config.seed}
        model.compile(optimizer=keras.optimizers.Adam(config.learning_rate),
                      jit_compile=config.jit_compile, **seeded)
    # Only the chief writes, so only it locks; the other workers of a multi-worker run compute
    # the same things.
    chief = strategy.extended.should_checkpoint
    with locked(config.output_dir) if chief else contextlib.nullcontext():
        metrics = _train(config, strategy, chief, splits, image_shape, model, start)
    if splits.skipped:
        print(f"skipped {len(splits.skipped)} unreadable file(s) of {config.dataset}: "
              f"{'; '.join(splits.skipped)}")
    return metrics


def _build_model(config: TrainConfig, splits) -> FlowModel:
    image = len(splits.event_shape) == 3
    takes = family_args(config.flow, image)
    given = flow_arguments(config)
    extra = [name for name in given if name not in takes]
    if extra:
        raise ConfigError(f"{', '.join('--' + n for n in extra)} does not apply to "
                          f"{config.flow} on {'images' if image else 'vectors'}; it takes "
                          f"{', '.join('--' + n for n in takes)}")
    num_classes = splits.num_classes if config.conditional else None
    try:
        return FlowModel(family(config.flow)(
            splits.event_shape, num_levels=splits.num_levels, num_classes=num_classes,
            precision=config.precision, dequantization=config.dequantization, **given))
    except ValueError as error:
        raise ConfigError(str(error)) from None


def _train(config: TrainConfig, strategy: tf.distribute.Strategy, chief: bool, splits,
           image_shape: tuple[int, ...] | None, model: FlowModel, start: float) -> dict:
    """The part of `run` that reads and writes the run directory."""
    out = config.output_dir
    identity = run_directory.identity(config, splits, model)
    stored = run_directory.check_output_dir(out, identity, chief)
    best_model_path = os.path.join(out, "model.keras")
    checkpoint = Checkpoint(os.path.join(out, "backup"), best_model_path,
                            every_steps=config.checkpoint_steps,
                            steps_per_epoch=splits.streamed.steps_per_epoch, write=chief)
    checkpoint.set_model(model)
    with strategy.scope():
        resumed = checkpoint.restore()
    state = checkpoint.state
    changes = [*(stored or {}).get("changes", [])]
    if changed := run_directory.setting_changes(config, stored, state):
        changes.append({"epoch": state["epoch"], "step": state["step"],
                        "iterations": state["iterations"], "settings": changed})
    if chief:
        run_directory.write_settings(config, identity, changes)

    initial_epoch, initial_step = state["epoch"], state["step"]
    throughput = Throughput(config.batch_size)
    done = initial_epoch >= config.epochs or state["stopped_early"]
    if resumed and done:
        print(f"{out} finished training after {initial_epoch} epochs; evaluating its best model")
    elif resumed:
        print(f"Resuming {out} at epoch {initial_epoch + 1} step {initial_step + 1} (optimizer "
              f"iteration {state['iterations'] + 1})")
    train_start = time.perf_counter()
    if not done:
        # The rules decide at each epoch end before the checkpoint commits what they decided.
        callbacks = [throughput, NonFiniteCheck(checkpoint), BestModel(checkpoint),
                     Patience(checkpoint, config.patience), checkpoint]
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
    evaluate = evaluator(model, strategy, config.seed)
    scores = {}
    for split in SPLITS:
        scores[split] = evaluate(getattr(splits, split), split)
        kill_point("evaluation")
    broken = [split for split, score in scores.items() if not math.isfinite(score["nll_nats"])]
    if broken:
        raise TrainingError(f"the best model's NLL on the {' and '.join(broken)} data is not "
                            f"finite; check those data for NaN or Inf values")
    if model.dequantizer is not None:
        # The tighter estimate of the test NLL, at K times the cost of the bound.
        scores["test_importance_weighted"] = {
            "num_samples": IMPORTANCE_SAMPLES,
            **evaluate(splits.test, "test", IMPORTANCE_SAMPLES)}
    metrics = {
        "flow": config.flow, "dataset": config.dataset,
        "event_shape": list(image_shape or splits.event_shape), "num_levels": splits.num_levels,
        "num_classes": model.flow.num_classes,
        "dequantization": identity["dequantization"],
        "nll_estimate": estimate(model, splits.num_levels),
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
        "machine": describe_machine(),
    }
    if chief:
        written = ["config.json", "model.keras", "backup/", "logs/", "metrics.json",
                   *write_figures(out, state["history"], state["best_epoch"], model, splits,
                                  image_shape, config.temperatures, config.seed)]
        metrics["wall_time_s"] = time.perf_counter() - start
        write_json_atomically(os.path.join(out, "metrics.json"), metrics)
        weighted = metrics.get("test_importance_weighted")
        bound = "" if weighted is None else (
            f" (the variational bound; importance-weighted with K={weighted['num_samples']}: "
            f"{weighted['bits_per_dim']:.4f})")
        print(f"test: {metrics['test']['nll_nats']:.4f} nats, "
              f"{metrics['test']['bits_per_dim']:.4f} bits/dim{bound} (best epoch "
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
        if is_multi_worker(strategy):
            return strategy.distribute_datasets_from_function(
                lambda context: streamed.train_batches(first, last, skip, context))
        return streamed.train_batches(first, last, skip)

    # ActNorm's data-dependent initialisation on the first batch of training (FlowModel.fit
    # takes a tf.data.Dataset for it, not a distributed one); done already when resumed.
    model.initialize_from_data(shared_by_batch(streamed.train_batches(0, 1).take(1)))
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
