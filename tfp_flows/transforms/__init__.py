"""Elementwise transforms of couplings and autoregressive layers: the contract, the registry
and the built-in ones ("affine", "additive", "spline", "circular_spline").

`get(spec, **options)` turns a name, an instance or a saved dict into a `Transform`;
`serialize(transform)` writes the dict a config stores. See `Transform` for the contract a
plugin implements and `register_transform` for naming it.
"""

from tfp_flows.transforms.additive import AdditiveTransform
from tfp_flows.transforms.affine import SCALE_FUNCTIONS, AffineTransform
from tfp_flows.transforms.base import TRANSFORMS, Transform, get, register_transform, serialize
from tfp_flows.transforms.circular_spline import CircularSplineTransform
from tfp_flows.transforms.spline import SplineTransform

__all__ = ["SCALE_FUNCTIONS", "TRANSFORMS", "AdditiveTransform", "AffineTransform",
           "CircularSplineTransform", "SplineTransform", "Transform", "get", "register_transform",
           "serialize"]
