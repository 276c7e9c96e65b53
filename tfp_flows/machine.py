"""The machine and software a measurement ran on, for the records next to the numbers."""

from __future__ import annotations

import os
import platform

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_flows import compat

__all__ = ["BFLOAT16_FLAGS", "describe"]


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            return next(line.split(":", 1)[1].strip() for line in info
                        if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


# The CPU features (flags of /proc/cpuinfo) that run bfloat16 matrix products in hardware:
# AMX tiles (Intel Sapphire Rapids and later) and AVX512-BF16 (Cooper Lake, Zen 4). Without
# them oneDNN emulates bfloat16, and a bfloat16 model trains slower than float32.
BFLOAT16_FLAGS = ("amx_bf16", "avx512_bf16")


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as info:
            return set(next(line.split(":", 1)[1].split() for line in info
                            if line.startswith("flags")))
    except (OSError, StopIteration):
        return set()


def describe() -> dict:
    """CPU model and cores, GPUs, the load when the measurement started, platform, versions.

    Keys: `cpu` (model name), `cpu_bfloat16` (which of `BFLOAT16_FLAGS` the CPU has; empty:
    bfloat16 is emulated, slower than float32), `onednn` (whether this process runs TF's oneDNN
    kernels, `compat.onednn_enabled`; without them bfloat16 is emulated whatever the CPU),
    `logical_cores`, `gpus` (physical GPU device
    names), `gpu` (whether there is one), `load_average_1min_at_start`, `platform`, `python`,
    `tensorflow`, `keras`, `tensorflow_probability`. `cores` and `cpu_count` repeat
    `logical_cores`, and `load_average_1min` the load, under the names the committed benchmark
    JSONs use, so that a reader of those files reads new ones too.
    """
    cores = os.cpu_count()
    load = round(os.getloadavg()[0], 2)
    gpus = [d.name for d in tf.config.list_physical_devices("GPU")]
    flags = _cpu_flags()
    return {"cpu": _cpu_model(), "cpu_bfloat16": [f for f in BFLOAT16_FLAGS if f in flags],
            "onednn": compat.onednn_enabled(),
            "logical_cores": cores, "cores": cores, "cpu_count": cores,
            "gpus": gpus, "gpu": bool(gpus), "load_average_1min_at_start": load,
            "load_average_1min": load, "platform": platform.platform(),
            "python": platform.python_version(), "tensorflow": tf.__version__,
            "keras": keras.__version__, "tensorflow_probability": tfp.__version__}
