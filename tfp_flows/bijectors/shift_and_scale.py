"""An elementwise affine map with per-example parameters (Glow's class-conditional prior)."""

from __future__ import annotations

import tensorflow as tf
from tensorflow_probability import bijectors as tfb

__all__ = ["ShiftAndScale"]


class ShiftAndScale(tfb.Bijector):
    """x = z * exp(log_scale) + loc, with `loc` and `log_scale` broadcast over each event.

        forward:  x = z * exp(log_scale) + loc
        inverse:  z = (x - loc) * exp(-log_scale)
        log|det J_forward| = sum over the event of log_scale (broadcast to the event shape)

    `loc` and `log_scale` have leading axes for examples followed by `event_ndims` axes that
    broadcast to the event, e.g. `(batch, 1, 1, C)` for per-channel values on `(H, W, C)`
    images. Unlike `tfb.Shift(loc)(tfb.Scale(...))`, the parameters' leading axes are
    per-example values, not a batch of distributions: the bijector's batch shape is `()` and
    it maps every input to one of the same shape. The parameters' leading axes pair with the
    input's batch axes, aligned on the right as in numpy: they broadcast (size 1) to the
    input's, or equal them. Leading axes beyond the input's must be of size 1 and are dropped
    (one set of parameters for any input, a single unbatched event included); anything else
    would change the input's shape and is refused. A flow whose top latent has mean and scale
    predicted from a class label (Glow's class-conditional prior, section 5) uses it as its
    last layer, so `N(0, I)` on its output is `N(loc, exp(log_scale)^2)` on its input.

    #### References

    [1] Diederik P. Kingma, Prafulla Dhariwal. Glow: Generative Flow with Invertible 1x1
        Convolutions. NeurIPS 2018. https://arxiv.org/abs/1807.03039
    """

    def __init__(self, loc, log_scale, event_ndims: int = 3, validate_args: bool = False,
                 name: str = "shift_and_scale"):
        parameters = dict(locals())
        if event_ndims < 1:
            raise ValueError(f"ShiftAndScale needs event_ndims >= 1, got {event_ndims}.")
        self._loc = loc
        self._log_scale = log_scale
        self._event_ndims = event_ndims
        super().__init__(forward_min_event_ndims=event_ndims, validate_args=validate_args,
                         parameters=parameters, name=name)

    @classmethod
    def _parameter_properties(cls, dtype, num_classes=None):
        return {}

    def _per_example(self, param, x):
        """`param` as a tensor of `x`'s dtype whose leading axes are `x`'s batch axes."""
        param = tf.cast(param, x.dtype)
        event_ndims, shape = self._event_ndims, param.shape
        batch, param_batch = x.shape[:-event_ndims], shape[:-event_ndims]
        extra = param_batch.rank - batch.rank
        if extra > 0 and all(d == 1 for d in param_batch[:extra]):
            param = tf.reshape(param, tf.shape(param)[extra:])
            param_batch = param_batch[extra:]
        try:
            fits = (param_batch.rank <= batch.rank and tf.broadcast_static_shape(
                param_batch, batch).is_compatible_with(batch))
        except ValueError:
            fits = False
        if not fits:
            raise ValueError(f"{self.name}: parameters of batch shape {param_batch} (per example)"
                             f" do not broadcast to the batch shape {batch} of an input of shape "
                             f"{x.shape}; they may not change its shape.")
        return param

    def _forward(self, z):
        return (z * tf.exp(self._per_example(self._log_scale, z))
                + self._per_example(self._loc, z))

    def _inverse(self, x):
        return ((x - self._per_example(self._loc, x))
                * tf.exp(-self._per_example(self._log_scale, x)))

    def _forward_log_det_jacobian(self, z):
        log_scale = self._per_example(self._log_scale, z) + tf.zeros_like(z)
        return tf.reduce_sum(log_scale, axis=list(range(-self._event_ndims, 0)))

    def _inverse_log_det_jacobian(self, x):
        return -self._forward_log_det_jacobian(x)
