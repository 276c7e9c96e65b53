"""A directory of TFRecord or PNG/JPEG files (spec: its path), streamed (see
`tfp_flows.datasets.streamed`).

TFRecord files (`.tfrecord`, `.tfrecords`, `.tfrec`) hold `tf.train.Example` records with an
encoded PNG/JPEG `image` bytes feature and an optional int64 `label`; image files (`.png`,
`.jpg`, `.jpeg`) are unlabelled. Files are found at any depth: a directory reached twice
through symbolic links is walked once, and a file reached by several paths is one file.

Splits. A directory is split by record index (files in sorted order, records in file order):
record `i` is held out for a fraction `f` when `floor((i + 1) f) > floor(i f)`, which spreads
`floor(N f)` held-out records evenly over the `N`; first the test split (f = 0.2), then
validation among the remaining records. Each split of a TFRecord directory reads past the
other splits' records.

Checks. A directory is checked before `load` returns, so that training does not meet a bad
file: every image file and every TFRecord record that `num_examples` keeps (all by default) is
read once, its image checked without decoding a pixel (see
`tfp_flows.datasets.image_headers`). A file that cannot be read is named with the record and
what is wrong, in a `ValueError`, or with `skip_bad_files` left out and listed in
`Splits.skipped`: a skipped image file leaves its index empty, so every other file keeps its
split, while a skipped TFRecord file renumbers the records after it. The image shape is
decided by `crop` and `image_size` or else by all the images, which must then share one size;
the channels by all the images: RGB if any image has colour (greyscale ones are repeated),
grey otherwise, with alpha only if every image has it (a warning names the images
converted). With `labels`, every record needs one int64 `label` in 0..99999, and
`num_classes` is 1 + the largest.
"""

from __future__ import annotations

import math
import os
import re
import struct
import warnings
from collections.abc import Iterable

import tensorflow as tf
from google.protobuf.message import DecodeError

from tfp_flows.datasets import splits as splits_lib
from tfp_flows.datasets import streamed
from tfp_flows.datasets.image_headers import image_shape
from tfp_flows.datasets.options import LoadOptions
from tfp_flows.datasets.source import Source, register_source
from tfp_flows.datasets.splits import Splits

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_TFRECORD_SUFFIXES = (".tfrecord", ".tfrecords", ".tfrec")
_HINT = (f"TFRecord files ({', '.join(_TFRECORD_SUFFIXES)}) of tf.train.Example with an encoded "
         f"'image' (and optional int64 'label'), or image files ({', '.join(_IMAGE_SUFFIXES)})")
_GZIP_MAGIC = b"\x1f\x8b"
# Records read at once by the check of a TFRecord file.
_CHECK_BATCH = 1024
_OP_NAMES = re.compile(r"\{\{.*?\}\} | \[Op:.*")
# The largest class label taken: ImageNet-21k's 21,841 classes fit, while a label such as
# 2**40 (a corrupt record) would make a class embedding no memory holds.
_MAX_LABEL = 99_999


@register_source("directory")
class Directory(Source):
    """A directory of TFRecord or image files, checked, then streamed."""

    description = f"a directory of {_HINT}, searched recursively and streamed"

    def recognises(self, spec: str) -> bool:
        path = os.path.expanduser(spec)
        # Stops at the first such file: a directory of 200k images is walked in full once,
        # by `load`, not here as well.
        return os.path.isdir(path) and any(_paths(path, _TFRECORD_SUFFIXES + _IMAGE_SUFFIXES))

    def load(self, spec: str, options: LoadOptions) -> Splits:
        if options.stream is False:
            raise ValueError(f"{spec!r} is a directory of TFRecord or image files, which is "
                             f"always streamed; stream=False applies to TFDS datasets")
        directory = os.path.expanduser(spec)
        if not os.path.isdir(directory):
            raise ValueError(f"dataset directory {directory!r} does not exist; expected a "
                             f"directory of {_HINT}")
        return streamed.stream(_records(directory, options), spec, options)


