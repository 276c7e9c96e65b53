"""Streamed image datasets: TFDS datasets and directories of TFRecord or PNG/JPEG files.

`tfp_flows.datasets.load` takes this path for TFDS names and for directories that hold
TFRecord or image files. Nothing but a shuffle buffer of encoded records is held in memory:
each split is a `tf.data` pipeline that reads encoded images, decodes them, optionally
center-crops them to `crop` x `crop` and resizes them to `image_size` x `image_size`, keeps
their `num_bits` high bits (`x // 2**(8 - num_bits)`, so `L = 2**num_bits` levels),
dequantizes them (`x + u`, values in [0, L), as `tfp_flows.datasets` does) and batches them,
with `AUTOTUNE` parallel maps and prefetching.

Splits. A TFDS dataset keeps its official `test` split and holds out the *last*
`validation_fraction` of its `train` examples for validation, by TFDS split slicing on the
example index (`train[:n]`, `train[n:m]`); without a `test` split the last 20% of `train` is
the test split and validation comes just before it. A directory is split by record index
(files in sorted order, records in file order): record `i` is held out for a fraction `f`
when `floor((i + 1) f) > floor(i f)`, which spreads `floor(N f)` held-out records evenly
over the `N`; first the test split (f = 0.2), then validation among the remaining records.
Each split of a directory reads past the other splits' records (only the file names, for
image files).

Noise and order. Epoch `e` of training shuffles the training records with a buffer of
`shuffle_buffer` records and a seed made of (`seed`, `e`), and dequantizes record `i` with a
stateless key made of (`seed`, the training salt, `e`, `i`): an epoch's batches depend on the
seed and the epoch number alone, so `Streamed.train_batches` can restart any epoch at any
batch, as a run resumed mid-epoch must. Iterating `Splits.train` itself reshuffles and draws
fresh noise on every pass, as for arrays, but not by epoch number. Validation and test
records get noise keyed by (`seed`, the split's salt, `i`), identical on every pass, without
holding the split.

Multi-worker input. `Streamed.train_batches` takes a `tf.distribute.InputContext`: each input
pipeline keeps the training records whose index is its `input_pipeline_id` modulo
`num_input_pipelines`, before shuffling and decoding (it still reads past the others'
records), and yields per-replica batches, the same number on every pipeline.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
from collections.abc import Callable

import tensorflow as tf
import tensorflow_datasets as tfds

from tfp_flows import datasets

__all__ = ["Streamed", "load"]

_MAX_BITS = 8
# How PNG and JPEG files start; anything else is refused with the file's name.
_PNG_MAGIC, _JPEG_MAGIC = b"\x89PNG", b"\xff\xd8\xff"
_COUNT_BATCH = 4096
# Shuffle seeds of the epochs: (seed, epoch) mixed into one int64.
_EPOCH_SEED_STRIDE = 1_000_003


@dataclasses.dataclass(frozen=True)
class _Part:
    """The records of one split: `records()` yields `(index, item)`, index from 0 (see
    `_Source.fetch` for the item), and `size` counts them."""

    records: Callable[[], tf.data.Dataset]
    size: int


@dataclasses.dataclass(frozen=True)
class _Source:
    """The three parts of a streamed dataset, with what decoding needs: `fetch(index, item)`
    gives a record's encoded image, its int64 label and a name for errors."""

    train: _Part
    validation: _Part
    test: _Part
    fetch: Callable
    image_shape: tuple[int | None, int | None, int]
    num_classes: int
    min_label: int


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


