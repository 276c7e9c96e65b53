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
Each split of a TFRecord directory reads past the other splits' records. A directory reached
twice through symbolic links is walked once, and a file reached by several paths is one file.

Checks. A directory is checked before `load` returns, so that training does not meet a bad
file: every image file and every TFRecord record that `num_examples` keeps (all by default) is
read once, its image checked without decoding a pixel: PNG chunks and their CRCs, the PNG pixel
data inflated and measured (what passes, TF decodes); JPEG markers and segments up to the image
data, and its end marker (a truncated JPEG is caught, damage inside its tables or entropy-coded
data is not). A file that cannot be read is named with the record and what is wrong, in a
`ValueError`, or with `skip_bad_files` left out and listed in `Splits.skipped`:
a skipped image file leaves its index empty, so every other file keeps its split, while a
skipped TFRecord file renumbers the records after it. The image shape is decided by `crop`
and `image_size` or else by all the images, which must then share one size; the channels by
all the images: RGB if any image has colour (greyscale ones are repeated), grey otherwise, with
alpha only if every image has it (a warning names the images converted). With `labels`, every
record needs one int64 `label` in 0..99999, and `num_classes` is 1 + the largest.

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
import re
import struct
import warnings
import zlib
from collections.abc import Callable, Iterable

import tensorflow as tf
import tensorflow_datasets as tfds
from google.protobuf.message import DecodeError

from tfp_flows import datasets

__all__ = ["Streamed", "load"]

_MAX_BITS = 8
# Records read at once by the check of a TFRecord file.
_CHECK_BATCH = 1024
_OP_NAMES = re.compile(r"\{\{.*?\}\} | \[Op:.*")
# The largest class label taken: ImageNet-21k's 21,841 classes fit, while a label such as
# 2**40 (a corrupt record) would make a class embedding no memory holds.
_MAX_LABEL = 99_999
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
    gives a record's encoded image and its int64 label."""

    train: _Part
    validation: _Part
    test: _Part
    fetch: Callable
    image_shape: tuple[int | None, int | None, int]
    num_classes: int
    # The distinct image sizes (height, width), each with an image that has it; empty when
    # unknown (TFDS).
    sizes: dict[tuple[int, int], str] = dataclasses.field(default_factory=dict)
    skipped: tuple[str, ...] = ()


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
         image_size: int | None, crop: int | None, shuffle_buffer: int,
         skip_bad_files: bool) -> datasets.Splits:
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
        source = _directory_source(path, validation_fraction, num_examples, labels,
                                   skip_bad_files)
    else:
        source = _tfds_source(name, data_dir, validation_fraction, num_examples)
    if labels and source.num_classes < 2:
        raise ValueError(f"{name!r} has no class labels to condition on (every label is 0)")
    event_shape = _event_shape(name, source, crop, image_size)
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
        streamed=Streamed(steps_per_epoch=steps_per_epoch, train_batches=train_batches),
        skipped=source.skipped)


def _event_shape(name: str, source: _Source, crop: int | None,
                 image_size: int | None) -> tuple[int, int, int]:
    """The shape of the images after cropping and resizing; refuses a crop larger than an
    image, and images of several sizes given neither `crop` nor `image_size`."""
    height, width, channels = source.image_shape
    if crop is not None:
        smallest = min(source.sizes, key=min, default=None)
        if smallest is not None and crop > min(smallest):
            raise ValueError(f"crop={crop} is larger than the {smallest[0]}x{smallest[1]} "
                             f"images of {name!r} (such as {source.sizes[smallest]}); "
                             f"expected at most {min(smallest)}")
        if height is not None and crop > min(height, width):
            raise ValueError(f"crop={crop} is larger than the {height}x{width} images of "
                             f"{name!r}; expected at most {min(height, width)}")
        height = width = crop
    if image_size is not None:
        height = width = image_size
    if height is None or width is None:
        # Two of the sizes, each with an image that has it (TFDS names none).
        examples = "".join(f"{', ' if i else ': '}{h}x{w} ({where})" for i, ((h, w), where) in
                           enumerate(list(source.sizes.items())[:2]))
        raise ValueError(f"{name!r} has images of varying size{examples}; pass image_size (and "
                         f"optionally crop) to give them one")
    return height, width, channels


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
        encoded, label = fetch(index, item)
        if channels == 2:
            # Grey and alpha: TF decodes 1, 3 or 4 channels, so RGBA (grey repeated) it is.
            x = tf.gather(tf.io.decode_image(encoded, channels=4, expand_animations=False),
                          [0, 3], axis=-1)
        else:
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
        return item

    num_classes = int(getattr(features["label"], "num_classes", 0) or 0) if has_label else 0
    return _Source(part("train"), part("validation"), part("test"), fetch,
                   tuple(features["image"].shape), max(num_classes, 1))


