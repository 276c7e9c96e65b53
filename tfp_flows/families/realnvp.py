"""RealNVP: couplings; multi-scale with checkerboard and channel masks on images."""

from __future__ import annotations

from tfp_flows.families.base import Argument, Flow, check_image, register_family
from tfp_flows.steps import CouplingStep, ScaleLevel

__all__ = ["RealNVP"]


@register_family("realnvp")
class RealNVP(Flow):
    """RealNVP: couplings; multi-scale with checkerboard and channel masks on images.

    Vectors `(D,)`: `num_couplings` couplings with alternating halves, conditioners with
    `num_hidden` dense layers of `hidden` units.

    Images `(H, W, C)`: at each of the first `num_scales - 1` scales, 3 checkerboard couplings,
    a squeeze, 3 channel couplings, then half of the channels are factored out; the last scale
    has 4 checkerboard couplings (RealNVP section 4.1). Conditioners are convolutional with
    `hidden` channels.

    The coupling transform is affine by default (`scale_fn="tanh"` bounds the log-scale for
    stability), or any registered transform (`transform="additive"`, `"spline"` with `bins`
    and `bound`, or a plugin's; see `tfp_flows.transforms`).

    [1] Dinh, Sohl-Dickstein, Bengio. Density estimation using Real NVP.
        https://arxiv.org/abs/1605.08803
    """

    arguments = (
        Argument("num_couplings", int, 5, "Coupling layers, on vectors.", ranks=(1,),
                 minimum=1),
        Argument("num_scales", int, 3, "Scales of the multi-scale architecture, on images.",
                 ranks=(3,), minimum=1, deprecated_name="levels"),
        Argument("hidden", int, {1: 256, 3: 64},
                 "Hidden units (vectors) or channels (images) of the conditioner networks.",
                 minimum=1),
        Argument("num_hidden", int, 2, "Hidden layers per conditioner.", minimum=0),
    )
    default_transform = "affine"
    transform_defaults = {"affine": {"scale_fn": "tanh"}}

    def __init__(self, event_shape, num_couplings: int | None = None,
                 num_scales: int | None = None, hidden: int | None = None,
                 num_hidden: int | None = None, **kwargs):
        super().__init__(event_shape, num_couplings=num_couplings, num_scales=num_scales,
                         hidden=hidden, num_hidden=num_hidden, **kwargs)
        options = {"hidden": self.hidden, "num_hidden": self.num_hidden,
                   "context_size": self.context_size}
        transform = self.transform
        if not self.is_image:
            size = self.event_shape[0]
            if size < 2:
                raise ValueError(f"{type(self).__name__} needs at least 2 dimensions, "
                                 f"got {event_shape}.")
            self.steps = [CouplingStep(transform, size, parity=i % 2, name=f"coupling_{i}",
                                       **options) for i in range(self.num_couplings)]
            return
        check_image(self.event_shape, type(self).__name__, self.num_scales - 1)
        self.steps = []
        channels = self.event_shape[-1]
        for scale in range(self.num_scales):
            last = scale == self.num_scales - 1
            self.steps += [CouplingStep(transform, channels, mask="checkerboard", parity=i % 2,
                                        event_rank=3, name=f"scale{scale}_checkerboard_{i}",
                                        **options) for i in range(4 if last else 3)]
            if not last:
                self.steps.append(ScaleLevel(
                    [CouplingStep(transform, 4 * channels, parity=i % 2, event_rank=3,
                                  name=f"scale{scale}_channel_{i}", **options) for i in range(3)],
                    name=f"scale{scale}"))
                channels *= 2