def load(name: str, *, batch_size: int, data_dir: str | None, validation_fraction: float,
         seed: int, num_examples: int | None, labels: bool, num_bits: int,
         image_size: int | None, crop: int | None, shuffle_buffer: int) -> datasets.Splits:
    """Streams a TFDS dataset (`name`) or a directory (`name` a path) as `Splits`.

    Arguments are those of `tfp_flows.datasets.load` (already checked there, except the
    streaming ones checked here).
    """
    if not isinstance(num_bits, numbers.Integral) or not 1 <= num_bits <= _MAX_BITS:
        raise ValueError(f"num_bits must be an integer in 1..{_MAX_BITS} (2**num_bits pixel "
                         f"levels), got {num_bits!r}")
    for option, value in (("image_size", image_size), ("crop", crop)):
        if value is not None and (not isinstance(value, numbers.Integral) or value < 1):
            raise ValueError(f"{option} must be None or a positive integer, got {value!r}")
    if not isinstance(shuffle_buffer, numbers.Integral) or shuffle_buffer < 1:
        raise ValueError(f"shuffle_buffer must be a positive integer, got {shuffle_buffer!r}")
    path = os.path.expanduser(name)
    if os.path.isdir(path):
        source = _directory_source(path, validation_fraction, num_examples)
    else:
        source = _tfds_source(name, data_dir, validation_fraction, num_examples)
    if labels and source.min_label < 0:
        raise ValueError(f"{name!r} has negative class labels; labels must be 0, 1, 2, ...")
    if labels and source.num_classes < 2:
        raise ValueError(f"{name!r} has no class labels to condition on (every label is 0)")
    height, width, channels = source.image_shape
    if crop is not None:
        if height is not None and crop > min(height, width):
            raise ValueError(f"crop={crop} is larger than the {height}x{width} images of "
                             f"{name!r}; expected at most {min(height, width)}")
        height = width = crop
    if image_size is not None:
        height = width = image_size
    if height is None or width is None:
        raise ValueError(f"{name!r} has images of varying size; pass image_size (and "
                         f"optionally crop) to give them one")
    event_shape = (height, width, channels)
    if source.train.size < batch_size:
        raise ValueError(
            f"{name!r} leaves {source.train.size} training examples after holding out "
            f"{source.validation.size} for validation, fewer than batch_size={batch_size}")
    decode = _decoder(source.fetch, event_shape, crop, image_size, num_bits)
    num_levels = 2 ** num_bits
    steps_per_epoch = source.train.size // batch_size

    base_key = tf.constant([seed, datasets._TRAIN_SALT], tf.int64)

    def epoch_batches(epoch: int | None, skip: int = 0,
                      input_context: tf.distribute.InputContext | None = None):
        """One epoch's batches; `epoch=None` reshuffles and redraws the noise on each pass."""
        shards, shard, batch, replicas = 1, 0, batch_size, 1
        if input_context is not None:
            shards, shard = input_context.num_input_pipelines, input_context.input_pipeline_id
            batch = input_context.get_per_replica_batch_size(batch_size)
            replicas = input_context.num_replicas_in_sync // shards
        # Examples each pipeline yields per global step: a batch for each replica it feeds.
        per_step = batch * replicas
        ds = source.train.records().shard(shards, shard)
        if epoch is None:
            ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
            draws = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
            ds = tf.data.Dataset.zip(ds, draws).map(lambda record, draw: (
                *record, tf.random.experimental.stateless_fold_in(base_key, draw)))
        else:
            # Python ints: a seed tensor fails in shuffle when TF's global seed is 0.
            ds = ds.shuffle(shuffle_buffer, seed=seed * _EPOCH_SEED_STRIDE + epoch,
                            reshuffle_each_iteration=False)
            key = tf.random.experimental.stateless_fold_in(base_key, epoch)
            ds = ds.map(lambda index, item: (index, item, key))
        # Every pipeline takes as many batches as the smallest shard allows, so all of them
        # end an epoch at the same step.
        ds = ds.take(steps_per_epoch * per_step).skip(skip * per_step)
        ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE)
        return _output(ds, labels).batch(batch, drop_remainder=True)

    def train_batches(first_epoch: int, last_epoch: int, skip: int = 0,
                      input_context: tf.distribute.InputContext | None = None):
        ds = epoch_batches(first_epoch, skip, input_context)
        for epoch in range(first_epoch + 1, last_epoch):
            ds = ds.concatenate(epoch_batches(epoch, 0, input_context))
        return ds.prefetch(tf.data.AUTOTUNE)

    return datasets.Splits(
        train=epoch_batches(None).prefetch(tf.data.AUTOTUNE),
        validation=_eval_batches(source.validation, decode, batch_size, seed,
                                 datasets._VALIDATION_SALT, labels),
        test=_eval_batches(source.test, decode, batch_size, seed, datasets._TEST_SALT, labels),
        event_shape=event_shape, num_levels=num_levels, name=name,
        num_classes=source.num_classes,
        streamed=Streamed(steps_per_epoch=steps_per_epoch, train_batches=train_batches))


def _output(ds: tf.data.Dataset, labels: bool) -> tf.data.Dataset:
    """`(x, label)` examples as they are with `labels`, else `x` alone."""
    return ds if labels else ds.map(lambda x, label: x)


def _eval_batches(part: _Part, decode, batch_size: int, seed: int, salt: int,
                  labels: bool) -> tf.data.Dataset:
    key = tf.constant([seed, salt], tf.int64)
    ds = part.records().map(lambda index, item: decode(index, item, key),
                            num_parallel_calls=tf.data.AUTOTUNE)
    return _output(ds, labels).batch(batch_size).prefetch(tf.data.AUTOTUNE)


