"""Activation normalisation (Glow's ActNorm) as a bijector."""

from __future__ import annotations

import tensorflow as tf
from tensorflow_probability import bijectors as tfb

__all__ = ["ActNorm"]


def _global_moments(x: tf.Tensor, axes: list[int]) -> tuple[tf.Tensor, tf.Tensor]:
    """Mean and variance over `axes`, summed over all replicas of the current strategy."""
    count = tf.cast(tf.reduce_prod(tf.gather(tf.shape(x), axes)), x.dtype)
    total = tf.reduce_sum(x, axis=axes)
    total_sq = tf.reduce_sum(tf.square(x), axis=axes)
    context = tf.distribute.get_replica_context()
    if context is not None and context.num_replicas_in_sync > 1:
        count, total, total_sq = context.all_reduce(
            tf.distribute.ReduceOp.SUM, [count, total, total_sq])
    mean = total / count
    variance = tf.maximum(total_sq / count - tf.square(mean), 0.0)
    return mean, variance


class ActNorm(tfb.Bijector):
    """Per-channel affine transformation with data-dependent initialisation.

    With `loc` and `log_scale` of shape `[C]` broadcast over the last axis of an event of rank
    `event_ndims` (3 for `(H, W, C)` images, 1 for vectors):

        forward:  x = z * exp(log_scale) + loc
        inverse:  z = (x - loc) * exp(-log_scale)
        log|det J_forward| = (number of positions per channel) * sum(log_scale)

    The parameters are read on every call, so passing Keras or TF variables (or anything that
    converts to a tensor when read and has `assign`, such as a row of a stacked variable)
    makes this a stateless view over them.

    Data-dependent initialisation is a mode of building the bijector: with `initialize=True`
    the inverse first sets `loc` and `log_scale` from the statistics of its input, so that its
    output has zero mean and unit variance per channel (Glow, section 3.1), then returns that
    output. Under a `tf.distribute` strategy the statistics are all-reduced over the replicas,
    so every replica assigns the same values. A bijector built with `initialize=False` (the
    default) never assigns anything.

    #### Examples

    ```python
    loc = tf.Variable(tf.zeros([3]))
    log_scale = tf.Variable(tf.zeros([3]))
    z = ActNorm(loc, log_scale, initialize=True).inverse(images)
    # z has zero mean and unit variance per channel; loc and log_scale now hold the statistics.
    bijector = ActNorm(loc, log_scale)
    ```

    #### References

    [1] Diederik P. Kingma, Prafulla Dhariwal. Glow: Generative Flow with Invertible 1x1
        Convolutions. NeurIPS 2018. https://arxiv.org/abs/1807.03039
    """

    def __init__(self, loc, log_scale, event_ndims: int = 3, epsilon: float = 1e-6,
                 initialize: bool = False, validate_args: bool = False, name: str = "act_norm"):
        parameters = dict(locals())
        if event_ndims < 1:
            raise ValueError(f"ActNorm needs event_ndims >= 1 (channels last), got {event_ndims}.")
        self._loc = loc
        self._log_scale = log_scale
        self._event_ndims = event_ndims
        self._epsilon = epsilon
        if not isinstance(initialize, bool):
            raise ValueError(f"initialize must be True or False, got {initialize!r}.")
        self._initialize = initialize
        super().__init__(forward_min_event_ndims=event_ndims, is_constant_jacobian=True,
                         validate_args=validate_args, parameters=parameters, name=name)

    @property
    def loc(self):
        """The per-channel shift."""
        return self._loc

    @property
    def log_scale(self):
        """The per-channel log-scale."""
        return self._log_scale

    @classmethod
    def _parameter_properties(cls, dtype, num_classes=None):
        return {}

    def _positions_per_channel(self, x: tf.Tensor) -> tf.Tensor:
        spatial = tf.shape(x)[tf.rank(x) - self._event_ndims:-1]
        return tf.cast(tf.reduce_prod(spatial), x.dtype)

    def _forward(self, z):
        loc = tf.cast(self._loc, z.dtype)
        return z * tf.exp(tf.cast(self._log_scale, z.dtype)) + loc

    def _inverse(self, x):
        loc, log_scale = (self._initialize_from(x) if self._initialize
                          else (self._loc, self._log_scale))
        return (x - tf.cast(loc, x.dtype)) * tf.exp(-tf.cast(log_scale, x.dtype))

    def _initialize_from(self, x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Assigns `loc` and `log_scale` from the statistics of `x`; returns the new values."""
        axes = list(range(x.shape.rank - 1))
        mean, variance = _global_moments(x, axes)
        loc = tf.cast(mean, self._loc.dtype)
        log_scale = tf.cast(0.5 * tf.math.log(variance + self._epsilon), self._log_scale.dtype)
        # Finite data can still overflow the statistics (values near 1e20 square to inf).
        finite = tf.debugging.Assert(
            tf.reduce_all(tf.math.is_finite(loc)) & tf.reduce_all(tf.math.is_finite(log_scale)),
            ["ActNorm's data-dependent initialisation got non-finite statistics from its batch; "
             "nothing was assigned."])
        with tf.control_dependencies([finite]):
            self._loc.assign(loc)
            self._log_scale.assign(log_scale)
        return loc, log_scale

    def _forward_log_det_jacobian(self, z):
        log_scale = tf.cast(self._log_scale, z.dtype)
        return self._positions_per_channel(z) * tf.reduce_sum(log_scale)

    def _inverse_log_det_jacobian(self, x):
        return -self._forward_log_det_jacobian(x)
