"""Radial flow (Rezende and Mohamed 2015): x = z + beta (z - z0) / (alpha + |z - z0|)."""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf
from tensorflow_probability import bijectors as tfb

from tfp_flows.families.base import Argument, Flow, register_family
from tfp_flows.families.planar import check_variational_flow, refuse_images

__all__ = ["Radial", "RadialBijector", "RadialSteps"]

# softplus(log(e - 1)) = 1.
_SOFTPLUS_ONE = math.log(math.e - 1.0)


def _radius(d):
    """|d| over the last axis, with a finite gradient at d = 0."""
    return tf.sqrt(tf.maximum(tf.reduce_sum(tf.square(d), axis=-1), np.finfo(np.float32).tiny))


class RadialBijector(tfb.Bijector):
    """One radial layer of Rezende and Mohamed [1], forward (latent z -> data x):

        x = f(z) = z + beta (z - z0) / (alpha + r),   r = |z - z0|
        log|det df/dz| = (D - 1) log(1 + beta / (alpha + r)) + log(1 + alpha beta / (alpha + r)^2)

    with the paper's invertibility constraint: alpha = softplus(alpha_raw) > 0 and
    beta = -alpha + softplus(beta_raw) >= -alpha. Both log terms are computed as ratios of
    sums of non-negative terms (s = softplus(beta_raw) = alpha + beta):
    1 + beta / (alpha + r) = (r + s) / (alpha + r) and
    1 + alpha beta / (alpha + r)^2 = (r^2 + 2 alpha r + alpha s) / (alpha + r)^2.

    Inverse, in closed form (the paper gives none, but the radius solves a quadratic): with
    d = x - z0 and rho = |d|, r(1 + beta / (alpha + r)) = rho is r^2 + (s - rho) r - alpha rho
    = 0, whose non-negative root is taken in the form without cancellation; then
    z = z0 + d (alpha + r) / (r + s).

    Args:
        parameters: a function returning the raw `(z0, alpha_raw, beta_raw)` (shapes `(D,)`,
            `()`, `()`), called on every use, so a distribution built before a `GradientTape`
            reads the variables under it.

    #### Examples

    ```python
    z0, a, b = tf.Variable([0.0, 1.0]), tf.Variable(0.5), tf.Variable(2.0)
    f = RadialBijector(lambda: (z0, a, b))
    x = f.forward(tf.zeros([3, 2]))
    ```

    #### References

    [1] Danilo Jimenez Rezende, Shakir Mohamed. Variational Inference with Normalizing Flows.
        ICML 2015. https://arxiv.org/abs/1505.05770
    """

    def __init__(self, parameters, name: str = "radial"):
        bijector_parameters = dict(locals())
        self._parameter_fn = parameters
        super().__init__(forward_min_event_ndims=1, parameters=bijector_parameters, name=name)

    @classmethod
    def _parameter_properties(cls, dtype, num_classes=None):
        return {}

    def constrained(self, dtype=tf.float32):
        """`(z0, alpha, beta, softplus(beta_raw))`: alpha > 0, beta >= -alpha."""
        z0, alpha_raw, beta_raw = (tf.cast(tf.convert_to_tensor(p), dtype)
                                   for p in self._parameter_fn())
        alpha, softplus = tf.nn.softplus(alpha_raw), tf.nn.softplus(beta_raw)
        return z0, alpha, softplus - alpha, softplus

    def _forward(self, z):
        z0, alpha, beta, _ = self.constrained(z.dtype)
        d = z - z0
        return z + (beta / (alpha + _radius(d)))[..., None] * d

    def _forward_log_det_jacobian(self, z):
        z0, alpha, _, softplus = self.constrained(z.dtype)
        r = _radius(z - z0)
        size = tf.cast(tf.shape(z)[-1], z.dtype)
        return ((size - 1.0) * (tf.math.log(r + softplus) - tf.math.log(alpha + r))
                + tf.math.log(r * (r + 2.0 * alpha) + alpha * softplus)
                - 2.0 * tf.math.log(alpha + r))

    def _inverse(self, x):
        z0, alpha, _, softplus = self.constrained(x.dtype)
        d = x - z0
        rho = _radius(d)
        q = softplus - rho
        root = tf.sqrt(tf.square(q) + 4.0 * alpha * rho)
        positive = q > 0
        r = tf.where(positive, 2.0 * alpha * rho / tf.where(positive, q + root, 1.0),
                     0.5 * (root - q))
        return z0 + ((alpha + r) / (r + softplus))[..., None] * d


class RadialSteps(keras.layers.Layer):
    """`num_layers` radial layers, their `z0`, `alpha_raw`, `beta_raw` stacked.

    Initialised near the identity but not at it: centres z0 ~ N(0, 1) per entry (spread over
    the standard normal base), alpha = 1 (alpha_raw = log(e - 1)) and beta_raw = alpha_raw +
    N(0, 0.01^2), so beta is about N(0, 0.006^2): every layer moves points by under 0.02 and
    every gradient is non-zero.
    """

    def __init__(self, num_layers: int, size: int, **kwargs):
        super().__init__(**kwargs)
        self.num_layers, self.size = num_layers, size
        self.z0 = self.add_weight(shape=(num_layers, size), name="z0",
                                  initializer=keras.initializers.RandomNormal(stddev=1.0))
        self.alpha_raw = self.add_weight(shape=(num_layers,), name="alpha_raw",
                                         initializer=keras.initializers.Constant(_SOFTPLUS_ONE))
        self.beta_raw = self.add_weight(shape=(num_layers,), name="beta_raw",
                                        initializer=keras.initializers.RandomNormal(
                                            mean=_SOFTPLUS_ONE, stddev=0.01))

    def bijectors(self, context=None, initialize: bool = False) -> list[tfb.Bijector]:
        def row(k):
            return lambda: (self.z0.value[k], self.alpha_raw.value[k], self.beta_raw.value[k])

        return [RadialBijector(row(k), name=f"radial_{k}") for k in range(self.num_layers)]


@register_family("radial")
class Radial(Flow):
    """Radial flow: `num_layers` radial layers x = z + beta (z - z0) / (alpha + |z - z0|).

    A flow for variational inference (Rezende and Mohamed [1]): each layer contracts or
    expands space around its centre z0, with a closed-form log-det. Sampling is one pass;
    `log_prob` of the distribution's own samples reuses TFP's cached latents. The inverse
    is in closed form too (see `RadialBijector`), so `log_prob`, `encode` and `fit` work on
    any data at the cost of one more pass.

    Each layer has D + 2 parameters. Vectors `(D,)` only, unconditional.

    [1] Danilo Jimenez Rezende, Shakir Mohamed. Variational Inference with Normalizing Flows.
        ICML 2015. https://arxiv.org/abs/1505.05770
    """

    arguments = (
        Argument("num_layers", int, 32, "Radial layers.", ranks=(1,), minimum=1),
    )

    def __init__(self, event_shape, num_layers: int | None = None, **kwargs):
        refuse_images("Radial", event_shape)
        super().__init__(event_shape, num_layers=num_layers, **kwargs)
        check_variational_flow(self)
        self.steps = [RadialSteps(self.num_layers, self.flat_size, name="radial_steps")]