def _decoder(fetch, event_shape: tuple[int, int, int], crop: int | None,
             image_size: int | None, num_bits: int):
    """`decode(index, item, key)`: the dequantized image of a record and its label, the noise
    keyed by `key` folded with the record's index."""
    height, width, channels = event_shape

    def decode(index, item, key):
        encoded, label, name = fetch(index, item)
        start = tf.strings.substr(encoded, 0, 4)
        known = tf.logical_or(tf.equal(start, _PNG_MAGIC),
                              tf.equal(tf.strings.substr(start, 0, 3), _JPEG_MAGIC))
        with tf.control_dependencies([tf.debugging.Assert(
                known, ["expected a PNG or JPEG image, got other bytes in", name])]):
            x = tf.io.decode_image(encoded, channels=channels, expand_animations=False)
        if crop is not None:
            shape = tf.shape(x)
            x = tf.image.crop_to_bounding_box(x, (shape[0] - crop) // 2, (shape[1] - crop) // 2,
                                              crop, crop)
        if image_size is not None:
            x = tf.image.resize(x, (image_size, image_size), antialias=True)
            x = tf.cast(tf.clip_by_value(tf.round(x), 0.0, 255.0), tf.uint8)
        x = tf.ensure_shape(x, (height, width, channels))
        x = tf.cast(x, tf.int32) // 2 ** (_MAX_BITS - num_bits)
        x = datasets._dequantize(x, tf.random.experimental.stateless_fold_in(key, index))
        return x, label

    return decode


# ----------------------------------------------------------------------------- TFDS

def _tfds_source(name: str, data_dir: str | None, validation_fraction: float,
                 num_examples: int | None) -> _Source:
    builder = datasets._tfds_builder(name, data_dir)
    splits = builder.info.splits
    # Split sizes come from the prepared metadata; when it lacks them (as with
    # tfds.testing.mock_data) one streamed pass counts the training examples.
    num_train = (splits["train"].num_examples if "train" in splits else
                 int(builder.as_dataset(split="train", decoders=_SKIP_IMAGE).reduce(
                     tf.constant(0, tf.int64), lambda count, _: count + 1)))
    if "test" in splits:
        keep_train, keep_test = datasets._split_sizes(num_examples, num_train,
                                                      splits["test"].num_examples)
        fit_end = keep_train - datasets._held_out(keep_train, validation_fraction)
        slices = {"train": f"train[:{fit_end}]",
                  "validation": f"train[{fit_end}:{keep_train}]",
                  "test": f"test[:{keep_test}]"}
        sizes = {"train": fit_end, "validation": keep_train - fit_end, "test": keep_test}
    else:
        keep = num_train if num_examples is None else min(num_examples, num_train)
        rest = keep - min(keep - 1, datasets._held_out(keep, datasets._TEST_FRACTION))
        fit_end = rest - datasets._held_out(rest, validation_fraction)
        slices = {"train": f"train[:{fit_end}]", "validation": f"train[{fit_end}:{rest}]",
                  "test": f"train[{rest}:{keep}]"}
        sizes = {"train": fit_end, "validation": rest - fit_end, "test": keep - rest}
    features = builder.info.features
    has_label = "label" in features

    def part(split: str) -> _Part:
        def records():
            # Encoded images: decoding happens in our own map, after sharding.
            ds = builder.as_dataset(split=slices[split], shuffle_files=False,
                                    decoders=_SKIP_IMAGE)
            # take() holds a split to its size where slicing is not honoured (mock_data).
            return ds.take(sizes[split]).map(lambda e: (
                e["image"], tf.cast(e["label"], tf.int64) if has_label
                else tf.constant(0, tf.int64))).enumerate()

        return _Part(records, sizes[split])

    def fetch(index, item):
        image, label = item
        return image, label, tf.strings.format("record {} of {}", (index, name))

    num_classes = int(getattr(features["label"], "num_classes", 0) or 0) if has_label else 0
    return _Source(part("train"), part("validation"), part("test"), fetch,
                   tuple(features["image"].shape), max(num_classes, 1), 0)


_SKIP_IMAGE = {"image": tfds.decode.SkipDecoding()}


# ----------------------------------------------------------------------------- directories

