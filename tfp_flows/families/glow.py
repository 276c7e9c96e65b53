"""Glow: scales of (squeeze, depth x [ActNorm, invertible 1x1 conv, coupling], split)."""

from __future__ import annotations

import warnings

from tfp_flows import bases
from tfp_flows.families.base import Argument, Flow, check_image, register_family
from tfp_flows.nets import ConvNet
from tfp_flows.steps import ConditionalPrior, GlowSteps, ScaleLevel

__all__ = ["Glow"]


@register_family("glow")
class Glow(Flow):
    """Glow: scales of (squeeze, depth x [ActNorm, invertible 1x1 conv, coupling], split).

    Defaults follow the paper: 3 scales of 32 steps, 512 hidden channels, affine coupling
    with sigmoid scale, LU-parametrised 1x1 convolutions, learned conditional prior on each
    split. On vectors `(D,)` the steps run without squeeze or split. `transform` may be any
    registered transform ("additive", "spline" with `bins` and `bound`, or a plugin's).

    A conditional Glow (`context_shape` or `num_classes`) also predicts the top latent's mean
    and scale from the context: the class-conditional prior of the paper (section 5), its
    default base `ConditionalDiagonalNormal(num_scales)` (see `tfp_flows.bases`).

    [1] Kingma, Dhariwal. Glow: Generative Flow with Invertible 1x1 Convolutions.
        https://arxiv.org/abs/1807.03039
    """

    arguments = (
        Argument("num_scales", int, 3, "Scales of the multi-scale architecture, on images.",
                 ranks=(3,), minimum=1, deprecated_name="levels"),
        Argument("depth", int, 32, "Steps per scale.", minimum=1),
        Argument("hidden", int, 512, "Hidden channels (units, on vectors) of the couplings' "
                 "conditioner networks.", minimum=1),
        Argument("lu", bool, True, "LU-parametrised invertible 1x1 convolutions."),
        Argument("split_prior", bool, True, "Learned prior of each factored-out half.",
                 ranks=(3,)),
    )
    default_preprocessing = "center"
    default_transform = "affine"
    transform_defaults = {"affine": {"scale_fn": "sigmoid"}}
    uses_data_dependent_init = True

    def __init__(self, event_shape, num_scales: int | None = None, depth: int | None = None,
                 hidden: int | None = None, lu: bool | None = None,
                 split_prior: bool | None = None, base=None, **kwargs):
        if "coupling" in kwargs:
            kwargs["transform"] = _renamed_coupling(kwargs)
        super().__init__(event_shape, num_scales=num_scales, depth=depth, hidden=hidden, lu=lu,
                         split_prior=split_prior, base=base, **kwargs)
        options = {"hidden": self.hidden, "lu": self.lu, "context_size": self.context_size}
        channels = self.event_shape[-1]
        if not self.is_image:
            self.steps = [GlowSteps(self.transform, self.event_shape, self.depth, name="steps",
                                    **options)]
            self._default_base(base, self.steps)
            return
        check_image(self.event_shape, "Glow", self.num_scales)
        self.steps = []
        height, width = self.event_shape[:2]
        for scale in range(self.num_scales):
            height, width, channels = height // 2, width // 2, channels * 4
            last = scale == self.num_scales - 1
            steps = [GlowSteps(self.transform, (height, width, channels), self.depth,
                               name=f"scale{scale}_steps", **options)]
            prior = None
            if self.split_prior and not last:
                prior = ConvNet(channels, num_hidden=0, context_size=self.context_size,
                                name=f"scale{scale}_split_prior")
            self.steps.append(ScaleLevel(steps, prior, name=f"scale{scale}"))
            channels //= 2
        self._default_base(base, self.steps[-1].steps)

    def _default_base(self, base, top_steps: list) -> None:
        """Without a `base`: the class-conditional prior when conditional, else N(0, I).

        That prior was once the last step of the top level; `ConditionalPrior` there now only
        shows the weights files of those Glows where its dense map is.
        """
        if base is not None:
            return
        if not self.context_size:
            self._keep_base("normal")
            return
        self._keep_base(bases.ConditionalDiagonalNormal(num_scales=self.num_scales))
        top_steps.append(ConditionalPrior(self._base, name="conditional_prior"))


def _renamed_coupling(kwargs: dict):
    """Glow's deprecated `coupling=`, taken out of `kwargs` as the value of `transform=`."""
    if kwargs.get("transform") is not None:
        raise ValueError("coupling= is the deprecated name of transform=; pass only transform=.")
    warnings.warn("coupling= is deprecated and will be removed in the next release; use "
                  "transform= instead.", DeprecationWarning, stacklevel=3)
    return kwargs.pop("coupling")
