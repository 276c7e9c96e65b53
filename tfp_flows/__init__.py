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

from tfp_flows import bases, bijectors, nets, steps, transforms  # noqa: E402
from tfp_flows.bases import Base, register_base  # noqa: E402
from tfp_flows.export import export_saved_model  # noqa: E402
from tfp_flows.flow_model import FlowModel  # noqa: E402
from tfp_flows.transforms import Transform, register_transform  # noqa: E402
from tfp_flows.zoo import (  # noqa: E402
    FAMILIES,
    IAF,
    MAF,
    NICE,
    NSF,
    Glow,
    RealNVP,
    glow,
    iaf,
    maf,
    nice,
    nsf,
    realnvp,
)

__version__ = "0.1.0"

__all__ = ["FAMILIES", "IAF", "MAF", "NICE", "NSF", "Base", "FlowModel", "Glow", "RealNVP",
           "Transform", "bases", "bijectors", "export_saved_model", "glow", "iaf", "maf", "nets",
           "nice", "nsf", "realnvp", "register_base", "register_transform", "steps",
           "transforms"]
