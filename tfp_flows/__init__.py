"""tfp_flows: normalizing flows as TensorFlow Probability bijectors inside Keras 3 models."""

import os

_NEEDS_TENSORFLOW = ("tfp_flows needs Keras' TensorFlow backend (its bijectors are TensorFlow "
                     "Probability's); Keras is set to {!r}: set KERAS_BACKEND=tensorflow before "
                     "importing keras or tfp_flows.")

# Checked before Keras is imported: Keras would otherwise fail deep inside its own import when
# that backend is not installed, or run our TensorFlow code on another backend's tensors.
if os.environ.get("KERAS_BACKEND", "tensorflow") not in ("", "tensorflow"):
    raise ImportError(_NEEDS_TENSORFLOW.format(os.environ["KERAS_BACKEND"]))

import keras  # noqa: E402

# keras.json, or a Keras imported earlier under another backend.
if keras.backend.backend() != "tensorflow":
    raise ImportError(_NEEDS_TENSORFLOW.format(keras.backend.backend()))

from tfp_flows import (  # noqa: E402
    bases,
    bijectors,
    dequantizers,
    families,
    nets,
    steps,
    transforms,
)
from tfp_flows.bases import Base, register_base  # noqa: E402
from tfp_flows.dequantizers import Dequantizer, register_dequantizer  # noqa: E402
from tfp_flows.export import export_saved_model  # noqa: E402
from tfp_flows.families import (  # noqa: E402
    FAMILIES,
    FFJORD,
    IAF,
    MAF,
    NICE,
    NSF,
    Argument,
    Flow,
    Glow,
    Planar,
    Radial,
    RealNVP,
    build,
    ffjord,
    glow,
    iaf,
    maf,
    nice,
    nsf,
    planar,
    radial,
    realnvp,
    register_family,
)
from tfp_flows.flow_model import FlowModel  # noqa: E402
from tfp_flows.transforms import Transform, register_transform  # noqa: E402

__version__ = "0.1.0"

__all__ = ["FAMILIES", "FFJORD", "IAF", "MAF", "NICE", "NSF", "Argument", "Base", "Dequantizer",
           "Flow", "FlowModel", "Glow", "Planar", "Radial", "RealNVP", "Transform", "bases",
           "bijectors", "build", "dequantizers", "export_saved_model", "families", "ffjord", "glow",
           "iaf", "maf", "nets", "nice", "nsf", "planar", "radial", "realnvp", "register_base",
           "register_dequantizer", "register_family", "register_transform", "steps", "transforms"]
