"""A `.npz` file (spec: its path) with arrays `x_train`, `x_test` and optionally `y_train`,
`y_test`: uint8 images `(N, H, W)` or `(N, H, W, C)` (256 levels) or float vectors `(N, D)`.
Pickled object arrays are refused without being read: unpickling runs code.
"""

from __future__ import annotations

import os
import zipfile
import zlib

import numpy as np

from tfp_flows.datasets.arrays import Arrays
from tfp_flows.datasets.options import LoadOptions
from tfp_flows.datasets.source import ArraySource, register_source

# How a zip archive, hence an .npz file, starts (a local file header).
_ZIP_MAGIC = b"PK\x03\x04"
_LEVELS = 256


@register_source("npz")
class NPZ(ArraySource):
    """An .npz file of train and test arrays: a spec ending in `.npz`, or any file that is a
    zip archive."""

    description = ("a .npz file with x_train, x_test (optionally y_train, y_test) of uint8 "
                   "images or float vectors")

    def recognises(self, spec: str) -> bool:
        path = os.path.expanduser(spec)
        if spec.endswith(".npz"):
            return not os.path.isdir(path)
        return os.path.isfile(path) and _starts_with(path, _ZIP_MAGIC)

    def read(self, spec: str, options: LoadOptions) -> Arrays:
        path = os.path.expanduser(spec)
        if not os.path.isfile(path):
            raise ValueError(f"dataset path {path!r} does not exist; expected "
                             f"{self.description}")
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
                             f"{x_train.dtype} {x_train.shape} and {x_test.dtype} "
                             f"{x_test.shape}")
        if x_train.dtype == np.uint8 and x_train.ndim in (3, 4):
            if x_train.ndim == 3:
                x_train, x_test = x_train[..., None], x_test[..., None]
            num_levels = _LEVELS
        elif np.issubdtype(x_train.dtype, np.floating) and x_train.ndim == 2:
            num_levels = None
        else:
            raise ValueError(f"{path}: expected uint8 images (N, H, W) or (N, H, W, C), or float "
                             f"vectors (N, D); got x_train of {_describe(x_train.dtype)}, shape "
                             f"{x_train.shape}")
        return Arrays(x_train, x_test, arrays["y_train"], arrays["y_test"], num_levels)


def _starts_with(path: str, magic: bytes) -> bool:
    with open(path, "rb") as f:
        return f.read(len(magic)) == magic


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
