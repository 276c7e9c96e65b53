"""NICE's diagonal scaling layer."""

from __future__ import annotations

import tensorflow as tf
from tensorflow_probability import bijectors as tfb

__all__ = ["Scaling"]


class Scaling(tfb.Bijector):
    """Elementwise scaling by exp(log_scale), the last layer of NICE.

        forward:  x = z * exp(log_scale)
        inverse:  z = x * exp(-log_scale)
        log|det J_forward| = sum(log_scale)

    `log_scale` has the full event shape, so the bijector acts on events of its rank. NICE
    puts it at the latent end of the flow, where it lets the model weight the dimensions
    (the paper's S matrix), the only non-volume-preserving part of NICE.

    #### References

    [1] Laurent Dinh, David Krueger, Yoshua Bengio. NICE: Non-linear Independent Components
        Estimation. ICLR 2015 workshop. https://arxiv.org/abs/1410.8516
    """

    def __init__(self, log_scale, validate_args: bool = False, name: str = "scaling"):
        parameters = dict(locals())
        self._log_scale = log_scale
        super().__init__(forward_min_event_ndims=len(log_scale.shape), is_constant_jacobian=True,
                         validate_args=validate_args, parameters=parameters, name=name)

    @property
    def log_scale(self):
        """The per-entry log-scale."""
        return self._log_scale

    @classmethod
    def _parameter_properties(cls, dtype, num_classes=None):
        return {}

    def _forward(self, z):
        return z * tf.exp(tf.cast(self._log_scale, z.dtype))

    def _inverse(self, x):
        return x * tf.exp(-tf.cast(self._log_scale, x.dtype))

    def _forward_log_det_jacobian(self, z):
        return tf.reduce_sum(tf.cast(self._log_scale, z.dtype))

    def _inverse_log_det_jacobian(self, x):
        return -tf.reduce_sum(tf.cast(self._log_scale, x.dtype))