_SKIP_IMAGE = {"image": tfds.decode.SkipDecoding()}


# ----------------------------------------------------------------------------- directories

def _directory_source(directory: str, validation_fraction: float, num_examples: int | None,
                      labels: bool, skip_bad_files: bool) -> _Source:
    # One walk of the directory for both kinds of file.
    files = datasets._files(directory, datasets._TFRECORD_SUFFIXES + datasets._IMAGE_SUFFIXES)
    records = [path for path in files if path.lower().endswith(datasets._TFRECORD_SUFFIXES)]
    images = [path for path in files if path.lower().endswith(datasets._IMAGE_SUFFIXES)]
    if records and images:
        raise ValueError(f"dataset directory {directory!r} holds both TFRecord and image files; "
                         f"expected one kind")
    survey = _Survey()
    if records:
        kept, bad, num_classes = _check_tfrecords(records, num_examples, labels, survey)
        size = min(survey.count, num_examples or survey.count)
        base = tf.data.TFRecordDataset(kept).take(size)
        parts = _parts_by_index(base, size, validation_fraction)
        fetch = _example_parser(labels)
    else:
        slots, bad = _check_images(images, num_examples, survey)
        parts = _parts_by_slot(images, slots, validation_fraction)
        num_classes, fetch = 1, _read_image_file
    if bad and not skip_bad_files:
        raise ValueError(f"dataset directory {directory!r} has {_file_count(len(bad))} that cannot "
                         f"be read (fix or remove them, or skip them: skip_bad_files=True, "
                         f"--skip_bad_files); the first: {bad[0]}")
    if bad:
        warnings.warn(f"left out {_file_count(len(bad))} of {directory!r} that cannot be read; the "
                      f"first: {bad[0]}", stacklevel=4)
    if survey.count == 0:
        raise ValueError(f"dataset directory {directory!r} has no readable "
                         f"{'records' if records else 'images'}{' left' if bad else ''}; "
                         f"expected {datasets._DIRECTORY_HINT}")
    sizes = survey.sizes
    height, width = next(iter(sizes)) if len(sizes) == 1 else (None, None)
    return _Source(*parts, fetch, (height, width, survey.channels(directory)), num_classes,
                   sizes, tuple(bad))


def _file_count(count: int) -> str:
    return f"{count} file{'s' if count > 1 else ''}"


def _parts_by_index(base: tf.data.Dataset, size: int,
                    validation_fraction: float) -> tuple[_Part, _Part, _Part]:
    """Train, validation and test parts of `size` records by their index in `base`."""
    test_size = _interleaved_count(size, datasets._TEST_FRACTION)
    validation_size = _interleaved_count(size - test_size, validation_fraction)

    def part(which: int, part_size: int) -> _Part:
        def records():
            ds = base.enumerate().filter(lambda index, item: tf.equal(
                _assign(index, validation_fraction), which))
            return ds.map(lambda index, item: item).enumerate()

        return _Part(records, part_size)

    return (part(0, size - test_size - validation_size), part(1, validation_size),
            part(2, test_size))


def _parts_by_slot(paths: list[str], slots: list[int],
                   validation_fraction: float) -> tuple[_Part, _Part, _Part]:
    """Train, validation and test parts of the files `paths[i]` for `i` in `slots`, each in
    the part of its index `i`, so that leaving a file out moves no other file."""
    which = _assign(tf.constant(slots, tf.int64), validation_fraction).numpy() if slots else []

    def part(number: int) -> _Part:
        chosen = [paths[slot] for slot, part in zip(slots, which, strict=True) if part == number]
        return _Part(lambda: tf.data.Dataset.from_tensor_slices(
            tf.constant(chosen, tf.string)).enumerate(), len(chosen))

    return part(0), part(1), part(2)


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


def _example_parser(labels: bool):
    """`fetch` of TFRecord records: the encoded image and the label (0 without `labels`,
    whose records need no label)."""
    features = {"image": tf.io.FixedLenFeature([], tf.string)}
    if labels:
        features["label"] = tf.io.FixedLenFeature([], tf.int64)

    def parse(index, serialized):
        example = tf.io.parse_single_example(serialized, features)
        return example["image"], example.get("label", tf.constant(0, tf.int64))

    return parse


def _read_image_file(index, path):
    return tf.io.read_file(path), tf.constant(0, tf.int64)


