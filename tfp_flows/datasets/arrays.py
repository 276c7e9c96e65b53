"""Datasets held in memory: `Arrays`, and their dequantized, batched pipelines.

Training batches are reshuffled and re-dequantized every epoch, as a function of the seed and
the epoch number (`Splits.streamed`), so a run resumed mid-epoch sees the batches of an
uninterrupted one; validation and test batches use noise fixed by the seed, so two
evaluations give identical numbers.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from tfp_flows.datasets import splits as splits_lib
from tfp_flows.datasets.dequantization import dequantize
from tfp_flows.datasets.options import LoadOptions
from tfp_flows.datasets.splits import Splits, Streamed

__all__ = ["Arrays"]


@dataclasses.dataclass
class Arrays:
    """The train and test examples of an array source, before dequantization.

    Attributes:
        x_train: `(N, D)` float vectors, or `(N, H, W, C)` integer images (pixels in
            0..num_levels-1). Float vectors are stored as float32.
        x_test: Test examples, of `x_train`'s dtype and event shape.
        y_train: int64 class labels `(N,)` (0, 1, 2, ...), or None for a source without
            labels (stored as zeros).
        y_test: Like `y_train`, for the test examples.
        num_levels: The number of discrete levels L of integer images, None for continuous
            data (which is not dequantized).

    Raises:
        ValueError: For arrays that do not match this description.
    """

    x_train: np.ndarray
    x_test: np.ndarray
    y_train: np.ndarray | None = None
    y_test: np.ndarray | None = None
    num_levels: int | None = None

    def __post_init__(self):
        for split in ("train", "test"):
            x = np.asarray(getattr(self, f"x_{split}"))
            rank, kind = (2, "vectors (N, D)") if self.num_levels is None else (
                4, "images (N, H, W, C)")
            if x.ndim != rank or len(x) == 0:
                raise ValueError(f"x_{split} must hold {kind} with N > 0"
                                 f"{'' if self.num_levels is None else ' given num_levels'}, "
                                 f"got shape {x.shape}")
            y = getattr(self, f"y_{split}")
            y = np.zeros(len(x), np.int64) if y is None else np.asarray(y)
            if y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer):
                raise ValueError(f"y_{split} must be integer labels of shape ({len(x)},), got "
                                 f"{y.dtype} {y.shape}")
            if self.num_levels is None:
                if not np.issubdtype(x.dtype, np.floating):
                    raise ValueError(f"x_{split} must be float vectors without num_levels (or "
                                     f"integer pixels with num_levels), got {x.dtype}")
                x = x.astype(np.float32, copy=False)
            elif not np.issubdtype(x.dtype, np.integer) or x.min() < 0 or (
                    x.max() >= self.num_levels):
                raise ValueError(f"x_{split} must hold integers in 0..{self.num_levels - 1} "
                                 f"(num_levels={self.num_levels}), got {x.dtype} in "
                                 f"[{x.min()}, {x.max()}]")
            setattr(self, f"x_{split}", x)
            setattr(self, f"y_{split}", y.astype(np.int64, copy=False))
        if self.x_train.dtype != self.x_test.dtype or (
                self.x_train.shape[1:] != self.x_test.shape[1:]):
            raise ValueError(f"x_train and x_test must share dtype and event shape, got "
                             f"{self.x_train.dtype} {self.x_train.shape} and "
                             f"{self.x_test.dtype} {self.x_test.shape}")
        if self.num_levels is not None and self.num_levels < 2:
            raise ValueError(f"num_levels must be None or at least 2, got {self.num_levels!r}")

    def as_dict(self) -> dict[str, np.ndarray]:
        """`x_train`, `y_train`, `x_test`, `y_test` (what `load_arrays` returns)."""
        return {"x_train": self.x_train, "y_train": self.y_train,
                "x_test": self.x_test, "y_test": self.y_test}


def carve_test(x: np.ndarray, y: np.ndarray, seed: int,
               num_levels: int | None = None) -> Arrays:
    """Splits one pool of examples into seeded, disjoint train and test sets (20% test), for
    sources without a test split of their own."""
    num_test = min(len(x) - 1, splits_lib.held_out(len(x), splits_lib.TEST_FRACTION))
    order = np.random.default_rng([seed, splits_lib.TEST_SPLIT_STREAM]).permutation(len(x))
    test, train = np.sort(order[:num_test]), np.sort(order[num_test:])
    return Arrays(x[train], x[test], y[train], y[test], num_levels)


def truncate(arrays: Arrays, num_examples: int | None) -> Arrays:
    """Keeps at most `num_examples` in total, shared between train and test in proportion to
    their sizes (the leading examples of each)."""
    keep_train, keep_test = splits_lib.split_sizes(num_examples, len(arrays.x_train),
                                                   len(arrays.x_test))
    return Arrays(arrays.x_train[:keep_train], arrays.x_test[:keep_test],
                  arrays.y_train[:keep_train], arrays.y_test[:keep_test], arrays.num_levels)


def array_splits(arrays: Arrays, name: str, options: LoadOptions) -> Splits:
    """The dequantized, batched pipelines of `arrays` (validation held out of the training
    examples), as `tfp_flows.datasets.load` describes them."""
    x_train, y_train, y_test = arrays.x_train, arrays.y_train, arrays.y_test
    num_levels, batch_size, seed = arrays.num_levels, options.batch_size, options.seed
    # The levels the pipelines add noise for: none when asked for the integer pixels.
    noise_levels = num_levels if options.dequantize else None
    num_classes = int(max(y_train.max(initial=0), y_test.max(initial=0))) + 1
    if options.labels and min(y_train.min(initial=0), y_test.min(initial=0)) < 0:
        raise ValueError(f"{name!r} has negative class labels; labels must be 0, 1, 2, ...")
    if options.labels and num_classes < 2:
        raise ValueError(f"{name!r} has no class labels to condition on (every label is 0)")
    # The columns each pipeline gathers: x, and the labels when asked for.
    train = (x_train, y_train) if options.labels else (x_train,)
    test = (arrays.x_test, y_test) if options.labels else (arrays.x_test,)
    num_train = len(x_train)
    num_validation = splits_lib.held_out(num_train, options.validation_fraction)
    if num_train - num_validation < batch_size:
        raise ValueError(
            f"{name!r} leaves {num_train - num_validation} training examples after holding out "
            f"{num_validation} for validation, fewer than batch_size={batch_size}")
    order = np.random.default_rng([seed, splits_lib.VALIDATION_STREAM]).permutation(num_train)
    validation_index = np.sort(order[:num_validation])
    train_index = np.sort(order[num_validation:])
    train_batches, by_epoch = _train_epochs([a[train_index] for a in train], batch_size, seed,
                                            noise_levels)
    return Splits(
        train=train_batches,
        validation=_eval_pipeline([a[validation_index] for a in train], batch_size, seed,
                                  splits_lib.VALIDATION_SALT, noise_levels),
        test=_eval_pipeline(test, batch_size, seed, splits_lib.TEST_SALT, noise_levels),
        event_shape=tuple(int(d) for d in x_train.shape[1:]),
        num_levels=num_levels,
        name=name,
        num_classes=num_classes,
        streamed=by_epoch,
    )


def _picker(columns, num_levels: int | None):
    """A function of example indices (and a noise key): `x`, or `(x, label)` given labels.

    `columns` is `(x,)` or `(x, y)`; `x` is dequantized when `num_levels` is given, else
    float32 as it is (integer pixels, or vectors).
    """
    tensors = [tf.constant(column) for column in columns]

    def pick(index, key=None):
        x, *label = (tf.gather(tensor, index) for tensor in tensors)
        x = tf.cast(x, tf.float32) if num_levels is None else dequantize(x, key)
        return (x, *label) if label else x

    return pick


def _train_epochs(columns, batch_size: int, seed: int,
                  num_levels: int | None) -> tuple[tf.data.Dataset, Streamed]:
    """The training batches of an array source: `Splits.train`, and by epoch number.

    Epoch `e` orders the examples by a permutation keyed by (`seed`, `e`) and dequantizes its
    batch `b` with a key made of (`seed`, the training salt, `e`, `b`): an epoch's batches
    depend on the seed and the epoch number alone, so a run resumed mid-epoch sees those of an
    uninterrupted run. With an `input_context`, each input pipeline takes its slice of every
    global batch (noise included) as per-replica batches, so the global batches stay those of
    one process.
    """
    pick = _picker(columns, num_levels)
    size = len(columns[0])
    steps_per_epoch = size // batch_size
    fold_in = tf.random.experimental.stateless_fold_in
    order_key = tf.constant([seed, splits_lib.ORDER_SALT], tf.int64)
    noise_key = tf.constant([seed, splits_lib.TRAIN_SALT], tf.int64)

    def epoch_batches(epoch, skip):
        order = tf.random.experimental.stateless_shuffle(tf.range(size, dtype=tf.int64),
                                                         seed=fold_in(order_key, epoch))
        # The last incomplete batch is dropped.
        batches = tf.reshape(order[:steps_per_epoch * batch_size], (steps_per_epoch, batch_size))
        epoch_key = fold_in(noise_key, epoch)
        return tf.data.Dataset.range(skip, steps_per_epoch).map(
            lambda step: pick(tf.gather(batches, step), fold_in(epoch_key, step)),
            num_parallel_calls=tf.data.AUTOTUNE)

    def train_batches(first_epoch: int, last_epoch: int, skip: int = 0,
                      input_context: tf.distribute.InputContext | None = None):
        ds = tf.data.Dataset.range(first_epoch, last_epoch).flat_map(
            lambda epoch: epoch_batches(epoch, tf.where(epoch == first_epoch,
                                                        tf.constant(skip, tf.int64), 0)))
        if input_context is not None:
            per_replica = input_context.get_per_replica_batch_size(batch_size)
            share = per_replica * (input_context.num_replicas_in_sync
                                   // input_context.num_input_pipelines)
            start = input_context.input_pipeline_id * share

            def pipeline_share(x, *label):
                x, *label = (t[start:start + share] for t in (x, *label))
                return (x, *label) if label else x

            ds = ds.map(pipeline_share).unbatch().batch(per_replica, drop_remainder=True)
        return ds.prefetch(tf.data.AUTOTUNE)

    # A pass over `Splits.train` is an epoch with a number drawn afresh on each pass.
    draws = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).take(1)
    return draws.flat_map(lambda epoch: epoch_batches(epoch, 0)).prefetch(
        tf.data.AUTOTUNE), Streamed(steps_per_epoch, train_batches)


def _eval_pipeline(columns, batch_size: int, seed: int, salt: int,
                   num_levels: int | None) -> tf.data.Dataset:
    pick = _picker(columns, num_levels)
    ds = tf.data.Dataset.range(len(columns[0]))
    if num_levels is None:
        return ds.batch(batch_size).map(pick).prefetch(tf.data.AUTOTUNE)
    # Noise keyed by example index: identical on every pass and for any batch size.
    base_key = tf.constant([seed, salt], tf.int64)
    ds = ds.map(lambda index: pick(index,
                                   tf.random.experimental.stateless_fold_in(base_key, index)),
                num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
