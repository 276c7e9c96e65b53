"""tfp_flows: normalizing flows as TensorFlow Probability bijectors inside Keras 3 models."""

from tfp_flows import bijectors, nets
from tfp_flows.export import export_saved_model
from tfp_flows.flow_model import FlowModel
from tfp_flows.zoo import IAF, MAF, NICE, Glow, RealNVP, glow, iaf, maf, nice, realnvp

__version__ = "0.1.0"

__all__ = ["IAF", "MAF", "NICE", "FlowModel", "Glow", "RealNVP", "bijectors", "glow", "iaf",
           "maf", "nets", "nice", "realnvp", "export_saved_model"]
