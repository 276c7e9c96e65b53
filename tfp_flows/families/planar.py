"""Planar flow (Rezende and Mohamed 2015): x = z + u-hat tanh(w.z + b), layer after layer."""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf
from tensorflow_probability import bijectors as tfb

from tfp_flows.families.base import Argument, Flow, register_family

__all__ = ["Planar", "PlanarBijector", "PlanarSteps", "check_variational_flow",
           "refuse_images"]

# m(a) = -1 + softplus(a) is 0 at a = log(e - 1): there w.u-hat = 0.
_SOFTPLUS_ZERO = math.log(math.e - 1.0)


def check_variational_flow(flow: Flow) -> None:
    """Refuses what a planar or radial flow cannot be: conditional, or reversible.

    Their parameters are plain weights (the paper's amortised version makes them outputs of an
    encoder, which this library does not build), and `reversible=True` would rebuild every
    activation through the inverse, which is what these flows are slow at.
    """
    name = type(flow).__name__
    if flow.context_size:
        raise ValueError(f"{name} is unconditional: its parameters are weights, not functions "
                         f"of a context; remove context_shape / num_classes.")
    if flow.reversible:
        raise ValueError(f"{name} does not take reversible=True: a reversible chain rebuilds "
                         f"activations through the inverse, the slow direction of {name}, "
                         f"and its layers have few activations to save.")


def refuse_images(family: str, event_shape) -> None:
    """Refuses any event shape but a vector's, (D,), before the arguments are checked."""
    if (hasattr(event_shape, "__len__") and not isinstance(event_shape, (str, bytes))
            and len(event_shape) != 1):
        raise ValueError(f"{family} acts on vectors, event_shape (D,); got {event_shape!r}. "
                         f"Flatten images to (H * W * C,) first, or use a family for images "
                         f"(realnvp, glow).")


class PlanarBijector(tfb.Bijector):
    """One planar layer of Rezende and Mohamed [1], forward (latent z -> data x):

        x = f(z) = z + u_hat tanh(w.z + b)
        log|det df/dz| = log|1 + u_hat.w tanh'(w.z + b)|

    with the paper's invertibility constraint u_hat = u + (m(w.u) - w.u) w / |w|^2,
    m(a) = -1 + softplus(a), so that u_hat.w = m(w.u) > -1 and f is strictly increasing
    along w (the log-det is computed as log(tanh^2 + softplus(w.u) tanh'), which has no
    cancellation).

    Inverse: no closed form. Along w, a = w.z + b solves a + m tanh(a) = w.x + b, a strictly
    increasing scalar equation whose root lies within |m| of w.x + b; 40 bisection steps
    find it to float precision, then z = x - u_hat tanh(a). Gradients through the inverse are
    the implicit function theorem's (no backprop through the bisection). TFP's bijector cache
    makes `log_prob` of the distribution's own samples exact without it.

    Args:
        parameters: a function returning the raw `(w, u, b)` (shapes `(D,)`, `(D,)`, `()`),
            called on every use, so a distribution built before a `GradientTape` reads the
            variables under it.

    #### Examples

    ```python
    w, u, b = tf.Variable([1.0, 0.0]), tf.Variable([2.0, 1.0]), tf.Variable(0.5)
    f = PlanarBijector(lambda: (w, u, b))
    x = f.forward(tf.zeros([3, 2]))
    ```

    #### References

    [1] Danilo Jimenez Rezende, Shakir Mohamed. Variational Inference with Normalizing Flows.
        ICML 2015. https://arxiv.org/abs/1505.05770
    """

    bisection_steps = 40

    def __init__(self, parameters, name: str = "planar"):
        bijector_parameters = dict(locals())
        self._parameter_fn = parameters
        super().__init__(forward_min_event_ndims=1, parameters=bijector_parameters, name=name)

    @classmethod
    def _parameter_properties(cls, dtype, num_classes=None):
        return {}

    def constrained(self, dtype=tf.float32):
        """`(w, u_hat, b, softplus(w.u))`: u_hat.w = softplus(w.u) - 1 >= -1."""
        w, u, b = (tf.cast(tf.convert_to_tensor(p), dtype) for p in self._parameter_fn())
        wu = tf.reduce_sum(w * u)
        softplus = tf.nn.softplus(wu)
        u_hat = u + (softplus - 1.0 - wu) * w / tf.reduce_sum(tf.square(w))
        return w, u_hat, b, softplus

    def _forward(self, z):
        w, u_hat, b, _ = self.constrained(z.dtype)
        return z + u_hat * tf.tanh(tf.linalg.matvec(z, w) + b)[..., None]

    def _forward_log_det_jacobian(self, z):
        w, _, b, softplus = self.constrained(z.dtype)
        tanh = tf.tanh(tf.linalg.matvec(z, w) + b)
        # 1 + (softplus - 1) tanh' = tanh^2 + softplus tanh', a sum of non-negative terms.
        return tf.math.log(tf.square(tanh) + softplus * (1.0 - tf.square(tanh)))

    def _inverse(self, x):
        w, u_hat, b, softplus = self.constrained(x.dtype)
        m = softplus - 1.0
        target = tf.linalg.matvec(x, w) + b

        def residual(a):
            return a + m * tf.tanh(a) - target

        # The root is within |m| of the target; bisection in the root's own units.
        low, high = (tf.stop_gradient(target + s * tf.abs(m)) for s in (-1.0, 1.0))

        def bisect(low, high):
            middle = 0.5 * (low + high)
            below = tf.stop_gradient(residual(middle)) < 0
            return tf.where(below, middle, low), tf.where(below, high, middle)

        low, high = tf.while_loop(lambda low, high: tf.constant(True), bisect, (low, high),
                                  maximum_iterations=self.bisection_steps)
        root = tf.stop_gradient(0.5 * (low + high))
        # Value: the root; gradient: the implicit one, -d(residual)/d(params) / d(residual)/da.
        slope = tf.stop_gradient(1.0 + m * (1.0 - tf.square(tf.tanh(root))))
        correction = residual(root)
        root -= (correction - tf.stop_gradient(correction)) / tf.maximum(
            slope, np.finfo(np.float32).tiny)
        return x - u_hat * tf.tanh(root)[..., None]


