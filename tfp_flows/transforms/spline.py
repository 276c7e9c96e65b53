"""The monotonic rational-quadratic spline transform (neural spline flows)."""

from __future__ import annotations

import math
import numbers

import tensorflow as tf
from tensorflow_probability import bijectors as tfb

from tfp_flows.transforms.base import Transform, register_transform

__all__ = ["SplineTransform"]


def _softmax(logits):
    """Softmax over the last axis, of a tensor of any rank.

    oneDNN's softmax (TF's default on AVX-512 CPUs) takes at most 5 axes; a spline's bins on
    images under a sample shape `(a, b)` have 6, which run through a flat view instead.
    """
    if logits.shape.rank <= 5:
        return tf.nn.softmax(logits, axis=-1)
    flat = tf.nn.softmax(tf.reshape(logits, [-1, logits.shape[-1]]), axis=-1)
    return tf.reshape(flat, tf.shape(logits))


@register_transform("spline")
class SplineTransform(Transform):
    """Monotonic rational-quadratic spline (Durkan et al. 2019), TFP's `RationalQuadraticSpline`.

    `bins` bins on [-bound, bound] in both directions; outside that interval the transform is
    the identity (linear tails), so no input is ever rejected and the density stays exact
    everywhere. Per transformed entry the conditioner gives `bins` width logits, `bins` height
    logits and `bins - 1` interior knot slopes (the slopes at +-bound are 1, which makes the
    spline meet its linear tails smoothly): `3 * bins - 1` values. Zero parameters give equal
    bins and unit slopes, the identity.

    inverse (data -> latent) is the spline's forward map g, forward is g^-1 (both closed form,
    one pass each); log|det J_inverse| = sum log g'(x).

    #### References

    [1] Conor Durkan, Artur Bekasov, Iain Murray, George Papamakarios. Neural Spline Flows.
        NeurIPS 2019. https://arxiv.org/abs/1906.04032
    """

    # Smallest bin width/height (as a fraction of the interval) and knot slope: keep the spline
    # away from the degenerate flat or vertical pieces that make the inverse ill-conditioned.
    min_bin_fraction = 1e-3
    min_slope = 1e-3

    def __init__(self, bins: int = 8, bound: float = 4.0):
        if isinstance(bins, bool) or not isinstance(bins, numbers.Integral) or bins < 2:
            raise ValueError(f"bins must be an integer >= 2, got {bins!r}.")
        if isinstance(bound, bool) or not isinstance(bound, numbers.Real) or not (
                math.isfinite(bound) and bound > 0):
            raise ValueError(f"bound must be a positive finite number, got {bound!r}.")
        self.bins = int(bins)
        self.bound = float(bound)
        self.params_per_entry = 3 * self.bins - 1

    def spline(self, params) -> tfb.RationalQuadraticSpline:
        """The spline whose bins and slopes `params` (conditioner output) define."""
        blocks = self.split(params)
        bins = self.bins
        widths = tf.stack(blocks[:bins], axis=-1)
        heights = tf.stack(blocks[bins:2 * bins], axis=-1)
        slopes = tf.stack(blocks[2 * bins:], axis=-1)
        span = 2.0 * self.bound
        floor = self.min_bin_fraction
        widths = span * (floor + (1.0 - floor * bins) * _softmax(widths))
        heights = span * (floor + (1.0 - floor * bins) * _softmax(heights))
        # softplus(raw + log(e^(1 - min) - 1)) + min is 1 at raw = 0: identity at start.
        offset = math.log(math.expm1(1.0 - self.min_slope))
        slopes = tf.nn.softplus(slopes + offset) + self.min_slope
        return tfb.RationalQuadraticSpline(widths, heights, slopes, range_min=-self.bound)

    def __call__(self, x, params, inverse: bool):
        spline = self.spline(params)
        if inverse:
            y, log_det = spline.forward(x), spline.forward_log_det_jacobian(x, event_ndims=0)
        else:
            y, log_det = spline.inverse(x), spline.inverse_log_det_jacobian(x, event_ndims=0)
        # TFP's spline drops the static shape when the batch size is unknown (tf.function,
        # SavedModel); the next coupling needs the channel count.
        return tf.ensure_shape(y, x.shape), tf.ensure_shape(log_det, x.shape)

    def get_config(self) -> dict:
        return {"bins": self.bins, "bound": self.bound}
