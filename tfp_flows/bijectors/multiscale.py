"""One level of the multi-scale architecture: squeeze, flow, factor out half the channels."""

from __future__ import annotations

import tensorflow as tf
from tensorflow_probability import bijectors as tfb

from tfp_flows.bijectors.one_pass import OnePassBijector
from tfp_flows.bijectors.squeeze import Squeeze

__all__ = ["MultiScale"]


class MultiScale(OnePassBijector):
    """A level of RealNVP's and Glow's multi-scale flow, on (H, W, C) events.

    Data to latent (the inverse, the training pass), with `s = space_to_depth(x)`:

        h = flow^-1(s)                        # (H/2, W/2, 4C), the steps of this level
        h_keep, h_out = split(h, 2, axis=-1)  # h_out leaves the flow here
        z_keep = inner^-1(h_keep)             # the next level, or h_keep when inner is None
        z_out = (h_out - mu(h_keep)) * exp(-log_sigma(h_keep))   # with a split prior
        z = depth_to_space(concat(z_keep, z_out))                # same shape as x

        log|det J_inverse| = ildj_flow(s) + ildj_inner(h_keep) - sum(log_sigma)

    With a standard normal base, the factored-out half is modelled by N(mu, sigma^2) given the
    kept half: Glow's learned conditional prior for the split (`split_prior` returns `mu` and
    a raw log-scale `r` concatenated on the last axis; zero output makes it standard normal).
    log_sigma = r where r <= 0 and max_log_sigma * tanh(r / max_log_sigma) above, so sigma
    never exceeds e^3 (about 20): sampling multiplies by sigma, and with an unbounded one a
    latent the model was not trained on made the prior's r grow with its input until
    exp(r) overflowed float32 (r = 44 seen in a trained Glow at temperature 1). The bound is
    smooth (equal value, slope and curvature at 0) and leaves small sigmas alone, which the
    density needs for flat image backgrounds. Without a split prior, z_out = h_out and the
    factored-out half is modelled as standard normal.
    Keeping z in the data's shape lets `encode`/`decode` and latent arithmetic work on one
    tensor. Sampling at temperature T scales every level's noise, as in Glow.

    #### References

    [1] Laurent Dinh, Jascha Sohl-Dickstein, Samy Bengio. Density estimation using Real NVP.
        ICLR 2017, section 3.6. https://arxiv.org/abs/1605.08803
    [2] Diederik P. Kingma, Prafulla Dhariwal. Glow. NeurIPS 2018. https://arxiv.org/abs/1807.03039
    """

    def __init__(self, flow: tfb.Bijector, inner: tfb.Bijector | None = None,
                 split_prior=None, validate_args: bool = False, name: str = "multi_scale"):
        parameters = dict(locals())
        self._flow = flow
        self._inner = inner
        self._split_prior = split_prior
        self._squeeze = Squeeze()
        super().__init__(forward_min_event_ndims=3, validate_args=validate_args,
                         parameters=parameters, name=name)

    @property
    def flow(self) -> tfb.Bijector:
        """The bijector of this scale's steps (on the squeezed input)."""
        return self._flow

    @property
    def inner(self) -> tfb.Bijector | None:
        """The bijector applied to the kept half (the next scales), or None at the last."""
        return self._inner

    def _split(self, h):
        return tf.split(h, 2, axis=-1)

    max_log_sigma = 3.0

    def _prior(self, h_keep, dtype):
        params = self._split_prior(h_keep)
        # mu and the raw log-scale of the factored-out half, which has h_keep's channels.
        width = 2 * h_keep.shape[-1]
        if params.shape[-1] is not None and params.shape[-1] != width:
            raise ValueError(f"{self.name}: the split prior returned {params.shape[-1]} values "
                             f"on the last axis; it needs {width} (mean and log-scale of "
                             f"{h_keep.shape[-1]} channels).")
        mu, raw = tf.split(tf.cast(params, dtype), 2, axis=-1)
        bound = tf.cast(self.max_log_sigma, dtype)
        return mu, tf.where(raw > 0, bound * tf.tanh(raw / bound), raw)

    def _transform_and_log_det(self, x, inverse: bool):
        return self._latent_from_data(x) if inverse else self._data_from_latent(x)

    def _latent_from_data(self, x):
        s = self._squeeze.forward(x)
        h = self._flow.inverse(s)
        log_det = self._flow.inverse_log_det_jacobian(s, event_ndims=3)
        h_keep, h_out = self._split(h)
        z_keep = h_keep
        if self._inner is not None:
            z_keep = self._inner.inverse(h_keep)
            log_det += self._inner.inverse_log_det_jacobian(h_keep, event_ndims=3)
        z_out = h_out
        if self._split_prior is not None:
            mu, log_sigma = self._prior(h_keep, x.dtype)
            z_out = (h_out - mu) * tf.exp(-log_sigma)
            log_det -= tf.reduce_sum(log_sigma, axis=[-3, -2, -1])
        z = self._squeeze.inverse(tf.concat([z_keep, z_out], axis=-1))
        return z, log_det

    def _data_from_latent(self, z):
        z_keep, z_out = self._split(self._squeeze.forward(z))
        h_keep = z_keep
        log_det = tf.zeros(tf.shape(z)[:-3], dtype=z.dtype)
        if self._inner is not None:
            h_keep = self._inner.forward(z_keep)
            log_det += self._inner.forward_log_det_jacobian(z_keep, event_ndims=3)
        h_out = z_out
        if self._split_prior is not None:
            mu, log_sigma = self._prior(h_keep, z.dtype)
            h_out = z_out * tf.exp(log_sigma) + mu
            log_det += tf.reduce_sum(log_sigma, axis=[-3, -2, -1])
        h = tf.concat([h_keep, h_out], axis=-1)
        s = self._flow.forward(h)
        log_det += self._flow.forward_log_det_jacobian(h, event_ndims=3)
        return self._squeeze.inverse(s), log_det