class PlanarSteps(keras.layers.Layer):
    """`num_layers` planar layers, their `w`, `u`, `b` stacked: three variables in all.

    Initialised near the identity but not at it: w ~ N(0, 1/D) per entry (so w.z of a standard
    normal z has about unit variance), b = 0, and u = w log(e - 1) / |w|^2 + N(0, 0.01^2)
    noise, where m(w.u) is about 0: u_hat is about the noise, every layer moves points by about
    0.01 and every gradient is non-zero.
    """

    def __init__(self, num_layers: int, size: int, **kwargs):
        super().__init__(**kwargs)
        self.num_layers, self.size = num_layers, size
        w = keras.ops.convert_to_numpy(keras.initializers.RandomNormal(
            stddev=1.0 / math.sqrt(size))((num_layers, size)))
        noise = keras.ops.convert_to_numpy(keras.initializers.RandomNormal(stddev=0.01)(
            (num_layers, size)))
        u = w * _SOFTPLUS_ZERO / np.sum(np.square(w), axis=1, keepdims=True) + noise
        self.w, self.u = (self.add_weight(shape=value.shape, name=name,
                                          initializer=lambda shape, dtype=None, v=value: v)
                          for name, value in (("w", w), ("u", u)))
        self.b = self.add_weight(shape=(num_layers,), initializer="zeros", name="b")

    def bijectors(self, context=None, initialize: bool = False) -> list[tfb.Bijector]:
        def row(k):
            return lambda: (self.w.value[k], self.u.value[k], self.b.value[k])

        return [PlanarBijector(row(k), name=f"planar_{k}") for k in range(self.num_layers)]


@register_family("planar")
class Planar(Flow):
    """Planar flow: `num_layers` planar layers x = z + u_hat tanh(w.z + b) on vectors.

    A flow for variational inference (Rezende and Mohamed [1]): sampling is one pass with
    a closed-form log-det per layer, and `log_prob` of the distribution's own samples
    (`model.distribution.sample`, `experimental_sample_and_log_prob`, `tfp.vi`) reuses TFP's
    cached latents, exact and with no inverse. The inverse is numeric (a bisection along w
    per layer, see `PlanarBijector`), so `log_prob`, `encode` and `fit` on arbitrary data
    work, to float32 precision, about `bisection_steps` times slower per layer than sampling.

    Each layer has 2D + 1 parameters. Vectors `(D,)` only, unconditional.

    [1] Danilo Jimenez Rezende, Shakir Mohamed. Variational Inference with Normalizing Flows.
        ICML 2015. https://arxiv.org/abs/1505.05770
    """

    arguments = (
        Argument("num_layers", int, 32, "Planar layers.", ranks=(1,), minimum=1),
    )

    def __init__(self, event_shape, num_layers: int | None = None, **kwargs):
        refuse_images("Planar", event_shape)
        super().__init__(event_shape, num_layers=num_layers, **kwargs)
        check_variational_flow(self)
        self.steps = [PlanarSteps(self.num_layers, self.flat_size, name="planar_steps")]
