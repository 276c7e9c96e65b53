"""Inverse autoregressive flow: the MAF layers inverted."""

from __future__ import annotations

from tensorflow_probability import bijectors as tfb

from tfp_flows.families.base import register_family
from tfp_flows.families.maf import MAF

__all__ = ["IAF"]


@register_family("iaf")
class IAF(MAF):
    """Inverse autoregressive flow: the MAF layers inverted (`tfb.Invert`).

    Sampling is one pass and density is sequential: the mirror image of MAF, made for fast
    sampling (and for variational posteriors, where densities of own samples are cheap).

    [1] Kingma, Salimans, Jozefowicz, Chen, Sutskever, Welling. Improved Variational Inference
        with Inverse Autoregressive Flow. https://arxiv.org/abs/1606.04934
    """

    def _flow_bijector(self, context, initialize):
        return tfb.Invert(super()._flow_bijector(context, initialize))