def _directory_source(directory: str, validation_fraction: float,
                      num_examples: int | None) -> _Source:
    # One walk of the directory for both kinds of file.
    files = datasets._files(directory, datasets._TFRECORD_SUFFIXES + datasets._IMAGE_SUFFIXES)
    records = [path for path in files if path.lower().endswith(datasets._TFRECORD_SUFFIXES)]
    images = [path for path in files if path.lower().endswith(datasets._IMAGE_SUFFIXES)]
    if records and images:
        raise ValueError(f"dataset directory {directory!r} holds both TFRecord and image files; "
                         f"expected one kind")
    if records:
        base = tf.data.TFRecordDataset(records)
        size, min_label, max_label = _tfrecord_stats(base)
        fetch = _parse_example
    else:
        base = tf.data.Dataset.from_tensor_slices(images)
        size, min_label, max_label = len(images), 0, 0
        fetch = _read_image_file
    if num_examples is not None:
        base, size = base.take(num_examples), min(size, num_examples)
    if size == 0:
        raise ValueError(f"dataset directory {directory!r} holds TFRecord files without "
                         f"records; expected {datasets._DIRECTORY_HINT}")
    first = next(iter(base.take(1)))
    encoded, _, where = fetch(tf.constant(0, tf.int64), first)
    image = _decode_eagerly(encoded.numpy(), where.numpy().decode())
    test_size = _interleaved_count(size, datasets._TEST_FRACTION)
    validation_size = _interleaved_count(size - test_size, validation_fraction)

    def part(which: int, part_size: int) -> _Part:
        def records():
            ds = base.enumerate().filter(lambda index, item: tf.equal(
                _assign(index, validation_fraction), which))
            return ds.map(lambda index, item: item).enumerate()

        return _Part(records, part_size)

    return _Source(part(0, size - test_size - validation_size), part(1, validation_size),
                   part(2, test_size), fetch, tuple(image.shape), max_label + 1, min_label)


def _interleaved_count(size: int, fraction: float) -> int:
    """How many of indices 0..size-1 `_held` selects: floor(size * fraction)."""
    return math.floor(size * fraction)


def _held(index: tf.Tensor, fraction: float) -> tf.Tensor:
    """Whether `index` is held out: floor((index + 1) f) > floor(index f), evenly spread."""
    index = tf.cast(index, tf.float64)
    return tf.floor((index + 1.0) * fraction) > tf.floor(index * fraction)


def _assign(index: tf.Tensor, validation_fraction: float) -> tf.Tensor:
    """The part of a directory record: 0 train, 1 validation, 2 test."""
    test = _held(index, datasets._TEST_FRACTION)
    # The index among the records that are not test records.
    rest = tf.cast(index, tf.float64) - tf.floor(
        (tf.cast(index, tf.float64) + 1.0) * datasets._TEST_FRACTION)
    validation = _held(rest, validation_fraction)
    return tf.where(test, 2, tf.where(validation, 1, 0))


_EXAMPLE_FEATURES = {"image": tf.io.FixedLenFeature([], tf.string),
                     "label": tf.io.FixedLenFeature([], tf.int64, default_value=0)}


def _parse_example(index, serialized):
    example = tf.io.parse_single_example(serialized, _EXAMPLE_FEATURES)
    return (example["image"], example["label"],
            tf.strings.format("TFRecord record {}", index))


def _read_image_file(index, path):
    return tf.io.read_file(path), tf.constant(0, tf.int64), path


def _tfrecord_stats(records: tf.data.Dataset) -> tuple[int, int, int]:
    """The number of records and their smallest and largest labels, in one streamed pass."""
    labels = records.batch(_COUNT_BATCH).map(
        lambda batch: tf.io.parse_example(batch, {"label": _EXAMPLE_FEATURES["label"]})["label"])
    count, low, high = labels.reduce(
        (tf.constant(0, tf.int64), tf.constant(0, tf.int64), tf.constant(0, tf.int64)),
        lambda state, y: (state[0] + tf.size(y, out_type=tf.int64),
                          tf.minimum(state[1], tf.reduce_min(y)),
                          tf.maximum(state[2], tf.reduce_max(y))))
    return int(count), int(low), int(high)


def _decode_eagerly(encoded: bytes, where: str):
    if not encoded.startswith((_PNG_MAGIC, _JPEG_MAGIC)):
        raise ValueError(f"expected a PNG or JPEG image in {where}, got bytes starting with "
                         f"{encoded[:8]!r}")
    try:
        return tf.io.decode_image(encoded, expand_animations=False)
    except tf.errors.InvalidArgumentError as error:
        raise ValueError(f"{where} is not a readable image ({error.message})") from None
