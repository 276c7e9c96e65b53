"""Neural spline flow: RealNVP's layout with rational-quadratic spline couplings."""

from __future__ import annotations

from tfp_flows import transforms
from tfp_flows.families.base import register_family
from tfp_flows.families.realnvp import RealNVP

__all__ = ["NSF"]


@register_family("nsf")
class NSF(RealNVP):
    """Neural spline flow: RealNVP's layout with rational-quadratic spline couplings.

    The coupling transform is a monotonic rational-quadratic spline with `bins` bins on
    [-bound, bound] and identity (linear) tails outside it, so no input is rejected (Durkan et
    al. 2019, on TFP's `tfb.RationalQuadraticSpline`). Vectors: `num_couplings` couplings with
    alternating halves (default 6, 128 hidden units); images: RealNVP's multi-scale layout.

    [1] Conor Durkan, Artur Bekasov, Iain Murray, George Papamakarios. Neural Spline Flows.
        NeurIPS 2019. https://arxiv.org/abs/1906.04032
    """

    arguments = tuple(
        argument.with_default(6) if argument.name == "num_couplings" else
        argument.with_default({1: 128, 3: 64}) if argument.name == "hidden" else argument
        for argument in RealNVP.arguments)
    default_transform = "spline"

    def _take_transform(self, kwargs: dict):
        given = kwargs.get("transform")
        transform = super()._take_transform(kwargs)
        if not isinstance(transform, transforms.SplineTransform):
            raise ValueError(f"NSF couplings are splines; got transform={given!r} "
                             f"(use RealNVP for other transforms).")
        return transform
