"""The circular rational-quadratic spline transform: a diffeomorphism of the circle."""

from __future__ import annotations

import math
import numbers

import tensorflow as tf
from tensorflow_probability import bijectors as tfb

from tfp_flows.transforms.base import Transform, register_transform
from tfp_flows.transforms.spline import _softmax

__all__ = ["CircularSplineTransform", "wrap_angle"]


def wrap_angle(x):
    """`x` modulo 2 pi, in [-pi, pi) (derivative 1 everywhere)."""
    two_pi = tf.constant(2.0 * math.pi, x.dtype)
    return x - two_pi * tf.floor((x + math.pi) / two_pi)


@register_transform("circular_spline")
class CircularSplineTransform(Transform):
    """Circular rational-quadratic spline (Rezende et al. 2020): a diffeomorphism of the circle.

    Each transformed entry is an angle, read modulo 2 pi, and the result is an angle in
    [-pi, pi). The map is a rational-quadratic spline f of [-pi, pi] onto itself with `bins`
    bins, f(-pi) = -pi and f(pi) = pi, whose slope at -pi equals the slope at pi (one shared
    learned boundary slope), so f glues into a smooth (C1) bijection of the circle; with
    `rotation=True` (the default) a learned rotation follows it:

        inverse (data -> latent):  z = wrap(f(wrap(x)) + shift),  log|dz/dx| = log f'(x)
        forward (latent -> data):  x = f^-1(wrap(z - shift))

    `wrap` takes an angle to [-pi, pi). The rotation moves the fixed point f(pi) = pi, which
    a stack of couplings otherwise keeps, wherever the conditioner wants it (Rezende et al.
    compose splines with rotations for the same reason).

    Parameters per transformed entry, in this order: `bins` width logits, `bins` height
    logits, `bins - 1` interior knot slopes, the boundary slope, and with `rotation` the shift:
    `3 * bins + 1` values (`3 * bins` without rotation). Zero parameters give equal bins,
    unit slopes and no shift: the identity.

    It is TFP's `tfb.RationalQuadraticSpline` (range_min=-pi, widths summing to 2 pi), whose
    boundary slopes are fixed at 1: heights summing to 2 pi / s and knot slopes divided by s,
    followed by the scaling y -> -pi + s (y + pi), are exactly the spline with heights summing
    to 2 pi and slope s at both ends (a rational-quadratic bin scales with its heights and
    slopes together).

    Use it on data that are all angles (a torus), in couplings: every entry a coupling
    transforms is then circular. A coupling's conditioner sees the other angles as numbers in
    [-pi, pi), so the density is a proper density on the torus but may jump across the seam
    at +-pi of a conditioning angle. The families' standard normal base, evaluated on the
    latent angles in [-pi, pi)^D, is a density on the torus up to its mass outside the box
    (0.9983^D: log_prob is low by 0.0017 nats per angle, a constant), and sampling wraps the
    normal's draws.

    #### References

    [1] Danilo Jimenez Rezende, George Papamakarios, Sebastien Racaniere, Michael S. Albergo,
        Gurtej Kanwar, Phiala E. Shanahan, Kyle Cranmer. Normalizing Flows on Tori and
        Spheres. ICML 2020. https://arxiv.org/abs/2002.02428
    [2] Conor Durkan, Artur Bekasov, Iain Murray, George Papamakarios. Neural Spline Flows.
        NeurIPS 2019. https://arxiv.org/abs/1906.04032
    """

    # As the interval spline's: keep the bins and slopes away from degenerate pieces.
    min_bin_fraction = 1e-3
    min_slope = 1e-3

    def __init__(self, bins: int = 8, rotation: bool = True):
        if isinstance(bins, bool) or not isinstance(bins, numbers.Integral) or bins < 2:
            raise ValueError(f"bins must be an integer >= 2, got {bins!r}.")
        if not isinstance(rotation, bool):
            raise ValueError(f"rotation must be True or False, got {rotation!r}.")
        self.bins = int(bins)
        self.rotation = rotation
        self.params_per_entry = 3 * self.bins + (1 if rotation else 0)

    def _spline_and_slope(self, blocks):
        """TFP's spline (boundary slopes 1) and the scale s that makes it the circular one."""
        bins = self.bins
        widths = tf.stack(blocks[:bins], axis=-1)
        heights = tf.stack(blocks[bins:2 * bins], axis=-1)
        slopes = tf.stack(blocks[2 * bins:3 * bins], axis=-1)  # interior ones, then boundary
        span = 2.0 * math.pi
        floor = self.min_bin_fraction
        widths = span * (floor + (1.0 - floor * bins) * _softmax(widths))
        heights = span * (floor + (1.0 - floor * bins) * _softmax(heights))
        # softplus(raw + log(e^(1 - min) - 1)) + min is 1 at raw = 0: identity at start.
        offset = math.log(math.expm1(1.0 - self.min_slope))
        slopes = tf.nn.softplus(slopes + offset) + self.min_slope
        boundary = slopes[..., -1:]
        spline = tfb.RationalQuadraticSpline(widths, heights / boundary,
                                             slopes[..., :-1] / boundary, range_min=-math.pi)
        return spline, boundary[..., 0]

    def circle_map(self, x, params):
        """f(x) and log f'(x): the spline alone (no rotation), for x in [-pi, pi]."""
        return self._circle_map(x, *self._spline_and_slope(self.split(params)))

    @staticmethod
    def _past_last_knot(t, sizes, other_sizes):
        """The shift from TFP's spline to ours at or past the last knot (0 elsewhere).

        TFP's spline is the identity from its last knot on (slope 1 there), right when the
        widths and heights end at one point; here the heights end at -pi + 2 pi / s, so the
        angle pi (and one rounding puts past the last knot) needs the offset of the knots.
        """
        top = tf.cumsum(sizes, axis=-1)[..., -1]
        other_top = tf.cumsum(other_sizes, axis=-1)[..., -1]
        past = t >= top - math.pi  # TFP's own test, its last knot computed as it does
        return tf.where(past, other_top - top, tf.zeros_like(t))

    @classmethod
    def _circle_map(cls, x, spline, slope):
        widths, heights = spline.bin_widths, spline.bin_heights
        v = spline.forward(x) + cls._past_last_knot(x, widths, heights)
        y = -math.pi + slope * (v + math.pi)
        return y, spline.forward_log_det_jacobian(x, event_ndims=0) + tf.math.log(slope)

    def __call__(self, x, params, inverse: bool):
        blocks = self.split(params)
        spline, slope = self._spline_and_slope(blocks)
        shift = blocks[-1] if self.rotation else tf.zeros_like(x)
        if inverse:
            y, log_det = self._circle_map(wrap_angle(x), spline, slope)
            # wrap also takes a rounding of f(pi) a hair past pi back to -pi.
            y = wrap_angle(y + shift)
        else:
            v = -math.pi + (wrap_angle(x - shift) + math.pi) / slope
            y = spline.inverse(v) + self._past_last_knot(v, spline.bin_heights,
                                                         spline.bin_widths)
            y = wrap_angle(y)
            log_det = spline.inverse_log_det_jacobian(v, event_ndims=0) - tf.math.log(slope)
        # TFP's spline drops the static shape when the batch size is unknown.
        return tf.ensure_shape(y, x.shape), tf.ensure_shape(log_det, x.shape)

    def get_config(self) -> dict:
        return {"bins": self.bins, "rotation": self.rotation}
