"""tfp_flows: normalizing flows as TensorFlow Probability bijectors inside Keras 3 models."""

from tfp_flows import bijectors, nets, steps
from tfp_flows.export import export_saved_model
from tfp_flows.flow_model import FlowModel
from tfp_flows.zoo import (
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

__all__ = ["FAMILIES", "IAF", "MAF", "NICE", "NSF", "FlowModel", "Glow", "RealNVP", "bijectors",
           "export_saved_model", "glow", "iaf", "maf", "nets", "nice", "nsf", "realnvp", "steps"]
