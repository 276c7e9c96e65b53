"""Streamed image datasets: records of encoded images read, decoded and dequantized in a
`tf.data` pipeline, never held in memory.

A streamed source (TFDS datasets, directories of TFRecord or PNG/JPEG files) hands `stream`
its `Records`: for each split a function that yields `(index, item)` pairs and their count,
and a `fetch(index, item)` that gives the encoded image and its int64 label. Nothing but a
shuffle buffer of encoded records is held in memory: each split decodes the images,
optionally center-crops them to `crop` x `crop` and resizes them to `image_size` x
`image_size`, keeps their `num_bits` high bits (`x // 2**(8 - num_bits)`, so
`L = 2**num_bits` levels), dequantizes them (`x + u`, values in [0, L)) and batches them, with
`AUTOTUNE` parallel maps and prefetching.

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
from collections.abc import Callable

import tensorflow as tf

from tfp_flows.datasets import splits as splits_lib
from tfp_flows.datasets.dequantization import dequantize
from tfp_flows.datasets.options import MAX_BITS, LoadOptions
from tfp_flows.datasets.splits import Splits, Streamed

# Shuffle seeds of the epochs: (seed, epoch) mixed into one int64.
_EPOCH_SEED_STRIDE = 1_000_003


@dataclasses.dataclass(frozen=True)
class Part:
    """The records of one split: `records()` yields `(index, item)`, index from 0 (see
    `Records.fetch` for the item), and `size` counts them."""

    records: Callable[[], tf.data.Dataset]
    size: int


@dataclasses.dataclass(frozen=True)
class Records:
    """The three parts of a streamed dataset, with what decoding needs: `fetch(index, item)`
    gives a record's encoded image and its int64 label."""

    train: Part
    validation: Part
    test: Part
    fetch: Callable
    image_shape: tuple[int | None, int | None, int]
    num_classes: int
    # The distinct image sizes (height, width), each with an image that has it; empty when
    # unknown (TFDS).
    sizes: dict[tuple[int, int], str] = dataclasses.field(default_factory=dict)
    skipped: tuple[str, ...] = ()


def stream(records: Records, name: str, options: LoadOptions) -> Splits:
    """The streamed, dequantized, batched pipelines of `records`, as `Splits`."""
    batch_size, seed, labels = options.batch_size, options.seed, options.labels
    if labels and records.num_classes < 2:
        raise ValueError(f"{name!r} has no class labels to condition on (every label is 0)")
    event_shape = _event_shape(name, records, options.crop, options.image_size)
    if records.train.size < batch_size:
        raise ValueError(
            f"{name!r} leaves {records.train.size} training examples after holding out "
            f"{records.validation.size} for validation, fewer than batch_size={batch_size}")
    decode = _decoder(records.fetch, event_shape, options.crop, options.image_size,
                      options.num_bits, options.dequantize)
    steps_per_epoch = records.train.size // batch_size
    base_key = tf.constant([seed, splits_lib.TRAIN_SALT], tf.int64)

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
        ds = records.train.records().shard(shards, shard)
        if epoch is None:
            ds = ds.shuffle(options.shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
            draws = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
            ds = tf.data.Dataset.zip(ds, draws).map(lambda record, draw: (
                *record, tf.random.experimental.stateless_fold_in(base_key, draw)))
        else:
            # Python ints: a seed tensor fails in shuffle when TF's global seed is 0.
            ds = ds.shuffle(options.shuffle_buffer, seed=seed * _EPOCH_SEED_STRIDE + epoch,
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

    return Splits(
        train=epoch_batches(None).prefetch(tf.data.AUTOTUNE),
        validation=_eval_batches(records.validation, decode, batch_size, seed,
                                 splits_lib.VALIDATION_SALT, labels),
        test=_eval_batches(records.test, decode, batch_size, seed, splits_lib.TEST_SALT,
                           labels),
        event_shape=event_shape, num_levels=2 ** options.num_bits, name=name,
        num_classes=records.num_classes,
        streamed=Streamed(steps_per_epoch=steps_per_epoch, train_batches=train_batches),
        skipped=records.skipped)


def _event_shape(name: str, records: Records, crop: int | None,
                 image_size: int | None) -> tuple[int, int, int]:
    """The shape of the images after cropping and resizing; refuses a crop larger than an
    image, and images of several sizes given neither `crop` nor `image_size`."""
    height, width, channels = records.image_shape
    if crop is not None:
        smallest = min(records.sizes, key=min, default=None)
        if smallest is not None and crop > min(smallest):
            raise ValueError(f"crop={crop} is larger than the {smallest[0]}x{smallest[1]} "
                             f"images of {name!r} (such as {records.sizes[smallest]}); "
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
                           enumerate(list(records.sizes.items())[:2]))
        raise ValueError(f"{name!r} has images of varying size{examples}; pass image_size (and "
                         f"optionally crop) to give them one")
    return height, width, channels


def _output(ds: tf.data.Dataset, labels: bool) -> tf.data.Dataset:
    """`(x, label)` examples as they are with `labels`, else `x` alone."""
    return ds if labels else ds.map(lambda x, label: x)


def _eval_batches(part: Part, decode, batch_size: int, seed: int, salt: int,
                  labels: bool) -> tf.data.Dataset:
    key = tf.constant([seed, salt], tf.int64)
    ds = part.records().map(lambda index, item: decode(index, item, key),
                            num_parallel_calls=tf.data.AUTOTUNE)
    return _output(ds, labels).batch(batch_size).prefetch(tf.data.AUTOTUNE)


def _decoder(fetch, event_shape: tuple[int, int, int], crop: int | None,
             image_size: int | None, num_bits: int, dequantize_pixels: bool = True):
    """`decode(index, item, key)`: the dequantized image of a record and its label, the noise
    keyed by `key` folded with the record's index (or, unless `dequantize_pixels`, the
    integer pixels as float32)."""
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
        x = tf.cast(x, tf.int32) // 2 ** (MAX_BITS - num_bits)
        if not dequantize_pixels:
            return tf.cast(x, tf.float32), label
        x = dequantize(x, tf.random.experimental.stateless_fold_in(key, index))
        return x, label

    return decode
