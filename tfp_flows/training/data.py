"""The data splits a run trains and evaluates on."""

from __future__ import annotations

import dataclasses

import tensorflow as tf

from tfp_flows import datasets
from tfp_flows.dequantizers import UNIFORM
from tfp_flows.training.config import TrainConfig
from tfp_flows.training.errors import ConfigError
from tfp_flows.training.strategies import is_multi_worker, shared_by_batch

__all__ = ["load_splits"]


def load_splits(config: TrainConfig, strategy: tf.distribute.Strategy):
    """The splits, and their image shape (None for vectors).

    With `config.conditional` the batches are `(x, label)`. A run whose flow dequantizes the
    pixels itself (`config.dequantization` other than uniform) gets the integer pixels, from
    in-memory and streamed sources alike.

    Raises:
        ConfigError: When the data cannot be loaded as the settings say, or are no discrete
            images for a dequantization other than uniform.
    """
    try:
        splits = datasets.load(config.dataset, batch_size=config.batch_size,
                               data_dir=config.data_dir, seed=config.seed,
                               num_examples=config.num_examples, labels=config.conditional,
                               num_bits=config.num_bits, image_size=config.image_size,
                               crop=config.crop, shuffle_buffer=config.shuffle_buffer,
                               skip_bad_files=config.skip_bad_files,
                               dequantize=config.dequantization == UNIFORM)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    image_shape = splits.event_shape if len(splits.event_shape) == 3 else None
    if config.dequantization != UNIFORM and (image_shape is None or splits.num_levels is None):
        kind = "vectors" if image_shape is None else "images without discrete pixel levels"
        raise ConfigError(f"--dequantization={config.dequantization} learns the noise of "
                          f"discrete pixels, so it needs images with pixel levels; "
                          f"{config.dataset} holds {kind}: use --dequantization={UNIFORM}")
    if is_multi_worker(strategy):
        # Each worker evaluates its share of every batch (training data is shared out by
        # `Streamed.train_batches`, in the training loop).
        splits = dataclasses.replace(splits, train=shared_by_batch(splits.train),
                                     validation=shared_by_batch(splits.validation),
                                     test=shared_by_batch(splits.test))
    return splits, image_shape
