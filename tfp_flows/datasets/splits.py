"""What `tfp_flows.datasets.load` returns (`Splits`, `Streamed`), and how examples are split.

Every source splits the same way: a test split carved out where the source has none (20%),
then a validation split held out of the training examples. The constants below name the
independent random streams and noise salts derived from the user's seed, so that e.g. changing
how toys are sampled does not change which examples land in validation.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import tensorflow as tf

__all__ = ["Splits", "Streamed"]

# Fraction held out as the test split when a source has no official one (toys, digits, TFDS).
TEST_FRACTION = 0.2
# Independent numpy streams derived from the user's seed.
SAMPLE_STREAM, TEST_SPLIT_STREAM, VALIDATION_STREAM = 0, 1, 2
# Salts for the stateless dequantization keys of each split, and for the training order of
# array sources.
TRAIN_SALT, VALIDATION_SALT, TEST_SALT, ORDER_SALT = 0, 1, 2, 3


@dataclasses.dataclass(frozen=True)
class Streamed:
    """How to stream the training split one epoch at a time (held by `Splits.streamed`).

    Attributes:
        steps_per_epoch: Global batches per epoch.
        train_batches: `train_batches(first_epoch, last_epoch, skip=0, input_context=None)`:
            the training batches of epochs `first_epoch` to `last_epoch - 1` (numbered from
            0), without the first `skip` batches of `first_epoch`, exactly those an
            uninterrupted run sees. With an `input_context`, one input pipeline's share of
            per-replica batches.
    """

    steps_per_epoch: int
    train_batches: Callable[..., tf.data.Dataset]


@dataclasses.dataclass(frozen=True)
class Splits:
    """Train/validation/test pipelines of one dataset.

    Attributes:
        train: Batches of float32 `x` with shape `(batch_size,) + event_shape`, reshuffled and
            re-dequantized every epoch; the last incomplete batch is dropped. With
            `labels=True`, `(x, label)` batches, the labels int64 `(batch_size,)`.
        validation: Batches like `train`'s, in a fixed order with fixed dequantization noise.
        test: Like `validation`, for the test examples.
        event_shape: `(H, W, C)` for images (C included even when 1), `(D,)` for vectors.
        num_levels: Number of discrete pixel levels L (values of `x` lie in [0, L)), or None
            for continuous data, which is not dequantized.
        name: The dataset spec passed to `load`.
        num_classes: 1 + the largest class label of the train and test examples (1 for a
            source without labels); the `num_classes` of a flow conditioned on the labels.
            A streamed TFDS dataset gives its label feature's number of classes; a streamed
            directory read without `labels` gives 1 (its labels are not read).
        streamed: The training batches by epoch number (see `Streamed`), for streamed and
            array sources alike: what a run resumed mid-epoch trains on.
        skipped: The unreadable files left out under `skip_bad_files`, each as
            `'<path>: <what is wrong>'`.
    """

    train: tf.data.Dataset
    validation: tf.data.Dataset
    test: tf.data.Dataset
    event_shape: tuple[int, ...]
    num_levels: int | None
    name: str
    num_classes: int
    streamed: Streamed | None = None
    skipped: tuple[str, ...] = ()


def held_out(size: int, fraction: float) -> int:
    """How many of `size` examples a `fraction` holds out: the nearest count, at least one."""
    return max(1, round(fraction * size))


def split_sizes(num_examples: int | None, num_train: int, num_test: int) -> tuple[int, int]:
    """Shares `num_examples` between train and test in proportion to their sizes."""
    if num_examples is None or num_examples >= num_train + num_test:
        return num_train, num_test
    keep_train = round(num_examples * num_train / (num_train + num_test))
    keep_train = min(num_examples - 1, max(1, keep_train))
    return keep_train, num_examples - keep_train
