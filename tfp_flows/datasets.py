"""Datasets for density estimation: 2-D toys, sklearn digits, IDX/.npz files and TFDS images.

`load` returns train/validation/test `tf.data` pipelines that yield float32 batches of `x`, or
`(x, label)` batches with `labels=True` (class labels, the context of a conditional flow).
Discrete images are dequantized in pixel space: an integer pixel `x` in {0, ..., L-1} becomes
`x + u` with `u ~ Uniform[0, 1)`, so values lie in [0, L) and are *not* divided by L; the
models rescale with a bijector so that bits/dim is exact. Training batches are reshuffled
and re-dequantized every epoch, as a function of the seed and the epoch number
(`Splits.streamed`), so a run resumed mid-epoch sees the batches of an uninterrupted one;
validation and test batches use noise fixed by the seed, so two evaluations give identical
numbers. Everything is deterministic given `seed` (a pass over `Splits.train` draws its epoch
number from tf.data's random seed, which also depends on TF's global seed when
`tf.random.set_seed` was called).

`load_arrays` returns the raw arrays before dequantization.

TFDS datasets and directories of TFRecord or PNG/JPEG files are streamed (see
`tfp_flows.streaming`): decoded, cropped, resized, reduced to `num_bits` bits and dequantized
inside the pipeline, never held in memory. Toys, digits, IDX and .npz sources are arrays
(`stream=False` reads a TFDS dataset into arrays too).
"""

from __future__ import annotations

import dataclasses
import gzip
import math
import numbers
import os
import socket
import zipfile
import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

if TYPE_CHECKING:
    from tfp_flows.streaming import Streamed

__all__ = ["TOY_DATASETS", "Splits", "load", "load_arrays"]

TOY_DATASETS: tuple[str, ...] = (
    "two_moons", "circles", "eight_gaussians", "checkerboard", "pinwheel", "two_spirals")

_DEFAULT_TOY_EXAMPLES = 20_000
# Fraction held out as the test split when a source has no official one (toys, digits, TFDS).
_TEST_FRACTION = 0.2
_DIGITS_LEVELS = 17
_BYTE_LEVELS = 256

# Independent numpy streams derived from the user's seed, so that e.g. changing how toys are
# sampled does not change which examples land in validation.
_SAMPLE_STREAM, _TEST_SPLIT_STREAM, _VALIDATION_STREAM = 0, 1, 2
# Salts for the stateless dequantization keys of each split, and for the training order of
# array sources.
_TRAIN_SALT, _VALIDATION_SALT, _TEST_SALT, _ORDER_SALT = 0, 1, 2, 3

_IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
_IDX_DTYPES = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_GZIP_MAGIC = b"\x1f\x8b"
# How a zip archive, hence an .npz file, starts (a local file header).
_ZIP_MAGIC = b"PK\x03\x04"

# TFDS hosts most of its data here; if this host is unreachable a download cannot succeed.
_PROBE_ADDRESS = ("storage.googleapis.com", 443)
_PROBE_TIMEOUT_S = 2.0
_TFDS_READ_BATCH = 1024
_DEFAULT_SHUFFLE_BUFFER = 10_000

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_TFRECORD_SUFFIXES = (".tfrecord", ".tfrecords", ".tfrec")
# What a dataset directory may hold.
_DIRECTORY_HINT = (f"MNIST-style IDX files, TFRecord files ({', '.join(_TFRECORD_SUFFIXES)}) "
                   f"of tf.train.Example with an encoded 'image' (and optional int64 'label'), "
                   f"or image files ({', '.join(_IMAGE_SUFFIXES)})")
_LOCAL_HINT = ("a directory of IDX, TFRecord or image files, an .npz file with "
               "x_train/x_test, or a TFDS data_dir holding the prepared dataset")


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
        name: The dataset name passed to `load`.
        num_classes: 1 + the largest class label of the train and test examples (1 for a
            source without labels); the `num_classes` of a flow conditioned on the labels.
            A streamed TFDS dataset gives its label feature's number of classes; a streamed
            directory read without `labels` gives 1 (its labels are not read).
        streamed: The training batches by epoch number (see `tfp_flows.streaming.Streamed`),
            for streamed and array sources alike: what a run resumed mid-epoch trains on.
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


