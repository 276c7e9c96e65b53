"""Additive coupling (NICE)."""

from __future__ import annotations

from tfp_flows.bijectors.coupling import Coupling
from tfp_flows.transforms.additive import AdditiveTransform

__all__ = ["AdditiveCoupling"]


class AdditiveCoupling(Coupling):
    """x_b = z_b + m(z_a), NICE's volume-preserving coupling.

    A `Coupling` with an `AdditiveTransform`:

        inverse (data -> latent):  z_b = x_b - m(x_a)
        forward (latent -> data):  x_b = z_b + m(z_a)
        log|det J| = 0

    The conditioner `m` receives the conditioning part (or the masked image for the
    checkerboard mask) and returns a shift of the transformed part's shape (of the full
    image for the checkerboard mask).

    #### References

    [1] Laurent Dinh, David Krueger, Yoshua Bengio. NICE: Non-linear Independent Components
        Estimation. ICLR 2015 workshop. https://arxiv.org/abs/1410.8516
    """

    def __init__(self, conditioner, *, mask: str = "channel", parity: int = 0,
                 event_ndims: int = 1, validate_args: bool = False,
                 name: str = "additive_coupling"):
        parameters = dict(locals())
        super().__init__(conditioner, AdditiveTransform(), mask=mask, parity=parity,
                         event_ndims=event_ndims, validate_args=validate_args, name=name,
                         parameters=parameters)
