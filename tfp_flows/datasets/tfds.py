"""TFDS image datasets (spec: a TFDS name such as "mnist" or "celeb_a", or "tfds:<name>"),
with a uint8 `image` feature and an optional `label`; prepared in `data_dir` or downloaded.

Streamed by default (see `tfp_flows.datasets.streamed`): the official `test` split is kept
and the *last* `validation_fraction` of `train` is held out for validation, by TFDS split
slicing on the example index (`train[:n]`, `train[n:m]`); without a `test` split the last 20%
of `train` is the test split and validation comes just before it. With `stream=False` the
dataset is read into arrays instead (images of one size only), split as array sources are.
"""

from __future__ import annotations

import os
import socket

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from tfp_flows.datasets import splits as splits_lib
from tfp_flows.datasets import streamed
from tfp_flows.datasets.arrays import Arrays, carve_test
from tfp_flows.datasets.options import LoadOptions
from tfp_flows.datasets.source import ArraySource, describe_sources, is_path_like, register_source
from tfp_flows.datasets.splits import Splits

# TFDS hosts most of its data here; if this host is unreachable a download cannot succeed.
_PROBE_ADDRESS = ("storage.googleapis.com", 443)
_PROBE_TIMEOUT_S = 2.0
_READ_BATCH = 1024
_LEVELS = 256
_SKIP_IMAGE = {"image": tfds.decode.SkipDecoding()}


def network_available() -> bool:
    """Whether TFDS's download host answers a single TCP connect within a short timeout."""
    try:
        socket.create_connection(_PROBE_ADDRESS, timeout=_PROBE_TIMEOUT_S).close()
    except OSError:
        return False
    return True


@register_source("tfds")
class TFDS(ArraySource):
    """A TFDS image dataset; asked last, as it takes any name that is not a path."""

    description = ("a TFDS image dataset name such as 'mnist' (streamed; prepared in data_dir "
                   "or downloaded)")
    fallback = True

    def recognises(self, spec: str) -> bool:
        return not is_path_like(spec) and not os.path.exists(os.path.expanduser(spec))

    def load(self, spec: str, options: LoadOptions) -> Splits:
        if options.stream is False:
            return super().load(spec, options)
        return streamed.stream(_records(_builder(spec, options.data_dir), options), spec,
                               options)

    def read(self, spec: str, options: LoadOptions) -> Arrays:
        builder = _builder(spec, options.data_dir)
        if None in builder.info.features["image"].shape:
            raise ValueError(f"TFDS dataset {spec!r} has images of varying size; stream it "
                             f"(stream=None) with image_size to read it")
        splits = builder.info.splits
        num_examples = options.num_examples
        if "test" not in splits:
            keep = "" if num_examples is None else f"[:{num_examples}]"
            x, y = _read_split(builder, f"train{keep}")
            return carve_test(x, y, options.seed, _LEVELS)
        keep_train, keep_test = splits_lib.split_sizes(
            num_examples, splits["train"].num_examples, splits["test"].num_examples)
        x_train, y_train = _read_split(builder, f"train[:{keep_train}]")
        x_test, y_test = _read_split(builder, f"test[:{keep_test}]")
        return Arrays(x_train, x_test, y_train, y_test, _LEVELS)


def _builder(name: str, data_dir: str | None) -> tfds.core.DatasetBuilder:
    """The builder of a TFDS image dataset, prepared (downloaded first if need be).

    Raises:
        ValueError: For an unknown name, a dataset without a uint8 `image` feature, or one
            that is not prepared in `data_dir` when the network is unreachable.
    """
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.DatasetNotFoundError:
        raise ValueError(f"unknown dataset {name!r}; expected {describe_sources()} (a spec "
                         f"SOURCE:ARGUMENT picks the source)") from None
    features = builder.info.features
    image = features["image"] if "image" in features else None
    if image is None or image.dtype != tf.uint8:
        raise ValueError(f"TFDS dataset {name!r} must have a uint8 'image' feature, got "
                         f"features {list(features.keys())}")
    if not builder.is_prepared():
        if not network_available():
            raise ValueError(
                f"TFDS dataset {name!r} is not prepared in {builder.data_dir_root} and could not "
                f"be downloaded: TFDS needs the network to download and prepare it, and there "
                f"is none; prepare it in a data_dir elsewhere, or point the loader at a local "
                f"dataset: {describe_sources()}")
        builder.download_and_prepare()
    return builder


def _read_split(builder: tfds.core.DatasetBuilder, split: str) -> tuple[np.ndarray, np.ndarray]:
    has_label = "label" in builder.info.features
    images, labels = [], []
    # Batched reads rather than batch_size=-1, which aborts the process (std::length_error) on
    # tfds.testing.mock_data datasets.
    for batch in tfds.as_numpy(builder.as_dataset(split=split).batch(_READ_BATCH)):
        images.append(batch["image"])
        labels.append(batch["label"] if has_label else np.zeros(len(batch["image"])))
    return np.concatenate(images), np.concatenate(labels).astype(np.int64)


def _records(builder: tfds.core.DatasetBuilder, options: LoadOptions) -> streamed.Records:
    """The streamed records of a prepared TFDS dataset, split as the module docstring says."""
    splits = builder.info.splits
    num_examples, validation_fraction = options.num_examples, options.validation_fraction
    # Split sizes come from the prepared metadata; when it lacks them (as with
    # tfds.testing.mock_data) one streamed pass counts the training examples.
    num_train = (splits["train"].num_examples if "train" in splits else
                 int(builder.as_dataset(split="train", decoders=_SKIP_IMAGE).reduce(
                     tf.constant(0, tf.int64), lambda count, _: count + 1)))
    if "test" in splits:
        keep_train, keep_test = splits_lib.split_sizes(num_examples, num_train,
                                                       splits["test"].num_examples)
        fit_end = keep_train - splits_lib.held_out(keep_train, validation_fraction)
        slices = {"train": f"train[:{fit_end}]",
                  "validation": f"train[{fit_end}:{keep_train}]",
                  "test": f"test[:{keep_test}]"}
        sizes = {"train": fit_end, "validation": keep_train - fit_end, "test": keep_test}
    else:
        keep = num_train if num_examples is None else min(num_examples, num_train)
        rest = keep - min(keep - 1, splits_lib.held_out(keep, splits_lib.TEST_FRACTION))
        fit_end = rest - splits_lib.held_out(rest, validation_fraction)
        slices = {"train": f"train[:{fit_end}]", "validation": f"train[{fit_end}:{rest}]",
                  "test": f"train[{rest}:{keep}]"}
        sizes = {"train": fit_end, "validation": rest - fit_end, "test": keep - rest}
    features = builder.info.features
    has_label = "label" in features

    def part(split: str) -> streamed.Part:
        def records():
            # Encoded images: decoding happens in our own map, after sharding.
            ds = builder.as_dataset(split=slices[split], shuffle_files=False,
                                    decoders=_SKIP_IMAGE)
            # take() holds a split to its size where slicing is not honoured (mock_data).
            return ds.take(sizes[split]).map(lambda e: (
                e["image"], tf.cast(e["label"], tf.int64) if has_label
                else tf.constant(0, tf.int64))).enumerate()

        return streamed.Part(records, sizes[split])

    def fetch(index, item):
        return item

    num_classes = int(getattr(features["label"], "num_classes", 0) or 0) if has_label else 0
    return streamed.Records(part("train"), part("validation"), part("test"), fetch,
                            tuple(features["image"].shape), max(num_classes, 1))
