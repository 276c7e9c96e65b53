"""Affine coupling (RealNVP, Glow)."""

from __future__ import annotations

import tensorflow as tf

from tfp_flows.bijectors.coupling import Coupling

__all__ = ["AffineCoupling", "SCALE_FUNCTIONS"]

SCALE_FUNCTIONS = ("sigmoid", "tanh", "exp")


class AffineCoupling(Coupling):
    """x_b = (z_b - shift(z_a)) / scale(z_a), the affine coupling of RealNVP and Glow.

    With `(a, b)` the conditioning and transformed parts chosen by the mask and
    `shift, raw = split(conditioner(a), 2, axis=-1)`:

        inverse (data -> latent, the training pass):  z_b = x_b * scale + shift
        forward (latent -> data):                      x_b = (z_b - shift) / scale
        log|det J_inverse| = sum(log scale)

    Both directions take one pass of the conditioner. `scale_fn` bounds the scale for stable
    training: "sigmoid" is Glow's scale = sigmoid(raw + 2), in (0, 1) and 0.88 at raw = 0;
    "tanh" is log scale = tanh(raw), in (-1, 1); "exp" is the unbounded log scale = raw of
    the RealNVP paper. A conditioner whose last layer starts at zero makes the layer start
    near the identity.

    For the channel mask the conditioner receives the conditioning half and must return
    `2 * transformed_size` values on the last axis; for the checkerboard mask it receives the
    masked image and returns `2 * C`.

    #### References

    [1] Laurent Dinh, Jascha Sohl-Dickstein, Samy Bengio. Density estimation using Real NVP.
        ICLR 2017. https://arxiv.org/abs/1605.08803
    [2] Diederik P. Kingma, Prafulla Dhariwal. Glow. NeurIPS 2018. https://arxiv.org/abs/1807.03039
    """

    def __init__(self, conditioner, *, mask: str = "channel", parity: int = 0,
                 scale_fn: str = "sigmoid", event_ndims: int = 3, validate_args: bool = False,
                 name: str = "affine_coupling"):
        parameters = dict(locals())
        if scale_fn not in SCALE_FUNCTIONS:
            raise ValueError(f"scale_fn must be one of {SCALE_FUNCTIONS}, got {scale_fn!r}.")
        self._scale_fn = scale_fn
        super().__init__(conditioner, mask=mask, parity=parity, event_ndims=event_ndims,
                         validate_args=validate_args, parameters=parameters, name=name)

    def _log_scale(self, raw):
        if self._scale_fn == "sigmoid":
            return tf.math.log_sigmoid(raw + 2.0)
        if self._scale_fn == "tanh":
            return tf.tanh(raw)
        return raw

    def _transform(self, x, params, inverse: bool):
        shift, raw = tf.split(params, 2, axis=-1)
        log_scale = self._log_scale(raw)
        if inverse:
            return x * tf.exp(log_scale) + shift, log_scale
        return (x - shift) * tf.exp(-log_scale), -log_scale
