"""The additive transform (NICE's shift)."""

from __future__ import annotations

from tfp_flows.transforms.base import Transform, register_transform

__all__ = ["AdditiveTransform"]


@register_transform("additive")
class AdditiveTransform(Transform):
    """NICE's shift: inverse z = x - m, forward x = z + m; log|det| = 0.

    One parameter per entry, the shift `m`; volume preserving. In an autoregressive step it
    makes a volume-preserving MAF (or IAF).

    #### References

    [1] Laurent Dinh, David Krueger, Yoshua Bengio. NICE: Non-linear Independent Components
        Estimation. ICLR 2015 workshop. https://arxiv.org/abs/1410.8516
    """

    params_per_entry = 1
    volume_preserving = True

    def __call__(self, x, params, inverse: bool):
        return (x - params if inverse else x + params), None
