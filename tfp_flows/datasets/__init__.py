"""Datasets for density estimation, each read by a registered data source.

`load(spec)` returns train/validation/test `tf.data` pipelines that yield float32 batches of
`x`, or `(x, label)` batches with `labels=True` (class labels, the context of a conditional
flow). Discrete images are dequantized in pixel space: an integer pixel `x` in {0, ..., L-1}
becomes `x + u` with `u ~ Uniform[0, 1)`, so values lie in [0, L) and are *not* divided by L;
the models rescale with a bijector so that bits/dim is exact. Training batches are reshuffled
and re-dequantized every epoch, as a function of the seed and the epoch number
(`Splits.streamed`), so a run resumed mid-epoch sees the batches of an uninterrupted one;
validation and test batches use noise fixed by the seed, so two evaluations give identical
numbers. Everything is deterministic given `seed` (a pass over `Splits.train` draws its epoch
number from tf.data's random seed, which also depends on TF's global seed when
`tf.random.set_seed` was called).

The built-in sources, one module each, in the order they are asked (see
`tfp_flows.datasets.source` for the rule, explicit `"<source>:<argument>"` specs included):

- `idx`: a directory of MNIST-style IDX files (`tfp_flows.datasets.idx`);
- `npz`: an `.npz` file of uint8 images or float vectors (`tfp_flows.datasets.npz`);
- `directory`: a directory of TFRecord or PNG/JPEG files, checked and streamed
  (`tfp_flows.datasets.directory`);
- `toys`: the 2-D toys, `TOY_DATASETS` (`tfp_flows.datasets.toys`);
- `digits`: scikit-learn's 8x8 digits (`tfp_flows.datasets.digits`);
- `tfds`: any other name, a TFDS image dataset, streamed (`tfp_flows.datasets.tfds`).

A new source subclasses `ArraySource` (it returns `Arrays`) or `Source` (it builds `Splits`)
and registers itself::

    @datasets.register_source("csv")
    class CSV(datasets.ArraySource):
        description = "csv:<path> (a CSV file of float vectors, one per row)"

        def recognises(self, spec):
            return False  # reached only by its "csv:" prefix

        def read(self, spec, options):
            x = np.loadtxt(spec, delimiter=",", dtype=np.float32, ndmin=2)
            return datasets.carve_test(x, np.zeros(len(x), np.int64), options.seed)

    datasets.load("csv:/data/points.csv", batch_size=128)

`load_arrays` returns the raw arrays of an array source before dequantization.
"""

from __future__ import annotations

import dataclasses

import numpy as np

# isort: off
# The built-in sources register as they are imported: in the order they are asked in.
from tfp_flows.datasets import idx, npz, directory, toys, digits, tfds  # noqa: F401
# isort: on
from tfp_flows.datasets.arrays import Arrays, carve_test
from tfp_flows.datasets.options import DEFAULT_SHUFFLE_BUFFER, LoadOptions
from tfp_flows.datasets.source import (
    SOURCES,
    ArraySource,
    Source,
    describe_sources,
    register_source,
    resolve,
)
from tfp_flows.datasets.splits import Splits, Streamed
from tfp_flows.datasets.toys import TOY_DATASETS

__all__ = ["SOURCES", "TOY_DATASETS", "ArraySource", "Arrays", "LoadOptions", "Source",
           "Splits", "Streamed", "carve_test", "describe_sources", "load", "load_arrays",
           "register_source"]


