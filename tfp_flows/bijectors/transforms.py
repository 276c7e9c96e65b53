"""Elementwise transforms that a coupling or an autoregressive layer applies given parameters.

A transform is the `b -> g(b; theta)` part of a coupling: the conditioner computes `theta`
from the conditioning part (and the context), the transform changes the transformed part with
it. Each transform says how many conditioner outputs it needs per transformed entry
(`params_per_entry`), so a family never hard-codes a conditioner width.

The conditioner's last axis holds `params_per_entry` consecutive blocks of `T` values, `T`
the transformed size on that axis: block `k` is parameter `k` of every transformed entry.
With a zero-initialised last conditioner layer every transform starts at (or, for the
sigmoid-scaled affine, near) the identity.

Directions follow the couplings: `inverse=True` is data -> latent (the training pass).
"""

from __future__ import annotations

import math
import numbers

import tensorflow as tf
from tensorflow_probability import bijectors as tfb

__all__ = ["AdditiveTransform", "AffineTransform", "SCALE_FUNCTIONS", "SplineTransform",
           "Transform", "TRANSFORMS", "make_transform"]

SCALE_FUNCTIONS = ("sigmoid", "tanh", "soft_clamp", "exp")
TRANSFORMS = ("affine", "additive", "spline")


def _softmax(logits):
    """Softmax over the last axis, of a tensor of any rank.

    oneDNN's softmax (TF's default on Intel CPUs) takes at most 5 axes; a spline's bins on
    images under a sample shape `(a, b)` have 6, which run through a flat view instead.
    """
    if logits.shape.rank <= 5:
        return tf.nn.softmax(logits, axis=-1)
    flat = tf.nn.softmax(tf.reshape(logits, [-1, logits.shape[-1]]), axis=-1)
    return tf.reshape(flat, tf.shape(logits))


class Transform:
    """Base class: `__call__(x, params, inverse) -> (y, elementwise log|dy/dx| or None)`.

    `None` as log-det means volume preserving (the log-det is zero everywhere).
    """

    params_per_entry: int = 1
    volume_preserving: bool = False

    def __call__(self, x, params, inverse: bool):
        raise NotImplementedError

    def split(self, params) -> list:
        """The conditioner output as `params_per_entry` tensors of the transformed shape."""
        return tf.split(params, self.params_per_entry, axis=-1)

    def __repr__(self):
        return f"{type(self).__name__}()"


class AdditiveTransform(Transform):
    """NICE's shift: inverse z = x - m, forward x = z + m; log|det| = 0."""

    params_per_entry = 1
    volume_preserving = True

    def __call__(self, x, params, inverse: bool):
        return (x - params if inverse else x + params), None


class AffineTransform(Transform):
    """RealNVP's and Glow's affine map: inverse z = x * scale + shift, forward its inverse.

    `shift, raw = params`; `scale_fn` bounds the scale for stable training: "sigmoid" is
    Glow's scale = sigmoid(raw + 2) lifted to (min_scale, 1), min_scale + (1 - min_scale) *
    sigmoid(raw + 2), 0.88 at raw = 0; "tanh" is log scale = tanh(raw), in (-1, 1);
    "soft_clamp" is log scale = max_log_scale * tanh(raw / max_log_scale), the unbounded one
    near 0 but never beyond +-max_log_scale (the soft clamping of Ardizzone et al. [1], with
    tanh for their atan); "exp" is the unbounded log scale = raw of the RealNVP paper.
    log|det J_inverse| = sum(log scale).

    Why the floor: sampling divides by the scale. A latent the model was not trained on (Glow
    at temperature 1 draws plenty) reaches a conditioner with inputs far outside the data's,
    whose raw scale then goes to -100s, and the division overflowed float32 in a third of a
    trained Glow's samples. With the floor no coupling amplifies by more than 1 / min_scale;
    on data the scale stays far above it (the density does not change measurably).

    #### References

    [1] Lynton Ardizzone, Jakob Kruse, Sebastian Wirkert, Daniel Rahner, Eric W. Pellegrini,
        Ralf S. Klessen, Lena Maier-Hein, Carsten Rother, Ullrich Koethe. Analyzing Inverse
        Problems with Invertible Neural Networks. ICLR 2019. https://arxiv.org/abs/1808.04730
    """

    params_per_entry = 2
    min_scale = 1e-3
    # e^3 = 20x per layer either way: MAF's and IAF's default (see AutoregressiveStep).
    max_log_scale = 3.0

    def __init__(self, scale_fn: str = "sigmoid"):
        if scale_fn not in SCALE_FUNCTIONS:
            raise ValueError(f"scale_fn must be one of {SCALE_FUNCTIONS}, got {scale_fn!r}.")
        self.scale_fn = scale_fn

    def log_scale(self, raw):
        if self.scale_fn == "sigmoid":
            floor = self.min_scale
            return tf.math.log(floor + (1.0 - floor) * tf.sigmoid(raw + 2.0))
        if self.scale_fn == "tanh":
            return tf.tanh(raw)
        if self.scale_fn == "soft_clamp":
            return self.max_log_scale * tf.tanh(raw / self.max_log_scale)
        return raw

    def __call__(self, x, params, inverse: bool):
        shift, raw = self.split(params)
        log_scale = self.log_scale(raw)
        if inverse:
            return x * tf.exp(log_scale) + shift, log_scale
        return (x - shift) * tf.exp(-log_scale), -log_scale

    def __repr__(self):
        return f"AffineTransform(scale_fn={self.scale_fn!r})"


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

    def __init__(self, bins: int = 8, bound: float = 3.0):
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

    def __repr__(self):
        return f"SplineTransform(bins={self.bins}, bound={self.bound})"


def make_transform(name: str, *, scale_fn: str = "sigmoid", bins: int = 8,
                   bound: float = 3.0) -> Transform:
    """The transform called `name` ("affine", "additive" or "spline") with its options."""
    if name == "affine":
        return AffineTransform(scale_fn)
    if name == "additive":
        return AdditiveTransform()
    if name == "spline":
        return SplineTransform(bins, bound)
    raise ValueError(f"transform must be one of {TRANSFORMS}, got {name!r}.")
