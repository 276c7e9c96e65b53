"""Masked autoregressive flow: MADE-conditioned autoregressive layers."""

from __future__ import annotations

from tfp_flows.families.base import Argument, Flow, register_family
from tfp_flows.steps import AutoregressiveStep

__all__ = ["MAF"]


@register_family("maf")
class MAF(Flow):
    """Masked autoregressive flow: `num_layers` MADE-conditioned autoregressive layers.

    Built on TFP's `tfb.MaskedAutoregressiveFlow` with our Keras 3 `MADE`; consecutive layers
    reverse the variable order. Density (the inverse) is one pass; sampling is sequential,
    D passes. Images are flattened inside the flow (D = H * W * C), as NICE does.
    `transform="spline"` makes each layer a rational-quadratic autoregressive spline (with
    `bins` and `bound`) instead of MAF's affine map; any registered transform works.

    The affine map's log-scale is soft-clamped to +-3 per layer by default
    (`scale_fn="soft_clamp"`, or "tanh"; see `AffineTransform`): the paper's unbounded one
    (`scale_fn="exp"`) can overflow float32 in one layer and turn a whole variational fit
    NaN (`experiments/vi_stability.py`). A MAF saved without `scale_fn` loads as "exp", the
    scale it was trained with.

    [1] Papamakarios, Pavlakou, Murray. Masked Autoregressive Flow for Density Estimation.
        https://arxiv.org/abs/1705.07057
    """

    arguments = (
        Argument("num_layers", int, 5, "Autoregressive layers.", minimum=1),
        Argument("hidden", int, 512, "Hidden units of the MADE conditioners.", minimum=1),
        Argument("num_hidden", int, 2, "Hidden layers per MADE.", minimum=0),
    )
    default_transform = "affine"
    transform_defaults = {"affine": {"scale_fn": "soft_clamp"}}
    flattens_images = True

    def __init__(self, event_shape, num_layers: int | None = None, hidden: int | None = None,
                 num_hidden: int | None = None, **kwargs):
        super().__init__(event_shape, num_layers=num_layers, hidden=hidden,
                         num_hidden=num_hidden, **kwargs)
        self.steps = [AutoregressiveStep(self.transform, self.flat_size, hidden=self.hidden,
                                         num_hidden=self.num_hidden, reverse=i % 2 == 1,
                                         context_size=self.context_size,
                                         name=f"autoregressive_{i}")
                      for i in range(self.num_layers)]

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if config.get("transform", "affine") == "affine":
            # Saved before scale_fn was an option: those weights were trained unbounded.
            config.setdefault("scale_fn", "exp")
        return cls(**config)
