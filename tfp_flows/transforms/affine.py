"""The affine transform (RealNVP, Glow, MAF) and its bounded scale functions."""

from __future__ import annotations

import tensorflow as tf

from tfp_flows.transforms.base import Transform, register_transform

__all__ = ["AffineTransform", "SCALE_FUNCTIONS"]

SCALE_FUNCTIONS = ("sigmoid", "tanh", "soft_clamp", "exp")
"""The values of `AffineTransform(scale_fn=...)`: how the raw conditioner output becomes
the log-scale."""


@register_transform("affine")
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

    In an autoregressive step (MAF, IAF) the map is MAF's own, x = z * scale + shift forward
    (TFP's `tfb.MaskedAutoregressiveFlow` with `shift_and_log_scale_fn`), and `scale_fn` must
    scale both ways: "sigmoid" is refused there.

    #### References

    [1] Lynton Ardizzone, Jakob Kruse, Sebastian Wirkert, Daniel Rahner, Eric W. Pellegrini,
        Ralf S. Klessen, Lena Maier-Hein, Carsten Rother, Ullrich Koethe. Analyzing Inverse
        Problems with Invertible Neural Networks. ICLR 2019. https://arxiv.org/abs/1808.04730
    [2] George Papamakarios, Theo Pavlakou, Iain Murray. Masked Autoregressive Flow for
        Density Estimation. NeurIPS 2017. https://arxiv.org/abs/1705.07057
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
        """The log-scale from the raw conditioner output, by `scale_fn`."""
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

    def autoregressive(self) -> Transform:
        if self.scale_fn == "sigmoid":
            # Glow's sigmoid scale only shrinks in one direction: an IAF could never widen its
            # base, so a posterior wider than N(0, I) (most) would be out of reach.
            raise ValueError("an autoregressive step takes scale_fn 'soft_clamp', 'tanh' or "
                             "'exp', not 'sigmoid' (it only scales one way).")
        return _AutoregressiveAffine(self)

    def get_config(self) -> dict:
        return {"scale_fn": self.scale_fn}


class _AutoregressiveAffine(Transform):
    """MAF's affine map: inverse z = (x - shift) / scale, forward x = z * scale + shift.

    The parametrisation of TFP's `tfb.MaskedAutoregressiveFlow(shift_and_log_scale_fn)`, the
    same operations in the same order, so a MAF's density is that of the models saved before
    transforms were pluggable.
    """

    params_per_entry = 2

    def __init__(self, affine: AffineTransform):
        self.affine = affine

    def __call__(self, x, params, inverse: bool):
        shift, raw = self.split(params)
        log_scale = self.affine.log_scale(raw)
        if inverse:
            return (x - shift) * tf.exp(-log_scale), -log_scale
        return x * tf.exp(log_scale) + shift, log_scale

    def __repr__(self):
        return f"{self.affine!r}.autoregressive()"