def load(name: str, *, batch_size: int = 64, data_dir: str | None = None,
         validation_fraction: float = 0.1, seed: int = 0,
         num_examples: int | None = None, labels: bool = False, stream: bool | None = None,
         num_bits: int = 8, image_size: int | None = None, crop: int | None = None,
         shuffle_buffer: int = _DEFAULT_SHUFFLE_BUFFER, skip_bad_files: bool = False) -> Splits:
    """Loads a dataset as dequantized, batched train/validation/test pipelines.

    Args:
        name: One of `TOY_DATASETS`; `'digits'` (scikit-learn's 8x8 digits, 17 levels); a
            directory of MNIST-style IDX files (`train-images-idx3-ubyte`,
            `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte`,
            each optionally gzipped); a `.npz` file with `x_train`, `x_test` (optionally
            `y_train`, `y_test`) holding uint8 images or float (N, D) vectors; a directory
            of TFRecord files (`.tfrecord`, `.tfrecords`, `.tfrec`) of `tf.train.Example`
            with an encoded PNG/JPEG `image` bytes feature and an optional int64 `label`;
            a directory of `.png`/`.jpg`/`.jpeg` files (searched recursively, unlabelled);
            or any other name, taken as a TFDS dataset with an `image` feature (e.g.
            `'mnist'`).
        batch_size: Examples per batch.
        data_dir: TFDS data directory (TFDS names only).
        validation_fraction: Fraction of the training examples held out for validation,
            in (0, 1).
        seed: Non-negative seed for sampling, splitting, shuffling and dequantization.
        num_examples: If given, keep at most this many examples in total (see `load_arrays`).
        labels: Yield `(x, label)` batches: the class labels of `load_arrays` (the mixture
            component for toys). The examples, their order and their noise are those of
            `labels=False`.
        stream: Stream the data (see `tfp_flows.streaming`); None streams TFDS datasets and
            TFRecord/image directories and reads the other sources into arrays; False reads
            a TFDS dataset into arrays (split as `load_arrays` does).
        num_bits: Streamed sources: keep the high `num_bits` bits of each 8-bit pixel, so
            `num_levels` is `2**num_bits` (Glow's CelebA used 5).
        image_size: Streamed sources: resize the images to `image_size` x `image_size`.
        crop: Streamed sources: first crop the central `crop` x `crop` pixels.
        shuffle_buffer: Streamed sources: encoded training records held for shuffling.
        skip_bad_files: Directories of TFRecord or image files: leave out the files that
            cannot be read (listed in `Splits.skipped`) instead of refusing the directory.

    Returns:
        The three pipelines with the event shape, number of levels and number of classes.

    Raises:
        ValueError: For invalid arguments, unknown names, missing or malformed files, a TFDS
            dataset that is not prepared and cannot be downloaded, fewer training examples
            than `batch_size`, with `labels=True`, negative labels or fewer than 2 classes,
            or streaming options that are out of range or given for an array source. For a
            streamed directory, checked as a whole before anything is read for training (see
            `tfp_flows.streaming`): a file that cannot be read (named with the record and
            what is wrong), images of several sizes without `image_size` or `crop`, a
            `crop` larger than an image, and with `labels=True` a record without a label or
            a label out of range.
    """
    if not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(
            f"validation_fraction must be in the open interval (0, 1), got {validation_fraction!r}")
    if _streams(name, stream):
        # Imported here: tfp_flows.streaming builds on this module.
        from tfp_flows import streaming

        _check_seed_and_size(seed, num_examples)
        return streaming.load(name, batch_size=batch_size, data_dir=data_dir,
                              validation_fraction=validation_fraction, seed=seed,
                              num_examples=num_examples, labels=labels, num_bits=num_bits,
                              image_size=image_size, crop=crop, shuffle_buffer=shuffle_buffer,
                              skip_bad_files=skip_bad_files)
    given = [f"{option}={value!r}" for option, value, default in
             (("num_bits", num_bits, 8), ("image_size", image_size, None), ("crop", crop, None),
              ("skip_bad_files", skip_bad_files, False))
             if value != default]
    if given:
        raise ValueError(f"{', '.join(given)} applies to streamed sources only (TFDS datasets, "
                         f"directories of TFRecord or image files), not to {name!r}")
    arrays, num_levels = _load_source(name, data_dir=data_dir, seed=seed,
                                      num_examples=num_examples)
    x_train, y_train, y_test = arrays["x_train"], arrays["y_train"], arrays["y_test"]
    num_classes = int(max(y_train.max(initial=0), y_test.max(initial=0))) + 1
    if labels and min(y_train.min(initial=0), y_test.min(initial=0)) < 0:
        raise ValueError(f"{name!r} has negative class labels; labels must be 0, 1, 2, ...")
    if labels and num_classes < 2:
        raise ValueError(f"{name!r} has no class labels to condition on (every label is 0)")
    # The columns each pipeline gathers: x, and the labels when asked for.
    train = (x_train, y_train) if labels else (x_train,)
    test = (arrays["x_test"], y_test) if labels else (arrays["x_test"],)
    num_train = len(x_train)
    num_validation = _held_out(num_train, validation_fraction)
    if num_train - num_validation < batch_size:
        raise ValueError(
            f"{name!r} leaves {num_train - num_validation} training examples after holding out "
            f"{num_validation} for validation, fewer than batch_size={batch_size}")
    order = np.random.default_rng([seed, _VALIDATION_STREAM]).permutation(num_train)
    validation_index = np.sort(order[:num_validation])
    train_index = np.sort(order[num_validation:])
    train_batches, by_epoch = _train_epochs([a[train_index] for a in train], batch_size, seed,
                                            num_levels)
    return Splits(
        train=train_batches,
        validation=_eval_pipeline([a[validation_index] for a in train], batch_size, seed,
                                  _VALIDATION_SALT, num_levels),
        test=_eval_pipeline(test, batch_size, seed, _TEST_SALT, num_levels),
        event_shape=tuple(int(d) for d in x_train.shape[1:]),
        num_levels=num_levels,
        name=name,
        num_classes=num_classes,
        streamed=by_epoch,
    )


