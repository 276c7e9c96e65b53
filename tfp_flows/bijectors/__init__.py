"""TFP bijectors of tfp_flows: stateless views over variables that Keras layers own."""

from tfp_flows.bijectors.actnorm import ActNorm
from tfp_flows.bijectors.additive_coupling import AdditiveCoupling
from tfp_flows.bijectors.affine_coupling import AffineCoupling
from tfp_flows.bijectors.coupling import Coupling
from tfp_flows.bijectors.elementwise import Elementwise
from tfp_flows.bijectors.flow_bijector import FlowBijector
from tfp_flows.bijectors.invertible_conv1x1 import InvertibleConv1x1, lu_factors
from tfp_flows.bijectors.multiscale import MultiScale
from tfp_flows.bijectors.reversible_chain import ReversibleChain
from tfp_flows.bijectors.scaling import Scaling
from tfp_flows.bijectors.shift_and_scale import ShiftAndScale
from tfp_flows.bijectors.squeeze import Squeeze

__all__ = [
    "ActNorm",
    "AdditiveCoupling",
    "AffineCoupling",
    "Coupling",
    "Elementwise",
    "FlowBijector",
    "InvertibleConv1x1",
    "MultiScale",
    "ReversibleChain",
    "Scaling",
    "ShiftAndScale",
    "Squeeze",
    "lu_factors",
]