# ----------------------------------------------------------------------------- checks

class _Survey:
    """What the check pass saw of the good images: how many, their distinct sizes and their
    channel counts, each with the first image that has it."""

    def __init__(self):
        self.count = 0
        self.sizes: dict[tuple[int, int], str] = {}
        self._channels: dict[int, tuple[int, str]] = {}

    def add(self, images: Iterable[tuple[tuple[int, int, int], str]]) -> None:
        for (height, width, channels), where in images:
            self.count += 1
            self.sizes.setdefault((height, width), where)
            seen, first = self._channels.get(channels, (0, where))
            self._channels[channels] = (seen + 1, first)

    def channels(self, directory: str) -> int:
        """The channels of every decoded image: colour if any image has it, alpha if all do;
        warns about the images that are converted."""
        found = self._channels
        colour = any(channels >= 3 for channels in found)
        alpha = all(channels in (2, 4) for channels in found)
        chosen = (3 if colour else 1) + alpha
        converted = [f"{count} {_CHANNEL_NAMES[channels]} (such as {where})"
                     for channels, (count, where) in sorted(found.items()) if channels != chosen]
        if converted:
            warnings.warn(f"{directory!r} mixes images with different channels; all are read "
                          f"as {_CHANNEL_NAMES[chosen]}, converting {', '.join(converted)}",
                          stacklevel=5)
        return chosen


_CHANNEL_NAMES = {1: "greyscale", 2: "greyscale+alpha", 3: "RGB", 4: "RGBA"}


def _check_images(paths: list[str], num_examples: int | None,
                  survey: _Survey) -> tuple[list[int], list[str]]:
    """Reads image files until `num_examples` good ones; returns the indices of the good ones
    and the bad ones as `'<path>: <what is wrong>'`."""
    slots, bad = [], []
    for slot, path in enumerate(paths):
        if num_examples is not None and len(slots) == num_examples:
            break
        try:
            with open(path, "rb") as f:
                shape = _image_shape(f.read())
        except (OSError, ValueError) as error:
            bad.append(f"{path}: {error}")
            continue
        slots.append(slot)
        survey.add([(shape, path)])
    return slots, bad


def _check_tfrecords(paths: list[str], num_examples: int | None, labels: bool,
                     survey: _Survey) -> tuple[list[str], list[str], int]:
    """Reads TFRecord files until `num_examples` good records; returns the good files, the bad
    ones as `'<path>, record <i>: <what is wrong>'` and the number of classes (1 + the
    largest label; 1 without `labels`).

    Raises:
        ValueError: With `labels`, for a record without a label or with a label outside
            0.._MAX_LABEL; unlike an unreadable record, these are not skipped.
    """
    kept, bad, largest = [], [], 0
    for path in paths:
        if num_examples is not None and survey.count >= num_examples:
            break
        limit = None if num_examples is None else num_examples - survey.count
        try:
            images, file_largest = _check_tfrecord_file(path, labels, limit)
        except _Unreadable as error:
            bad.append(str(error))
            continue
        kept.append(path)
        survey.add(images)
        largest = max(largest, file_largest)
    return kept, bad, largest + 1


class _Unreadable(ValueError):
    """A record that cannot be read."""


def _check_tfrecord_file(path: str, labels: bool, limit: int | None):
    """The image shapes (with record names) of the first `limit` records (all for None) of
    one TFRecord file, and their largest label."""
    images, largest = [], 0
    records = tf.data.TFRecordDataset(path)
    if limit is not None:
        records = records.take(limit)
    try:
        for batch in records.batch(_CHECK_BATCH).as_numpy_iterator():
            for serialized in batch:
                where = f"{path}, record {len(images)}"
                image, label = _read_example(serialized, labels, where)
                images.append((image, where))
                largest = max(largest, label)
    except tf.errors.OpError as error:
        raise _Unreadable(_framing_problem(path, error)) from None
    return images, largest