def load_arrays(name: str, *, data_dir: str | None = None, seed: int = 0,
                num_examples: int | None = None) -> dict[str, np.ndarray]:
    """Loads the raw train/test arrays of a dataset, before dequantization.

    Args:
        name: A dataset name or path, as for `load`.
        data_dir: TFDS data directory (TFDS names only).
        seed: Non-negative seed for toy sampling and for carving a test split where the
            source has none (toys, digits and TFDS datasets without a `test` split hold out
            20%).
        num_examples: If given, keep at most this many examples in total, shared between
            train and test in proportion to their sizes (the leading examples of each).
            For toys it is the number of points sampled (default 20000).

    Returns:
        `x_train`, `y_train`, `x_test`, `y_test`. Images are uint8 `(N, H, W, C)` arrays (digits
        holds values 0..16), vectors are float32 `(N, D)`; labels are int64 `(N,)`: the class,
        the mixture component for toys, or zeros where the source has no labels.

    Raises:
        ValueError: As for `load`.
    """
    return _load_source(name, data_dir=data_dir, seed=seed, num_examples=num_examples)[0]


def _streams(name: str, stream: bool | None) -> bool:
    """Whether `load` streams `name`: TFDS names and TFRecord/image directories, by default."""
    path = os.path.expanduser(name)
    if name in _TOY_SAMPLERS or name == "digits" or (
            not os.path.isdir(path) and (os.path.exists(path) or _looks_like_path(name))):
        streamable = False
    elif os.path.isdir(path):
        # Stops at the first such file: a directory of 200k images is walked in full once,
        # by the streaming source, not here as well.
        streamable = any(_paths(path, _TFRECORD_SUFFIXES + _IMAGE_SUFFIXES))
        if not streamable and not any(
                os.path.exists(os.path.join(path, base + suffix))
                for base in _IDX_FILES.values() for suffix in ("", ".gz")):
            raise ValueError(f"dataset directory {path!r} holds no dataset files; expected "
                             f"{_DIRECTORY_HINT}")
    else:
        streamable = True
    if stream and not streamable:
        raise ValueError(f"stream=True applies to TFDS datasets and directories of TFRecord or "
                         f"image files, not to {name!r}; pass stream=None")
    return streamable and stream is not False


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


def _check_seed_and_size(seed: int, num_examples: int | None) -> None:
    if not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if num_examples is not None and (
            not isinstance(num_examples, numbers.Integral) or num_examples < 2):
        raise ValueError(f"num_examples must be None or an integer >= 2, got {num_examples!r}")


