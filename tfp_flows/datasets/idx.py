"""A directory of MNIST-style IDX files (spec: its path, e.g. Debian's dataset-fashion-mnist
at /usr/share/datasets/fashion-mnist): `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`,
`t10k-images-idx3-ubyte` and `t10k-labels-idx1-ubyte`, each optionally gzipped (`.gz`),
holding uint8 images and their labels; 256 levels.
"""

from __future__ import annotations

import gzip
import math
import os

import numpy as np

from tfp_flows.datasets.arrays import Arrays
from tfp_flows.datasets.options import LoadOptions
from tfp_flows.datasets.source import ArraySource, register_source

_GZIP_MAGIC = b"\x1f\x8b"
_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
_DTYPES = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_LEVELS = 256


def read_idx(path: str) -> np.ndarray:
    """Reads an IDX file (optionally gzipped): magic 0x0000<dtype><ndim>, big-endian dims.

    Raises:
        ValueError: For a file that is not an IDX file, or is truncated.
    """
    with open(path, "rb") as f:
        data = f.read()
    if data.startswith(_GZIP_MAGIC):
        data = gzip.decompress(data)
    if len(data) < 4 or data[:2] != b"\x00\x00" or data[2] not in _DTYPES:
        raise ValueError(f"{path} is not an IDX file: expected magic 0x0000<type><ndim>, "
                         f"got 0x{data[:4].hex()}")
    ndim = data[3]
    header = 4 + 4 * ndim
    dims = tuple(int(d) for d in np.frombuffer(data[4:header], dtype=">u4"))
    dtype = np.dtype(_DTYPES[data[2]])
    if len(dims) != ndim or len(data) - header != math.prod(dims) * dtype.itemsize:
        raise ValueError(f"{path} is truncated or corrupt: header says shape {dims} of "
                         f"{dtype}, file holds {len(data) - header} bytes of data")
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    return array.astype(dtype.newbyteorder("="))


def _candidates(directory: str, base: str) -> list[str]:
    return [os.path.join(directory, base + suffix) for suffix in ("", ".gz")]


@register_source("idx")
class IDX(ArraySource):
    """MNIST-style IDX files in a directory; a directory with any of the four is this
    source's, so that a missing one is named."""

    description = ("MNIST-style IDX files in a directory (train-images-idx3-ubyte, "
                   "train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, "
                   "each optionally gzipped)")

    def recognises(self, spec: str) -> bool:
        directory = os.path.expanduser(spec)
        return os.path.isdir(directory) and any(
            os.path.isfile(path) for base in _FILES.values()
            for path in _candidates(directory, base))

    def read(self, spec: str, options: LoadOptions) -> Arrays:
        directory = os.path.expanduser(spec)
        if not os.path.isdir(directory):
            raise ValueError(f"IDX directory {directory!r} does not exist or is not a directory")
        paths = {key: next((p for p in _candidates(directory, base) if os.path.isfile(p)), None)
                 for key, base in _FILES.items()}
        missing = [_FILES[key] for key, path in paths.items() if path is None]
        if missing:
            raise ValueError(f"IDX directory {directory!r} lacks {', '.join(missing)} "
                             f"(each may be gzipped, with a .gz suffix)")
        arrays = {key: read_idx(path) for key, path in paths.items()}
        for split in ("train", "test"):
            x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
            if x.dtype != np.uint8 or x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
                raise ValueError(f"IDX {split} files in {directory!r} must hold uint8 images "
                                 f"(N, H, W) and N labels, got {x.dtype} {x.shape} and "
                                 f"{y.shape}")
        return Arrays(arrays["x_train"][..., None], arrays["x_test"][..., None],
                      arrays["y_train"].astype(np.int64), arrays["y_test"].astype(np.int64),
                      _LEVELS)