def _read_example(serialized: bytes, labels: bool, where: str) -> tuple[tuple[int, int, int], int]:
    """The image shape and the label (0 without `labels`) of one `tf.train.Example`."""
    try:
        feature = tf.train.Example.FromString(serialized).features.feature
    except DecodeError:
        raise _Unreadable(f"{where}: not a tf.train.Example") from None
    image = feature["image"] if "image" in feature else None
    if image is None or image.WhichOneof("kind") != "bytes_list" or len(
            image.bytes_list.value) != 1:
        raise _Unreadable(f"{where}: expected an 'image' feature holding one encoded PNG or "
                          f"JPEG image (a bytes_list of one value), got {_describe(image)}")
    try:
        shape = _image_shape(image.bytes_list.value[0])
    except ValueError as error:
        raise _Unreadable(f"{where}: {error}") from None
    if not labels:
        return shape, 0
    label = feature["label"] if "label" in feature else None
    if label is None or label.WhichOneof("kind") != "int64_list" or len(
            label.int64_list.value) != 1:
        raise ValueError(f"{where} has no class label: expected a 'label' feature holding one "
                         f"int64 (an int64_list of one value), got {_describe(label)}; the "
                         f"labels were asked for")
    value = label.int64_list.value[0]
    if not 0 <= value <= _MAX_LABEL:
        raise ValueError(f"{where} has the class label {value}; expected a label in "
                         f"0..{_MAX_LABEL} (the classes numbered 0, 1, 2, ...)")
    return shape, value


def _describe(feature: tf.train.Feature | None) -> str:
    kind = None if feature is None else feature.WhichOneof("kind")
    if kind is None:
        return "none" if feature is None else "an empty feature"
    return f"a {kind} of {len(getattr(feature, kind).value)} value(s)"


def _framing_problem(path: str, error: tf.errors.OpError) -> str:
    """What TFRecordDataset's error says is wrong with a file, with the record index."""
    with open(path, "rb") as f:
        data = f.read()
    found = re.search(r"(corrupted|truncated) record at (\d+)", error.message)
    if found is None:
        # TF's message without the function and op names it wraps around the reason.
        return f"{path}: {re.sub(_OP_NAMES, '', error.message)}"
    offset = int(found[2])
    if data.startswith(datasets._GZIP_MAGIC):
        what = "a gzip-compressed file; TFRecord files are read uncompressed (gunzip it)"
    elif offset == 0:
        what = "not a TFRecord file (its first record header is corrupt)"
    else:
        what = (f"{found[1]} at byte {offset} of {len(data)}"
                + (" (the file ends inside it)" if found[1] == "truncated" else
                   " (its header or data fails its CRC)"))
    return f"{path}, record {_record_at(data, offset)}: {what}"


def _record_at(data: bytes, offset: int) -> int:
    """The index of the TFRecord record that starts at byte `offset`: each record is a uint64
    length, a CRC of it, the data and a CRC of the data."""
    index, position = 0, 0
    while position < offset:
        position += 16 + struct.unpack_from("<Q", data, position)[0]
        index += 1
    return index


# ----------------------------------------------------------------------------- image headers

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_START = b"\xff\xd8"
# Samples per pixel of the PNG colour types (grey, RGB, palette, grey+alpha, RGBA), and the
# bit depths each allows.
_PNG_SAMPLES = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_PNG_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
# The seven Adam7 passes of an interlaced PNG: first column, first row, column and row steps.
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
          (0, 1, 1, 2))
# JPEG frame headers (SOF0-SOF15 but DHT, JPG and DAC, which share the range).
_JPEG_FRAMES = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# JPEG markers without a length: TEM and the restart markers.
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})
_JPEG_END, _JPEG_SCAN = b"\xff\xd9", 0xDA
# What other files start with, to say what a file is rather than what it is not.
_OTHER_FORMATS = ((b"GIF8", "a GIF image"), (b"BM", "a BMP image"),
                  (b"RIFF", "a RIFF file (WebP?)"), (b"II*\x00", "a TIFF image"),
                  (b"MM\x00*", "a TIFF image"), (b"\x1f\x8b", "gzip-compressed data"),
                  (b"PK\x03\x04", "a zip archive"))
_TEXT_BYTES = frozenset(range(0x20, 0x7F)) | frozenset(b"\t\n\r")


def _image_shape(data: bytes) -> tuple[int, int, int]:
    """The (height, width, channels) a PNG or JPEG file decodes to by default, checked to be
    whole: channels are 1 grey, 2 grey+alpha, 3 colour, 4 colour+alpha (TF's decoder's).

    Raises:
        ValueError: Saying what is wrong, for anything TF's decoder would fail on.
    """
    if data.startswith(_PNG_SIGNATURE):
        return _png_shape(data)
    if data.startswith(_JPEG_START):
        return _jpeg_shape(data)
    raise ValueError(f"expected a PNG or JPEG image, got {_what_is(data)}")


def _what_is(data: bytes) -> str:
    if not data:
        return "an empty file"
    for start, name in _OTHER_FORMATS:
        if data.startswith(start):
            return name
    head = data[:32]
    if _TEXT_BYTES.issuperset(head):
        return f"text ({head.decode()!r}{'...' if len(data) > len(head) else ''})"
    return f"bytes starting with {data[:8]!r}"