def _load_source(name: str, *, data_dir: str | None, seed: int,
                 num_examples: int | None) -> tuple[dict[str, np.ndarray], int | None]:
    """Dispatches on `name`; returns the arrays of `load_arrays` and the number of levels."""
    _check_seed_and_size(seed, num_examples)
    if name in _TOY_SAMPLERS:
        return _toy_arrays(name, seed, num_examples), None
    if name == "digits":
        return _digits_arrays(seed, num_examples), _DIGITS_LEVELS
    path = os.path.expanduser(name)
    if os.path.exists(path) or _looks_like_path(name):
        if not os.path.exists(path):
            raise ValueError(f"dataset path {path!r} does not exist; expected {_LOCAL_HINT}")
        if os.path.isdir(path):
            return _truncate(_idx_arrays(path), num_examples), _BYTE_LEVELS
        return _npz_arrays(path, num_examples)
    return _tfds_arrays(name, data_dir, seed, num_examples), _BYTE_LEVELS


def _looks_like_path(name: str) -> bool:
    # TFDS names may contain '/' ("cifar10/3.0.2"), so only unambiguous path forms count.
    return name.endswith(".npz") or name.startswith(("/", "./", "../", "~"))


# ----------------------------------------------------------------------------- toy samplers
# The classic 2-D densities of the RealNVP/FFJORD toy experiments, at FFJORD's scale (roughly
# [-4, 4]^2). Each sampler draws the mixture component iid per point and returns it as label.