def _paths(directory: str, suffixes: tuple[str, ...]):
    """The files under `directory`, at any depth, whose names end with `suffixes`, lazily.

    Symbolic links to directories are followed, but a directory already walked is not walked
    again, so a link to an ancestor (a loop) or a second link to one folder adds no file.
    """
    walked = set()
    for root, folders, names in os.walk(directory, followlinks=True):
        status = os.stat(root)
        if (status.st_dev, status.st_ino) in walked:
            folders.clear()
            continue
        walked.add((status.st_dev, status.st_ino))
        # Walked in sorted order, so which of two links to a folder is walked does not
        # depend on the order the file system lists entries in.
        folders.sort()
        yield from (path for path in (os.path.join(root, name) for name in sorted(names))
                    if path.lower().endswith(suffixes) and os.path.isfile(path))


def _files(directory: str, suffixes: tuple[str, ...]) -> list[str]:
    """The files under `directory`, at any depth, whose names end with `suffixes`, sorted.

    A file reached by several paths (through symbolic links) is listed once, by the first of
    its paths in sorted order, so that no file lands in two splits.
    """
    kept = {}
    for path in sorted(_paths(directory, suffixes)):
        kept.setdefault(os.path.realpath(path), path)
    return sorted(kept.values())


def _records(directory: str, options: LoadOptions) -> streamed.Records:
    num_examples, labels = options.num_examples, options.labels
    validation_fraction = options.validation_fraction
    # One walk of the directory for both kinds of file.
    files = _files(directory, _TFRECORD_SUFFIXES + _IMAGE_SUFFIXES)
    records = [path for path in files if path.lower().endswith(_TFRECORD_SUFFIXES)]
    images = [path for path in files if path.lower().endswith(_IMAGE_SUFFIXES)]
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
    if bad and not options.skip_bad_files:
        raise ValueError(f"dataset directory {directory!r} has {_file_count(len(bad))} that cannot "
                         f"be read (fix or remove them, or skip them: skip_bad_files=True, "
                         f"--skip_bad_files); the first: {bad[0]}")
    if bad:
        warnings.warn(f"left out {_file_count(len(bad))} of {directory!r} that cannot be read; the "
                      f"first: {bad[0]}", stacklevel=4)
    if survey.count == 0:
        raise ValueError(f"dataset directory {directory!r} has no readable "
                         f"{'records' if records else 'images'}{' left' if bad else ''}; "
                         f"expected {_HINT}")
    sizes = survey.sizes
    height, width = next(iter(sizes)) if len(sizes) == 1 else (None, None)
    return streamed.Records(*parts, fetch, (height, width, survey.channels(directory)),
                            num_classes, sizes, tuple(bad))

def _file_count(count: int) -> str:
    return f"{count} file{'s' if count > 1 else ''}"


def _parts_by_index(base: tf.data.Dataset, size: int,
                    validation_fraction: float) -> tuple[streamed.Part, ...]:
    """Train, validation and test parts of `size` records by their index in `base`."""
    test_size = _interleaved_count(size, splits_lib.TEST_FRACTION)
    validation_size = _interleaved_count(size - test_size, validation_fraction)

    def part(which: int, part_size: int) -> streamed.Part:
        def records():
            ds = base.enumerate().filter(lambda index, item: tf.equal(
                _assign(index, validation_fraction), which))
            return ds.map(lambda index, item: item).enumerate()

        return streamed.Part(records, part_size)

    return (part(0, size - test_size - validation_size), part(1, validation_size),
            part(2, test_size))


def _parts_by_slot(paths: list[str], slots: list[int],
                   validation_fraction: float) -> tuple[streamed.Part, ...]:
    """Train, validation and test parts of the files `paths[i]` for `i` in `slots`, each in
    the part of its index `i`, so that leaving a file out moves no other file."""
    which = _assign(tf.constant(slots, tf.int64), validation_fraction).numpy() if slots else []

    def part(number: int) -> streamed.Part:
        chosen = [paths[slot] for slot, part in zip(slots, which, strict=True) if part == number]
        return streamed.Part(lambda: tf.data.Dataset.from_tensor_slices(
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
    test = _held(index, splits_lib.TEST_FRACTION)
    # The index among the records that are not test records.
    rest = tf.cast(index, tf.float64) - tf.floor(
        (tf.cast(index, tf.float64) + 1.0) * splits_lib.TEST_FRACTION)
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
                shape = image_shape(f.read())
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
        shape = image_shape(image.bytes_list.value[0])
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
    if data.startswith(_GZIP_MAGIC):
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


