"""Affine coupling (RealNVP, Glow)."""

from __future__ import annotations

from tfp_flows.bijectors.coupling import Coupling
from tfp_flows.transforms.affine import SCALE_FUNCTIONS, AffineTransform

__all__ = ["AffineCoupling", "SCALE_FUNCTIONS"]


class AffineCoupling(Coupling):
    """x_b = (z_b - shift(z_a)) / scale(z_a), the affine coupling of RealNVP and Glow.

    A `Coupling` with an `AffineTransform`. With `(a, b)` the conditioning and transformed
    parts chosen by the mask and `shift, raw = split(conditioner(a), 2, axis=-1)`:

        inverse (data -> latent, the training pass):  z_b = x_b * scale + shift
        forward (latent -> data):                      x_b = (z_b - shift) / scale
        log|det J_inverse| = sum(log scale)

    `scale_fn` bounds the scale (see `AffineTransform`): "sigmoid" (Glow), "tanh" or "exp".
    For the channel mask the conditioner receives the conditioning half and must return
    `2 * transformed_size` values on the last axis; for the checkerboard mask it receives the
    masked image and returns `2 * C`.

    #### References

    [1] Laurent Dinh, Jascha Sohl-Dickstein, Samy Bengio. Density estimation using Real NVP.
        ICLR 2017. https://arxiv.org/abs/1605.08803
    [2] Diederik P. Kingma, Prafulla Dhariwal. Glow. NeurIPS 2018. https://arxiv.org/abs/1807.03039
    """

    def __init__(self, conditioner, *, mask: str = "channel", parity: int = 0,
                 scale_fn: str = "sigmoid", event_ndims: int = 3, validate_args: bool = False,
                 name: str = "affine_coupling"):
        parameters = dict(locals())
        super().__init__(conditioner, AffineTransform(scale_fn), mask=mask, parity=parity,
                         event_ndims=event_ndims, validate_args=validate_args, name=name,
                         parameters=parameters)