def _png_shape(data: bytes) -> tuple[int, int, int]:
    position, header, pixels, transparent = len(_PNG_SIGNATURE), None, [], False
    palette = False
    while True:
        if position + 12 > len(data):
            raise ValueError(f"truncated PNG: {len(data)} bytes, no IEND chunk at the end")
        length, kind = struct.unpack_from(">I4s", data, position)
        end = position + 12 + length
        if end > len(data):
            raise ValueError(f"truncated PNG: {len(data)} bytes, its {kind!r} chunk at byte "
                             f"{position} needs {end}")
        body = data[position + 8:end - 4]
        # Readers fail on a bad CRC in a critical chunk (an upper-case first letter) only.
        if kind[0] < 0x60 and zlib.crc32(kind + body) != int.from_bytes(data[end - 4:end],
                                                                          "big"):
            raise ValueError(f"corrupt PNG: the CRC of its {kind!r} chunk at byte {position} "
                             f"does not match")
        if header is None and (kind != b"IHDR" or length != 13):
            raise ValueError(f"corrupt PNG: expected an IHDR chunk of 13 bytes first, got "
                             f"{kind!r} of {length}")
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"PLTE":
            palette = True
        elif kind == b"tRNS":
            transparent = True
        elif kind == b"IDAT":
            pixels.append(body)
        elif kind == b"IEND":
            break
        position = end
    width, height, depth, colour, _, _, interlaced = header
    if not width or not height or depth not in _PNG_DEPTHS.get(colour, ()) or (
            colour == 3 and not palette):
        raise ValueError(f"corrupt PNG: {width}x{height}, colour type {colour}, bit depth "
                         f"{depth}{', no palette' if colour == 3 and not palette else ''}")
    bits = _PNG_SAMPLES[colour] * depth
    passes = _ADAM7 if interlaced else ((0, 0, 1, 1),)
    # Each row of each pass: a filter byte, then its pixels.
    expected = 0
    for x, y, dx, dy in passes:
        columns, rows = -(-(width - x) // dx), -(-(height - y) // dy)
        if columns > 0 and rows > 0:
            expected += rows * (1 + -(-columns * bits // 8))
    inflate = zlib.decompressobj()
    try:
        # One byte more than expected is enough to see that there is too much.
        found = len(inflate.decompress(b"".join(pixels), expected + 1))
    except zlib.error as error:
        raise ValueError(f"corrupt PNG: its pixel data does not inflate ({error})") from None
    if found != expected:
        raise ValueError(f"corrupt PNG: its pixel data inflates to {found} bytes"
                         f"{' or more' if found > expected else ''}, expected {expected} for "
                         f"{width}x{height}")
    # TF's decoder gives a palette image RGB, or RGBA with a transparency chunk.
    channels = (3 + transparent) if colour == 3 else _PNG_SAMPLES[colour]
    return height, width, channels


def _jpeg_shape(data: bytes) -> tuple[int, int, int]:
    position, frame = len(_JPEG_START), None
    while True:
        if position + 4 > len(data):
            raise ValueError(f"truncated JPEG: {len(data)} bytes, ending before its image data")
        if data[position] != 0xFF:
            raise ValueError(f"corrupt JPEG: expected a marker at byte {position}, got "
                             f"{data[position:position + 2]!r}")
        marker = data[position + 1]
        if marker == 0xFF:
            # A fill byte before a marker.
            position += 1
            continue
        if marker in _JPEG_STANDALONE:
            position += 2
            continue
        length = int.from_bytes(data[position + 2:position + 4], "big")
        end = position + 2 + length
        if length < 2 or end > len(data):
            raise ValueError(f"truncated JPEG: {len(data)} bytes, its segment at byte "
                             f"{position} needs {end}")
        if marker in _JPEG_FRAMES and length >= 8:
            frame = struct.unpack_from(">BHHB", data, position + 4)
        if marker == _JPEG_SCAN:
            break
        position = end
    if frame is None:
        raise ValueError("corrupt JPEG: no frame header (SOF) before its image data")
    _, height, width, components = frame
    if not height or not width or components not in (1, 3, 4):
        raise ValueError(f"unsupported JPEG: {width}x{height} with {components} components")
    # Entropy-coded data escapes 0xFF, so the end marker after the scan header ends the image.
    if data.find(_JPEG_END, end) < 0:
        raise ValueError(f"truncated JPEG: {len(data)} bytes, no end-of-image marker")
    # TF decodes CMYK (4 components) to RGB.
    return height, width, 1 if components == 1 else 3