def load(spec: str, *, batch_size: int = 64, data_dir: str | None = None,
         validation_fraction: float = 0.1, seed: int = 0,
         num_examples: int | None = None, labels: bool = False, stream: bool | None = None,
         num_bits: int = 8, image_size: int | None = None, crop: int | None = None,
         shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER, skip_bad_files: bool = False,
         dequantize: bool = True) -> Splits:
    """Loads a dataset as dequantized, batched train/validation/test pipelines.

    Args:
        spec: What to load, read by the first registered source that recognises it (see the
            module docstring; `describe_sources()` lists them): one of `TOY_DATASETS`;
            `'digits'` (scikit-learn's 8x8 digits, 17 levels); a directory of MNIST-style IDX
            files (`train-images-idx3-ubyte`, `train-labels-idx1-ubyte`,
            `t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte`, each optionally gzipped); a
            `.npz` file with `x_train`, `x_test` (optionally `y_train`, `y_test`) holding
            uint8 images or float (N, D) vectors; a directory of TFRecord files
            (`.tfrecord`, `.tfrecords`, `.tfrec`) of `tf.train.Example` with an encoded
            PNG/JPEG `image` bytes feature and an optional int64 `label`; a directory of
            `.png`/`.jpg`/`.jpeg` files (searched recursively, unlabelled); any other name,
            taken as a TFDS dataset with an `image` feature (e.g. `'mnist'`); or
            `'<source>:<argument>'` for the registered source of that name.
        batch_size: Examples per batch.
        data_dir: TFDS data directory (TFDS names only).
        validation_fraction: Fraction of the training examples held out for validation,
            in (0, 1).
        seed: Non-negative seed for sampling, splitting, shuffling and dequantization.
        num_examples: If given, keep at most this many examples in total (see `load_arrays`).
        labels: Yield `(x, label)` batches: the class labels of `load_arrays` (the mixture
            component for toys). The examples, their order and their noise are those of
            `labels=False`.
        stream: Stream the data (see `tfp_flows.datasets.streamed`); None streams TFDS
            datasets and TFRecord/image directories and reads the other sources into arrays;
            False reads a TFDS dataset into arrays (split as `load_arrays` does).
        num_bits: Streamed sources: keep the high `num_bits` bits of each 8-bit pixel, so
            `num_levels` is `2**num_bits` (Glow's CelebA used 5).
        image_size: Streamed sources: resize the images to `image_size` x `image_size`.
        crop: Streamed sources: first crop the central `crop` x `crop` pixels.
        shuffle_buffer: Streamed sources: encoded training records held for shuffling.
        skip_bad_files: Directories of TFRecord or image files: leave out the files that
            cannot be read (listed in `Splits.skipped`) instead of refusing the directory.
        dequantize: Add uniform noise to discrete images (the default). False yields the
            integer pixel values themselves (as float32), for a flow that dequantizes them
            itself (`dequantization="variational"`, see `tfp_flows.dequantizers`); continuous
            data are the same either way.

    Returns:
        The three pipelines with the event shape, number of levels and number of classes;
        `name` is `spec` as given.

    Raises:
        ValueError: For invalid arguments, a spec no source recognises (the error lists the
            sources), missing or malformed files, a TFDS dataset that is not prepared and
            cannot be downloaded, fewer training examples than `batch_size`, with
            `labels=True`, negative labels or fewer than 2 classes, or streaming options
            given for an array source. For a streamed directory, checked as a whole before
            anything is read for training (see `tfp_flows.datasets.directory`): a file that
            cannot be read (named with the record and what is wrong), images of several sizes
            without `image_size` or `crop`, a `crop` larger than an image, and with
            `labels=True` a record without a label or a label out of range.
    """
    options = LoadOptions(batch_size=batch_size, data_dir=data_dir,
                          validation_fraction=validation_fraction, seed=seed,
                          num_examples=num_examples, labels=labels, stream=stream,
                          num_bits=num_bits, image_size=image_size, crop=crop,
                          shuffle_buffer=shuffle_buffer, skip_bad_files=skip_bad_files,
                          dequantize=dequantize)
    source, argument = resolve(spec)
    splits = source.load(argument, options)
    return splits if splits.name == spec else dataclasses.replace(splits, name=spec)


def load_arrays(spec: str, *, data_dir: str | None = None, seed: int = 0,
                num_examples: int | None = None) -> dict[str, np.ndarray]:
    """Loads the raw train/test arrays of a dataset, before dequantization.

    Args:
        spec: A dataset spec of an array source (not a TFRecord or image directory), as for
            `load`.
        data_dir: TFDS data directory (TFDS names only).
        seed: Non-negative seed for toy sampling and for carving a test split where the
            source has none (toys, digits and TFDS datasets without a `test` split hold out
            20%).
        num_examples: If given, keep at most this many examples in total, shared between
            train and test in proportion to their sizes (the leading examples of each).
            For toys it is the number of points sampled (default 20000).

    Returns:
        `x_train`, `y_train`, `x_test`, `y_test`. Images are integer `(N, H, W, C)` arrays
        (uint8; digits holds values 0..16), vectors are float32 `(N, D)`; labels are int64
        `(N,)`: the class, the mixture component for toys, or zeros where the source has no
        labels.

    Raises:
        ValueError: As for `load`, and for a spec read by a source that only streams.
    """
    options = LoadOptions(data_dir=data_dir, seed=seed, num_examples=num_examples)
    source, argument = resolve(spec)
    if not isinstance(source, ArraySource):
        raise ValueError(f"load_arrays reads array sources; {spec!r} is read by the "
                         f"{source.registered_name} source, which streams it: use load")
    return source.arrays(argument, options).as_dict()