def _two_moons(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    y = rng.integers(0, 2, n)
    t = rng.uniform(0.0, np.pi, n)
    upper = np.stack([np.cos(t), np.sin(t)], axis=1)
    lower = np.stack([1.0 - np.cos(t), 0.5 - np.sin(t)], axis=1)
    x = np.where(y[:, None] == 0, upper, lower) + 0.1 * rng.standard_normal((n, 2))
    return 2.0 * x + np.array([-1.0, -0.2]), y


def _circles(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    y = rng.integers(0, 2, n)
    t = rng.uniform(0.0, 2.0 * np.pi, n)
    radius = np.where(y == 0, 1.0, 0.5)[:, None]
    x = radius * np.stack([np.cos(t), np.sin(t)], axis=1) + 0.08 * rng.standard_normal((n, 2))
    return 3.0 * x, y


def _eight_gaussians(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    y = rng.integers(0, 8, n)
    angle = y * (np.pi / 4.0)
    centers = 4.0 * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    return (centers + 0.5 * rng.standard_normal((n, 2))) / np.sqrt(2.0), y


def _checkerboard(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    x1 = rng.uniform(-2.0, 2.0, n)
    row = rng.integers(0, 2, n)
    column = np.floor(x1)
    x2 = rng.uniform(0.0, 1.0, n) - 2.0 * row + np.mod(column, 2.0)
    y = 2 * (column.astype(np.int64) + 2) + row
    return 2.0 * np.stack([x1, x2], axis=1), y


def _pinwheel(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    num_arms, radial_std, tangential_std, rate = 5, 0.3, 0.1, 0.25
    y = rng.integers(0, num_arms, n)
    features = rng.standard_normal((n, 2)) * np.array([radial_std, tangential_std])
    features[:, 0] += 1.0
    angle = y * (2.0 * np.pi / num_arms) + rate * np.exp(features[:, 0])
    cos, sin = np.cos(angle), np.sin(angle)
    rotated = np.stack([features[:, 0] * cos + features[:, 1] * sin,
                        features[:, 1] * cos - features[:, 0] * sin], axis=1)
    return 2.0 * rotated, y


def _two_spirals(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    y = rng.integers(0, 2, n)
    t = np.sqrt(rng.uniform(0.0, 1.0, n)) * 3.0 * np.pi
    arm = np.stack([-np.cos(t) * t, np.sin(t) * t], axis=1) + 0.5 * rng.uniform(0.0, 1.0, (n, 2))
    sign = np.where(y == 0, 1.0, -1.0)[:, None]
    return sign * arm / 3.0 + 0.1 * rng.standard_normal((n, 2)), y


_TOY_SAMPLERS: dict[str, Callable[[int, np.random.Generator], tuple[np.ndarray, np.ndarray]]] = {
    "two_moons": _two_moons,
    "circles": _circles,
    "eight_gaussians": _eight_gaussians,
    "checkerboard": _checkerboard,
    "pinwheel": _pinwheel,
    "two_spirals": _two_spirals,
}


def _toy_arrays(name: str, seed: int, num_examples: int | None) -> dict[str, np.ndarray]:
    n = _DEFAULT_TOY_EXAMPLES if num_examples is None else num_examples
    x, y = _TOY_SAMPLERS[name](n, np.random.default_rng([seed, _SAMPLE_STREAM]))
    return _carve_test(x.astype(np.float32), y.astype(np.int64), seed)


# ----------------------------------------------------------------------------- array sources

def _held_out(size: int, fraction: float) -> int:
    """How many of `size` examples a `fraction` holds out: the nearest count, at least one."""
    return max(1, round(fraction * size))


def _carve_test(x: np.ndarray, y: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Splits one pool of examples into seeded, disjoint train and test sets."""
    num_test = min(len(x) - 1, _held_out(len(x), _TEST_FRACTION))
    order = np.random.default_rng([seed, _TEST_SPLIT_STREAM]).permutation(len(x))
    test, train = np.sort(order[:num_test]), np.sort(order[num_test:])
    return {"x_train": x[train], "y_train": y[train], "x_test": x[test], "y_test": y[test]}


def _split_sizes(num_examples: int | None, num_train: int, num_test: int) -> tuple[int, int]:
    """Shares `num_examples` between train and test in proportion to their sizes."""
    if num_examples is None or num_examples >= num_train + num_test:
        return num_train, num_test
    keep_train = round(num_examples * num_train / (num_train + num_test))
    keep_train = min(num_examples - 1, max(1, keep_train))
    return keep_train, num_examples - keep_train


def _truncate(arrays: dict[str, np.ndarray], num_examples: int | None) -> dict[str, np.ndarray]:
    keep_train, keep_test = _split_sizes(num_examples, len(arrays["x_train"]),
                                         len(arrays["x_test"]))
    return {"x_train": arrays["x_train"][:keep_train], "y_train": arrays["y_train"][:keep_train],
            "x_test": arrays["x_test"][:keep_test], "y_test": arrays["y_test"][:keep_test]}


def _digits_arrays(seed: int, num_examples: int | None) -> dict[str, np.ndarray]:
    # sklearn is slow to import and only needed here.
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = digits.images.astype(np.uint8)[..., None]
    return _truncate(_carve_test(images, digits.target.astype(np.int64), seed), num_examples)


def _read_idx(path: str) -> np.ndarray:
    """Reads an IDX file (optionally gzipped): magic 0x0000<dtype><ndim>, big-endian dims."""
    with open(path, "rb") as f:
        data = f.read()
    if data.startswith(_GZIP_MAGIC):
        data = gzip.decompress(data)
    if len(data) < 4 or data[:2] != b"\x00\x00" or data[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file: expected magic 0x0000<type><ndim>, "
                         f"got 0x{data[:4].hex()}")
    ndim = data[3]
    header = 4 + 4 * ndim
    dims = tuple(int(d) for d in np.frombuffer(data[4:header], dtype=">u4"))
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    if len(dims) != ndim or len(data) - header != math.prod(dims) * dtype.itemsize:
        raise ValueError(f"{path} is truncated or corrupt: header says shape {dims} of "
                         f"{dtype}, file holds {len(data) - header} bytes of data")
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    return array.astype(dtype.newbyteorder("="))


def _idx_arrays(directory: str) -> dict[str, np.ndarray]:
    paths = {}
    for key, base in _IDX_FILES.items():
        candidates = [os.path.join(directory, base + suffix) for suffix in ("", ".gz")]
        paths[key] = next((p for p in candidates if os.path.isfile(p)), None)
    missing = [_IDX_FILES[key] for key, path in paths.items() if path is None]
    if missing:
        raise ValueError(f"IDX directory {directory!r} lacks {', '.join(missing)} "
                         f"(each may be gzipped, with a .gz suffix)")
    arrays = {key: _read_idx(path) for key, path in paths.items()}
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.dtype != np.uint8 or x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise ValueError(f"IDX {split} files in {directory!r} must hold uint8 images (N, H, W) "
                             f"and N labels, got {x.dtype} {x.shape} and {y.shape}")
        arrays[f"x_{split}"] = x[..., None]
        arrays[f"y_{split}"] = y.astype(np.int64)
    return arrays


def _npz_arrays(path: str, num_examples: int | None) -> tuple[dict[str, np.ndarray], int | None]:
    arrays = _read_npz(path, ("x_train", "x_test", "y_train", "y_test"))
    missing = [k for k in ("x_train", "x_test") if k not in arrays]
    if missing:
        raise ValueError(f"{path} must hold arrays x_train and x_test, missing {missing} "
                         f"(found {sorted(arrays)})")
    for split in ("train", "test"):
        x = arrays[f"x_{split}"]
        if x.ndim == 0:
            raise ValueError(f"{path}: x_{split} must be an array of examples, got a single "
                             f"value ({_describe(x.dtype)})")
        y = arrays.get(f"y_{split}", np.zeros(len(x), np.int64))
        if y.shape != (len(x),):
            raise ValueError(f"{path}: y_{split} must have shape ({len(x)},), got {y.shape}")
        arrays[f"y_{split}"] = y.astype(np.int64)
    x_train, x_test = arrays["x_train"], arrays["x_test"]
    if x_train.dtype != x_test.dtype or x_train.shape[1:] != x_test.shape[1:]:
        raise ValueError(f"{path}: x_train and x_test must share dtype and event shape, got "
                         f"{x_train.dtype} {x_train.shape} and {x_test.dtype} {x_test.shape}")
    if x_train.dtype == np.uint8 and x_train.ndim in (3, 4):
        if x_train.ndim == 3:
            arrays["x_train"], arrays["x_test"] = x_train[..., None], x_test[..., None]
        num_levels = _BYTE_LEVELS
    elif np.issubdtype(x_train.dtype, np.floating) and x_train.ndim == 2:
        arrays["x_train"], arrays["x_test"] = x_train.astype(np.float32), x_test.astype(np.float32)
        num_levels = None
    else:
        raise ValueError(f"{path}: expected uint8 images (N, H, W) or (N, H, W, C), or float "
                         f"vectors (N, D); got x_train of {_describe(x_train.dtype)}, shape "
                         f"{x_train.shape}")
    return _truncate(arrays, num_examples), num_levels


def _read_npz(path: str, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The arrays named `keys` that an .npz file holds.

    Raises:
        ValueError: For a file that is not an .npz, is truncated or corrupt, or holds pickled
            object arrays, which are refused without being read: unpickling runs code.
    """
    with open(path, "rb") as f:
        start = f.read(len(_ZIP_MAGIC))
    if start != _ZIP_MAGIC:
        raise ValueError(f"{path} is not a valid .npz file (a zip archive of .npy arrays, as "
                         f"numpy.savez writes); it starts with {start!r}; write it with "
                         f"numpy.savez(path, x_train=..., x_test=...)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            names = [key for key in keys if key in npz.files]
            pickled = [key for key in names if _npz_dtype(npz, key).hasobject]
            if not pickled:
                return {key: npz[key] for key in names}
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error) as error:
        raise ValueError(f"{path} is truncated or corrupt ({type(error).__name__}: {error}); "
                         f"write it again with numpy.savez") from None
    raise ValueError(f"{path} holds pickled object arrays ({', '.join(pickled)}: Python "
                     f"objects such as dicts), which we refuse to load since unpickling a file "
                     f"can run any code; save uint8 images or float vectors as plain arrays")


def _npz_dtype(npz, key: str) -> np.dtype:
    """The dtype of an array of an open .npz file, from its .npy header alone."""
    with npz.zip.open(f"{key}.npy") as member:
        version = np.lib.format.read_magic(member)
        # Version 3 headers differ from version 2 only in allowing UTF-8 field names.
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        return read_header(member)[2]


def _describe(dtype: np.dtype) -> str:
    """A dtype in words, naming the kinds of data that are not numbers."""
    if dtype.names:
        return f"records with fields {', '.join(dtype.names)}"
    if dtype.kind in "SU":
        return f"strings ({dtype})"
    return f"dtype {dtype}"


# ----------------------------------------------------------------------------- TFDS

def _network_available() -> bool:
    """Whether TFDS's download host answers a single TCP connect within a short timeout."""
    try:
        socket.create_connection(_PROBE_ADDRESS, timeout=_PROBE_TIMEOUT_S).close()
    except OSError:
        return False
    return True


def _tfds_builder(name: str, data_dir: str | None) -> tfds.core.DatasetBuilder:
    """The builder of a TFDS image dataset, prepared (downloaded first if need be).

    Raises:
        ValueError: For an unknown name, a dataset without a uint8 `image` feature, or one
            that is not prepared in `data_dir` when the network is unreachable.
    """
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.DatasetNotFoundError:
        raise ValueError(
            f"unknown dataset {name!r}: expected a toy ({', '.join(TOY_DATASETS)}), 'digits', "
            f"a directory of IDX files, an .npz file, or a TFDS image dataset name such as "
            f"'mnist'") from None
    features = builder.info.features
    image = features["image"] if "image" in features else None
    if image is None or image.dtype != tf.uint8:
        raise ValueError(f"TFDS dataset {name!r} must have a uint8 'image' feature, got "
                         f"features {list(features.keys())}")
    if not builder.is_prepared():
        if not _network_available():
            raise ValueError(
                f"TFDS dataset {name!r} is not prepared in {builder.data_dir_root} and could not "
                f"be downloaded: TFDS needs the network to download and prepare it, and there "
                f"is none; prepare it in a data_dir elsewhere, or point the loader at "
                f"{_LOCAL_HINT}")
        builder.download_and_prepare()
    return builder


def _tfds_arrays(name: str, data_dir: str | None, seed: int,
                 num_examples: int | None) -> dict[str, np.ndarray]:
    builder = _tfds_builder(name, data_dir)
    if None in builder.info.features["image"].shape:
        raise ValueError(f"TFDS dataset {name!r} has images of varying size; stream it "
                         f"(stream=None) with image_size to read it")
    splits = builder.info.splits
    if "test" not in splits:
        keep = "" if num_examples is None else f"[:{num_examples}]"
        x, y = _read_tfds_split(builder, f"train{keep}")
        return _carve_test(x, y, seed)
    keep_train, keep_test = _split_sizes(num_examples, splits["train"].num_examples,
                                         splits["test"].num_examples)
    x_train, y_train = _read_tfds_split(builder, f"train[:{keep_train}]")
    x_test, y_test = _read_tfds_split(builder, f"test[:{keep_test}]")
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def _read_tfds_split(builder: tfds.core.DatasetBuilder,
                     split: str) -> tuple[np.ndarray, np.ndarray]:
    has_label = "label" in builder.info.features
    images, labels = [], []
    # Batched reads rather than batch_size=-1, which aborts the process (std::length_error) on
    # tfds.testing.mock_data datasets.
    for batch in tfds.as_numpy(builder.as_dataset(split=split).batch(_TFDS_READ_BATCH)):
        images.append(batch["image"])
        labels.append(batch["label"] if has_label else np.zeros(len(batch["image"])))
    return np.concatenate(images), np.concatenate(labels).astype(np.int64)


# ----------------------------------------------------------------------------- pipelines

def _dequantize(x: tf.Tensor, key: tf.Tensor) -> tf.Tensor:
    """Returns float32 `x + u`, `u ~ Uniform[0, 1)`, with the integer part of `x` kept."""
    x = tf.cast(x, tf.float32)
    noisy = x + tf.random.stateless_uniform(tf.shape(x), seed=key)
    # In float32, x + u rounds up to x + 1 for u within an ulp of 1 (~1e-5 of pixels at 255).
    return tf.minimum(noisy, tf.math.nextafter(x + 1.0, x))


def _picker(columns, num_levels: int | None):
    """A function of example indices (and a noise key): `x`, or `(x, label)` given labels.

    `columns` is `(x,)` or `(x, y)`; `x` is dequantized when `num_levels` is given.
    """
    tensors = [tf.constant(column) for column in columns]

    def pick(index, key=None):
        x, *label = (tf.gather(tensor, index) for tensor in tensors)
        if num_levels is not None:
            x = _dequantize(x, key)
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
    # Imported here: tfp_flows.streaming builds on this module.
    from tfp_flows.streaming import Streamed

    pick = _picker(columns, num_levels)
    size = len(columns[0])
    steps_per_epoch = size // batch_size
    fold_in = tf.random.experimental.stateless_fold_in
    order_key = tf.constant([seed, _ORDER_SALT], tf.int64)
    noise_key = tf.constant([seed, _TRAIN_SALT], tf.int64)

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
